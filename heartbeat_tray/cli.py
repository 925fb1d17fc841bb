"""The command line (spec §3). Errors are one sentence on stderr; tracebacks go to the log."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from heartbeat_tray import __version__
from heartbeat_tray.app_state import AppState
from heartbeat_tray.event import build_event
from heartbeat_tray.instance_lock import InstanceLock
from heartbeat_tray.keystore import (
    KEY_PIPE_COMMAND,
    ApiKey,
    InvalidKey,
    KeyringUnavailable,
    KeyStore,
    check_key_text,
    write_key_to_pipe,
)
from heartbeat_tray.launch_at_login import LaunchAtLoginError, for_this_os, state_text
from heartbeat_tray.log_setup import configure_logging, never_log
from heartbeat_tray.outbox import Outbox
from heartbeat_tray.paths import AppPaths
from heartbeat_tray.posthog_client import KeyCheckVerdict, PostHogClient, Verdict
from heartbeat_tray.settings import (
    LoadedSettings,
    Settings,
    SettingsError,
    installation_id,
    load_settings,
)
from heartbeat_tray.ticker import Ticker, TickerConfig

log = logging.getLogger("heartbeat_tray")

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_CONFIG = 2


class UserError(Exception):
    """Stops the command with one sentence on stderr and an exit code."""

    def __init__(self, sentence: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(sentence)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"heartbeat-tray: {message}; see heartbeat-tray --help.\n")


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("overrides for this run only (never saved)")
    group.add_argument("--host", metavar="URL", help="PostHog host, e.g. https://eu.i.posthog.com")
    group.add_argument("--interval", metavar="SECONDS", help="seconds between beats (1..86400)")
    group.add_argument("--event", metavar="NAME", help="event name")
    group.add_argument("--distinct-id", metavar="ID", help="distinct id of the events")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="heartbeat-tray",
        description="Keeps one synthetic heartbeat event per interval flowing into PostHog.",
    )
    parser.add_argument("--version", action="version", version=f"heartbeat-tray {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    tray = commands.add_parser("tray", help="the tray app (the default)")
    tray.add_argument("--autostart", action="store_true", help="start quietly, as at login")
    _add_overrides(tray)
    run = commands.add_parser("run", help="headless: the heartbeat without a tray")
    _add_overrides(run)
    once = commands.add_parser("once", help="send one heartbeat now and print the outcome")
    _add_overrides(once)
    check = commands.add_parser("check", help="check host and key without sending an event")
    _add_overrides(check)
    commands.add_parser("settings", help="open the settings dialog")
    status = commands.add_parser("status", help="show settings, key, outbox and last outcome")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    key = commands.add_parser("key", help="store or remove the project API key")
    key.add_argument("action", choices=["set", "clear"])
    autostart = commands.add_parser("autostart", help="launch at login")
    autostart.add_argument("action", choices=["on", "off", "status"])
    commands.add_parser(KEY_PIPE_COMMAND)  # internal: the tray reads the keyring through it
    return parser


@dataclass
class Context:
    paths: AppPaths
    keys: KeyStore
    loaded: LoadedSettings
    settings: Settings

    def distinct_id(self) -> str:
        return self.settings.distinct_id or installation_id(self.paths.installation_id_file)


def _load(args: argparse.Namespace, paths: AppPaths) -> Context:
    loaded = load_settings(paths.config_file)
    if loaded.problem:
        _remember_settings_problem(paths, loaded)
    try:
        settings = loaded.settings.with_overrides(
            host=getattr(args, "host", None),
            interval_seconds=getattr(args, "interval", None),
            event=getattr(args, "event", None),
            distinct_id=getattr(args, "distinct_id", None),
        )
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    return Context(paths, KeyStore(), loaded, settings)


def _remember_settings_problem(paths: AppPaths, loaded: LoadedSettings) -> None:
    outbox = Outbox(paths.outbox_file)
    try:
        outbox.write_meta(
            "settings_problem",
            {"message": loaded.problem, "moved_to": str(loaded.moved_to or "")},
        )
    finally:
        outbox.close()


def _require_key(ctx: Context) -> ApiKey:
    try:
        key = ctx.keys.get()
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot read the API key: {exc}") from None
    if key is None:
        raise UserError(
            "No project API key is set; run 'heartbeat-tray key set' (or set "
            "POSTHOG_PROJECT_API_KEY) with the phc_… key from your PostHog project settings."
        )
    never_log(key.value)
    try:
        _, warning = check_key_text(key.value)
    except InvalidKey as exc:
        raise UserError(str(exc)) from None
    if warning:
        log.warning("%s", warning)
    return key


def _fail_on_bad_settings(ctx: Context) -> None:
    if ctx.loaded.problem:
        raise UserError(ctx.loaded.problem)


# --- commands ---


def cmd_once(ctx: Context) -> int:
    _fail_on_bad_settings(ctx)
    key = _require_key(ctx)
    settings = ctx.settings
    outbox = Outbox(ctx.paths.outbox_file)
    try:
        sequence = outbox.next_sequence()
    finally:
        outbox.close()
    now = datetime.now(UTC)
    event = build_event(
        event=settings.event,
        distinct_id=ctx.distinct_id(),
        uuid=str(uuid.uuid4()),
        timestamp=now,
        sequence=sequence,
        interval_seconds=settings.interval_seconds,
        extra_properties=settings.properties,
    )
    client = PostHogClient()
    try:
        result = client.send_batch(settings.host, key.value, [event], timeout=10.0)
    finally:
        client.close()
    if result.verdict is Verdict.ACCEPTED:
        print(f"Accepted: {settings.event!r} sent to {settings.host} ({result.reason}).")
        return EXIT_OK
    hint = {
        Verdict.REJECTED_KEY: " PostHog rejected the API key; check it with "
        "'heartbeat-tray check' and store the right one with 'heartbeat-tray key set'.",
        Verdict.TRANSIENT: " Try again later; 'heartbeat-tray run' keeps and retries beats.",
    }.get(result.verdict, "")
    print(f"Not accepted: {result.reason} from {settings.host}.{hint}")
    return EXIT_NOT_ACCEPTED


def cmd_check(ctx: Context) -> int:
    _fail_on_bad_settings(ctx)
    key = _require_key(ctx)
    client = PostHogClient()
    try:
        result = client.check_key(ctx.settings.host, key.value, ctx.distinct_id(), timeout=10.0)
    finally:
        client.close()
    print(result.message)
    return EXIT_OK if result.verdict is KeyCheckVerdict.VALID else EXIT_NOT_ACCEPTED


def cmd_run(ctx: Context) -> int:
    key = _require_key(ctx)
    lock = InstanceLock(ctx.paths.lock_file)
    if not lock.acquire():
        _say(lock.busy_message("not starting a second stream"))
        return EXIT_OK
    outbox = Outbox(ctx.paths.outbox_file)
    client = PostHogClient()
    state = AppState()
    stop = threading.Event()
    reload_wanted = threading.Event()
    ticker = Ticker(
        TickerConfig(ctx.settings, ctx.distinct_id()),
        key_source=lambda: key.value,
        outbox=outbox,
        client=client,
        state=state,
    )

    def on_stop(signum: int, _frame: object) -> None:
        log.info("Stopping (%s)", signal.Signals(signum).name)
        stop.set()

    def on_reload(_signum: int, _frame: object) -> None:
        reload_wanted.set()
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_reload)
    log.info(
        "Sending %r to %s every %d s as %s (key %s)",
        ctx.settings.event,
        ctx.settings.host,
        ctx.settings.interval_seconds,
        ctx.distinct_id(),
        key.masked,
    )
    ticker.start()
    try:
        while True:
            stop.wait()
            if not reload_wanted.is_set():
                break
            stop.clear()
            reload_wanted.clear()
            ctx = _reloaded(ctx)
            log.info("Settings reloaded")
            ticker.apply(TickerConfig(ctx.settings, ctx.distinct_id()))
    finally:
        finished = ticker.stop(timeout=1.0)
        if finished:
            outbox.close()
            client.close()
        else:
            log.info("A request was still in flight; its beat stays queued for the next start")
        lock.release()
    return EXIT_OK


def _reloaded(ctx: Context) -> Context:
    """SIGHUP: read the settings file again; a bad one keeps the running settings."""
    loaded = load_settings(ctx.paths.config_file)
    if loaded.problem:
        _remember_settings_problem(ctx.paths, loaded)
        return ctx
    return Context(ctx.paths, ctx.keys, loaded, loaded.settings)


def _settings_problem(paths: AppPaths, outbox: Outbox, loaded: LoadedSettings) -> str | None:
    if loaded.problem:
        return loaded.problem
    noted = outbox.read_meta("settings_problem")
    if not noted:
        return None
    moved = noted.get("moved_to")
    if not moved or not os.path.exists(moved):
        return None
    # Still news only while the user has not written a new settings file since.
    if paths.config_file.exists() and paths.config_file.stat().st_mtime > os.stat(moved).st_mtime:
        return None
    return str(noted.get("message"))


def cmd_status(ctx: Context, as_json: bool) -> int:
    settings = ctx.settings
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
    outbox = Outbox(ctx.paths.outbox_file)
    try:
        queued = outbox.count()
        last = outbox.read_meta("last_outcome")
        today = outbox.read_meta("sent_today") or ["", 0]
        missed = int(outbox.read_meta("missed") or 0)
        problem = _settings_problem(ctx.paths, outbox, ctx.loaded)
    finally:
        outbox.close()
    lock = InstanceLock(ctx.paths.lock_file)
    running = None
    if not lock.acquire():
        running = lock.holder_pid() or True
    else:
        lock.release()
    local_day = datetime.now().astimezone().date().isoformat()
    report: dict[str, Any] = {
        "version": __version__,
        "settings": {
            "host": settings.host,
            "event": settings.event,
            "distinct_id": ctx.distinct_id(),
            "interval_seconds": settings.interval_seconds,
            "enabled": settings.enabled,
            "backfill": settings.backfill,
            "notify": settings.notify,
            "properties": dict(settings.properties),
        },
        "settings_file": str(ctx.paths.config_file),
        "settings_problem": problem,
        "api_key": key_info,
        "launch_at_login": state_text(for_this_os()),
        "running": running,
        "outbox": {"queued": queued, "file": str(ctx.paths.outbox_file)},
        "sent_today": int(today[1]) if today[0] == local_day else 0,
        "missed": missed,
        "last_outcome": last,
        "log_file": str(ctx.paths.log_file),
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    if key_info["error"]:
        key_line = f"unavailable — {key_info['error']}"
    elif key_info["stored"]:
        key_line = f"{key_info['prefix']} (from the {key_info['source']})"
    else:
        key_line = "not set — run 'heartbeat-tray key set'"
    lines = [
        f"Heartbeat Tray {__version__}",
        f"  host:            {settings.host}",
        f"  event:           {settings.event} every {settings.interval_seconds} s "
        f"({'enabled' if settings.enabled else 'disabled'})",
        f"  distinct id:     {report['settings']['distinct_id']}",
        f"  API key:         {key_line}",
        f"  launch at login: {report['launch_at_login']}",
        f"  running:         {'yes, process ' + str(running) if running else 'no'}",
        f"  queued beats:    {queued}",
        f"  sent today:      {report['sent_today']}" + (f"  (missed: {missed})" if missed else ""),
    ]
    if last:
        lines.append(f"  last outcome:    {last['verdict']} ({last['reason']}) at {last['time']}")
    if problem:
        lines.append(f"  settings:        {problem}")
    lines.append(f"  settings file:   {ctx.paths.config_file}")
    lines.append(f"  log file:        {ctx.paths.log_file}")
    print("\n".join(lines))
    return EXIT_OK


def cmd_key(ctx: Context, action: str) -> int:
    if action == "clear":
        try:
            removed = ctx.keys.clear()
        except KeyringUnavailable as exc:
            raise UserError(f"Cannot remove the API key: {exc}") from None
        print(
            "Removed the project API key from the system keyring."
            if removed
            else "No project API key was stored in the system keyring."
        )
        return EXIT_OK
    if sys.stdin is None:
        raise UserError("No input to read the key from; pipe it in: heartbeat-tray key set < file")
    if sys.stdin.isatty():
        text = getpass.getpass("Project API key (phc_…, not shown): ")
    else:
        text = sys.stdin.readline()
    try:
        key, warning = check_key_text(text)
    except InvalidKey as exc:
        raise UserError(str(exc)) from None
    never_log(key)
    if warning:
        print(warning, file=sys.stderr)
    try:
        ctx.keys.store(key)
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot store the API key: {exc}") from None
    print(f"Stored the project API key ({key[:8]}…) in the system keyring.")
    if os.environ.get("POSTHOG_PROJECT_API_KEY"):
        print("Note: POSTHOG_PROJECT_API_KEY is set and takes precedence while it is.")
    return EXIT_OK


def cmd_autostart(action: str) -> int:
    strategy = for_this_os()
    try:
        if action == "on":
            strategy.enable()
        elif action == "off":
            strategy.disable()
    except LaunchAtLoginError as exc:
        raise UserError(str(exc), EXIT_NOT_ACCEPTED) from None
    state = state_text(strategy)
    print(f"Launch at login: {state} ({strategy.describe()})")
    return EXIT_OK


def cmd_tray(ctx: Context, args: argparse.Namespace) -> int:
    from heartbeat_tray.tray_app import run_tray
    from heartbeat_tray.ui_thread import NoDisplay

    overrides = {
        "host": args.host,
        "interval_seconds": args.interval,
        "event": args.event,
        "distinct_id": args.distinct_id,
    }
    try:
        return run_tray(
            ctx.paths, ctx.loaded, ctx.settings, autostart=args.autostart, overrides=overrides
        )
    except NoDisplay as exc:
        raise UserError(str(exc)) from None


def cmd_settings(ctx: Context) -> int:
    from heartbeat_tray.settings_dialog import run_dialog
    from heartbeat_tray.ui_thread import NoDisplay

    try:
        return run_dialog(ctx.paths)
    except NoDisplay as exc:
        raise UserError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "tray"
    if command == "tray" and args.command is None:
        args.autostart = False
        args.host = args.interval = args.event = args.distinct_id = None
    paths = AppPaths.for_user()
    configure_logging(paths.log_file, to_stderr=command == "run")
    try:
        if command == "autostart":
            return cmd_autostart(args.action)
        if command == KEY_PIPE_COMMAND:
            return write_key_to_pipe(sys.stdout, sys.stderr)
        ctx = _load(args, paths)
        if command == "once":
            return cmd_once(ctx)
        if command == "check":
            return cmd_check(ctx)
        if command == "run":
            return cmd_run(ctx)
        if command == "status":
            return cmd_status(ctx, args.json)
        if command == "key":
            return cmd_key(ctx, args.action)
        if command == "settings":
            return cmd_settings(ctx)
        return cmd_tray(ctx, args)
    except UserError as exc:
        log.info("heartbeat-tray %s: %s", command, exc)
        _say(f"heartbeat-tray: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.exception("heartbeat-tray %s failed", command)
        _say(
            f"heartbeat-tray: {command} failed unexpectedly ({type(exc).__name__}); "
            f"the details are in {paths.log_file}."
        )
        return EXIT_NOT_ACCEPTED


def _say(sentence: str) -> None:
    if sys.stderr is not None:
        print(sentence, file=sys.stderr)
