"""``status``: what the app is doing, from the running process when one runs, else the file.

It only reads: it takes no lock, creates nothing and moves nothing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from heartbeat_tray import __version__
from heartbeat_tray.cli.context import EXIT_OK, Context
from heartbeat_tray.core.api_key import KeyKind, KeyringUnavailable
from heartbeat_tray.core.ingestion_status import IngestionStatus
from heartbeat_tray.core.outbox import read_only_view
from heartbeat_tray.core.state_file import Meta
from heartbeat_tray.core.stats import stats_from_meta
from heartbeat_tray.core.timefmt import iso_utc
from heartbeat_tray.ingestion.store import status_from_json, status_to_json
from heartbeat_tray.system.instance_lock import running_pid
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.launch_at_login import for_this_os, state_text


def _running(ctx: Context) -> tuple[int | None, dict[str, Any] | None]:
    pid = running_pid(ctx.paths.lock_file)
    if pid is None:
        return None, None
    try:
        info = json.loads(ctx.paths.running_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return pid, None
    return pid, info if info.get("pid") == pid else None


def running_settings(ctx: Context) -> dict[str, Any] | None:
    """The settings the running app uses (its overrides included), or None: none runs."""
    _pid, running = _running(ctx)
    return (
        dict(running["settings"]) if running and isinstance(running.get("settings"), dict) else None
    )


def build_report(ctx: Context) -> dict[str, Any]:
    key_info: dict[str, Any] = {"stored": None, "source": None, "prefix": None, "error": None}
    try:
        key = ctx.keys.get()
        key_info.update(
            stored=key is not None,
            source=key.source if key else None,
            prefix=key.masked if key else None,
        )
    except KeyringUnavailable as exc:
        key_info["error"] = str(exc)
    outbox: dict[str, Any] = {"queued": None, "file": str(ctx.paths.outbox_file), "error": None}
    meta: dict[Meta, Any] = {}
    try:
        outbox["queued"], meta = read_only_view(ctx.paths.outbox_file).read()
    except sqlite3.Error as exc:
        outbox["error"] = f"cannot be read ({exc})"
    stats = stats_from_meta(meta.get)
    pid, running = _running(ctx)
    ingestion = status_from_json(meta.get(Meta.INGESTION_STATUS)) or IngestionStatus()
    try:
        personal = KeyStore(kind=KeyKind.PERSONAL).get()
        personal_info = {
            "stored": personal is not None,
            "prefix": personal.masked if personal else None,
        }
    except KeyringUnavailable as exc:
        personal, personal_info = None, {"stored": None, "prefix": None, "error": str(exc)}
    if personal is None and pid is None:
        ingestion = IngestionStatus(lost=ingestion.lost)
    if running is not None:
        settings = dict(running["settings"])
        source = f"the running {running.get('front_end', 'app')} (process {pid})"
    else:
        settings = ctx.settings.public()
        source = "the settings file"
    settings.setdefault("distinct_id", "")
    settings["distinct_id"] = settings["distinct_id"] or ctx.distinct_id()
    now = datetime.now(UTC)
    hold = stats.hold_until if stats.hold_until and stats.hold_until > now else None
    last = stats.last_outcome
    return {
        "version": __version__,
        "settings": settings,
        "settings_source": source,
        "settings_file": str(ctx.paths.config_file),
        "settings_file_exists": ctx.paths.config_file.exists(),
        "settings_problem": ctx.loaded.problem,
        "settings_warnings": list(ctx.loaded.warnings),
        "api_key": key_info,
        "personal_api_key": personal_info,
        "ingestion": _ingestion_json(ingestion, settings, datetime.now(UTC)),
        "launch_at_login": state_text(for_this_os()),
        "running": pid,
        "running_front_end": running.get("front_end") if running else None,
        "tray_problem": running.get("tray_problem") if running else None,
        "outbox": outbox,
        "sent_today": stats.sent_today(now),
        "missed": stats.missed,
        "last_accepted": iso_utc(stats.last_accepted) if stats.last_accepted else None,
        "last_outcome": {**last.to_json(), "sentence": last.sentence()} if last else None,
        "rate_limited_until": iso_utc(hold) if hold else None,
        "log_file": str(ctx.paths.log_file),
    }


def _ingestion_json(
    status: IngestionStatus, settings: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The check as last saved; a check older than two polls is said to be old, never shown
    as if it were current (the process may be gone, or its checks failing to run)."""
    data = status_to_json(status)
    poll = (settings.get("ingestion") or {}).get("poll_seconds") or 120
    age = (now - status.last_check).total_seconds() if status.last_check else None
    data["last_check_age_seconds"] = None if age is None else round(age, 1)
    data["stale"] = bool(age is not None and age > 2 * float(poll))
    if data["stale"] and age is not None:
        data["sentence"] = f"{status.sentence} (as of {_ago(age)} ago: no check since)"
    return data


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def cmd_status(ctx: Context) -> int:
    report = build_report(ctx)
    if ctx.args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print("\n".join(_lines(report)))
    return EXIT_OK


def _lines(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    key = report["api_key"]
    if key["error"]:
        key_line = f"unavailable — {key['error']}"
    elif key["stored"]:
        key_line = f"{key['prefix']} (from the {key['source']})"
    else:
        key_line = "not set — run 'heartbeat-tray key set'"
    pid = report["running"]
    running = f"yes, {report['running_front_end'] or 'process'} (process {pid})" if pid else "no"
    outbox = report["outbox"]
    queued = outbox["error"] if outbox["error"] else outbox["queued"]
    missed = f"  (missed: {report['missed']})" if report["missed"] else ""
    lines = [
        f"Heartbeat Tray {report['version']}",
        f"  settings from:   {report['settings_source']}",
        f"  host:            {s['host']}",
        f"  event:           {s['event']} every {s['interval_seconds']} s "
        f"({'enabled' if s['enabled'] else 'disabled'})",
        f"  distinct id:     {s['distinct_id']}",
        f"  API key:         {key_line}",
        f"  launch at login: {report['launch_at_login']}",
        f"  running:         {running}",
        *([f"  tray:            {report['tray_problem']}"] if report["tray_problem"] else []),
        f"  queued beats:    {queued}",
        f"  sent today:      {report['sent_today']}{missed}",
    ]
    if report["last_outcome"]:
        lines.append(f"  last answer:     {report['last_outcome']['sentence']}")
    lines.append(f"  ingestion:       {report['ingestion']['sentence']}")
    for name, label in (("1h", "last hour"), ("24h", "last 24 h")):
        lag = report["ingestion"].get("lag", {}).get(name)
        if lag:
            lines.append(
                f"{'  lag, ' + label + ':':<19}p50 {lag['p50']:.0f} s · p95 {lag['p95']:.0f} s · "
                f"max {lag['max']:.0f} s ({lag['n']} beats)"
            )
    if report["rate_limited_until"]:
        until = datetime.fromisoformat(report["rate_limited_until"].replace("Z", "+00:00"))
        lines.append(
            f"  rate limited:    PostHog asked to wait until {until.astimezone():%H:%M:%S}"
        )
    if report["settings_problem"]:
        lines.append(f"  settings:        {report['settings_problem']}")
    lines.extend(f"  warning:         {w}" for w in report["settings_warnings"])
    missing = "" if report["settings_file_exists"] else " (none yet: the defaults are in use)"
    lines.append(f"  settings file:   {report['settings_file']}{missing}")
    lines.append(f"  log file:        {report['log_file']}")
    return lines
