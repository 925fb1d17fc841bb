"""Heartbeat Tray against a loop around the official posthog-python SDK, in the same run.

    benchmarks/run            (installs what it needs, then runs this)
    .venv-test/bin/python benchmarks/bench.py [--quick]

Prints one table and writes it as Markdown (benchmarks/results.md). Ratios are ours/peer: on a
noisy machine the ratio holds where absolute numbers do not. No figure is massaged; a missed
target says "missed".
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from heartbeat_tray.core.event import BeatTemplate  # noqa: E402
from heartbeat_tray.core.outbox import Outbox  # noqa: E402
from testkit.keyring_session import start_keyring_session  # noqa: E402
from testkit.posthog_server import CaptureServer  # noqa: E402
from testkit.sni_hosts import start_waybar_on_sway  # noqa: E402
from testkit.waiting import poll  # noqa: E402

TRAY_HOST_GRACE_S = 10  # heartbeat_tray.tray.app.TRAY_HOST_GRACE_MS (importing it loads pystray)
OURS_KEY = "phc_benchmarkOursKey0123456789abcdefghijklmno"
PERSONAL_KEY = "phx_benchmarkPersonalKey0123456789abcdefghij"
PEER = [sys.executable, str(ROOT / "benchmarks" / "sdk_peer.py")]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NEVER = float("inf")


SDK_LOOP = "posthog-python loop"
HOW_MEASURED = "measured, same run"


@dataclass
class Row:
    """One figure of one run; ``met`` says whether this run met the target."""

    scenario: str
    metric: str
    ours: float | None
    peer: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    peer_name: str = SDK_LOOP
    how: str = HOW_MEASURED


@dataclass
class Figure:
    """A figure over every run: min / median / max; a target is met only if every run met it."""

    first: Row
    ours: list[float]
    peer: list[float]
    met: list[bool]

    def cells(self) -> list[str]:
        row = self.first
        ours = _spread(self.ours, row.unit)
        peer = _spread(self.peer, row.unit)
        ratio = "—"
        if self.ours and self.peer:
            o, p = statistics.median(self.ours), statistics.median(self.peer)
            if p not in (0, NEVER) and o != NEVER:
                ratio = f"{o / p:.2f}"
        verdict = "" if not self.met else ("met" if all(self.met) else "**missed**")
        return [
            row.scenario,
            row.metric,
            ours,
            row.peer_name if self.peer else "—",
            peer,
            row.how if self.peer else "",
            ratio,
            row.target,
            verdict,
        ]


def repeat(runs: int, scenario: Callable[[], list[Row]]) -> list[Figure]:
    """Run a scenario ``runs`` times; each of its figures gathers every run's value."""
    figures: dict[tuple[str, str], Figure] = {}
    for _ in range(runs):
        for row in scenario():
            figure = figures.setdefault((row.scenario, row.metric), Figure(row, [], [], []))
            if row.ours is not None:
                figure.ours.append(row.ours)
            if row.peer is not None:
                figure.peer.append(row.peer)
            if row.met is not None:
                figure.met.append(row.met)
    return list(figures.values())


def _spread(values: list[float], unit: str) -> str:
    if not values:
        return "—"
    low, mid, high = min(values), statistics.median(values), max(values)
    if low == high:
        return _fmt(mid, unit)
    return f"{_fmt(low, '')} / {_fmt(mid, '')} / {_fmt(high, unit)}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if value == NEVER:
        return "never"
    digits = 0 if float(value).is_integer() or abs(value) >= 100 else 2
    return f"{value:,.{digits}f} {unit}".strip()


class Env:
    """An isolated home for one of our processes."""

    def __init__(self, name: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"hb-bench-{name}-"))
        self.vars = {
            **{k: v for k, v in os.environ.items() if not k.startswith("XDG_")},
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "POSTHOG_PROJECT_API_KEY": OURS_KEY,
            "PYTHONPATH": str(ROOT),
        }

    @property
    def outbox(self) -> Path:
        return self.home / "state" / "heartbeat-tray" / "outbox.sqlite3"

    def write_config(self, text: str) -> None:
        folder = self.home / "config" / "heartbeat-tray"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.toml").write_text(text)

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "heartbeat_tray", *args]


@dataclass
class Sample:
    cpu: float  # seconds
    rss: float  # MiB
    hwm: float  # MiB, peak
    threads: int
    wakeups: int  # voluntary context switches, all threads


def sample(pid: int) -> Sample:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    wakeups = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for task in tasks:
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    wakeups += int(line.split()[1])
        except OSError:
            pass
    return Sample(
        cpu,
        int(status["VmRSS"].split()[0]) / 1024,
        int(status["VmHWM"].split()[0]) / 1024,
        len(tasks),
        wakeups,
    )


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    return bool(poll(predicate, timeout, every=0.01))


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def events_from(
    server: CaptureServer, lib: str, distinct_id: str | None = None
) -> list[dict[str, Any]]:
    return [
        e
        for e in list(server.events)
        if e.get("properties", {}).get("$lib") == lib
        and (distinct_id is None or e.get("distinct_id") == distinct_id)
    ]


# --- 1. idle footprint ---


WITHOUT_METRICS = "the same `run` without metrics, same run"
WITHOUT_CHECK = "the same `run` without the check, same run"


def beside_plain_run(
    scenario: str,
    ours: dict[str, float],
    plain: dict[str, float],
    plain_name: str,
    quiet: str = "wakeups/s between beats",
) -> list[Row]:
    """A `run` with one feature on, against the same `run` without it, same run."""
    return [
        Row(scenario, "RSS", ours["rss"], plain["rss"], "MiB", peer_name=plain_name),
        Row(scenario, "threads", ours["threads"], plain["threads"], "", peer_name=plain_name),
        Row(
            scenario,
            quiet,
            ours["quiet_wakeups"],
            plain["quiet_wakeups"],
            "/s",
            "0",
            ours["quiet_wakeups"] == 0,
            peer_name=plain_name,
        ),
    ]


def idle(server: CaptureServer, seconds: float, with_tray: bool) -> list[Row]:
    interval = 60
    env = Env("idle")
    procs: dict[str, subprocess.Popen[Any]] = {}
    desktop = None
    keyring = None
    tray_env = Env("tray")
    checked_env = Env("checked")
    metrics_env = Env("metrics")
    sni_env = Env("sni")
    sni_host = None
    try:
        procs["ours"] = subprocess.Popen(
            ours("run", "--interval", str(interval), "--host", server.url, "--distinct-id", "run"),
            env=env.vars,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs["peer"] = subprocess.Popen(
            [*PEER, "loop", server.url, str(interval)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # the same run with the ingestion check on, one query every 20 s
        server.personal_keys = {PERSONAL_KEY}
        server.valid_keys.add(OURS_KEY)  # the project the personal key finds by its api_token
        checked_env.write_config("[ingestion]\npoll_seconds = 20\n")
        procs["checked"] = subprocess.Popen(
            ours(
                "run", "--interval", str(interval), "--host", server.url, "--distinct-id", "checked"
            ),
            env={**checked_env.vars, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # the same run serving Prometheus metrics that nobody scrapes
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            metrics_port = probe.getsockname()[1]
        procs["metrics"] = subprocess.Popen(
            ours(
                "run",
                "--interval",
                str(interval),
                "--host",
                server.url,
                "--distinct-id",
                "metrics",
                "--metrics",
                f"127.0.0.1:{metrics_port}",
            ),
            env=metrics_env.vars,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if with_tray:
            from testkit.desktop import start_desktop

            desktop = start_desktop()
            # the tray as a user runs it: its key in a real Secret Service keyring
            keyring = start_keyring_session(tray_env.vars)
            tray_env.vars.pop("POSTHOG_PROJECT_API_KEY")
            tray_env.vars.update(keyring.env)
            subprocess.run(
                ours("key", "set"),
                input=OURS_KEY,
                text=True,
                env=tray_env.vars,
                check=True,
                capture_output=True,
            )
            # the StatusNotifierItem tray, on waybar (Wayland, no X display)
            sni_host = start_waybar_on_sway()
            procs["sni"] = subprocess.Popen(
                ours(
                    "tray",
                    "--autostart",
                    "--interval",
                    str(interval),
                    "--host",
                    server.url,
                    "--distinct-id",
                    "sni",
                ),
                env={
                    **{k: v for k, v in sni_env.vars.items() if k != "DISPLAY"},
                    **sni_host.app_env,
                },
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs["tray"] = subprocess.Popen(
                ours(
                    "tray",
                    "--autostart",
                    "--interval",
                    str(interval),
                    "--host",
                    server.url,
                    "--distinct-id",
                    "tray",
                ),
                env={**tray_env.vars, "DISPLAY": desktop.display, "PYSTRAY_BACKEND": "xorg"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        started_all = time.monotonic()  # the last process was started just now
        firsts = {
            "ours": lambda: events_from(server, "heartbeat-tray", "run"),
            "peer": lambda: [e for e in server.events if e.get("distinct_id") == "sdk-peer"],
            "tray": lambda: events_from(server, "heartbeat-tray", "tray"),
            "checked": lambda: events_from(server, "heartbeat-tray", "checked"),
            "metrics": lambda: events_from(server, "heartbeat-tray", "metrics"),
            "sni": lambda: events_from(server, "heartbeat-tray", "sni"),
        }
        for name in procs:
            assert wait_for(lambda n=name: bool(firsts[n]()), 60), f"{name} sent no first beat"
        # Let start-up work finish: the first pulse, and the trays' one check for a tray host
        # 10 s after start (TRAY_HOST_GRACE_S), a one-time wakeup that is not a cost at rest.
        time.sleep(max(2.0, started_all + TRAY_HOST_GRACE_S + 1.0 - time.monotonic()))
        samples: dict[str, list[tuple[float, Sample]]] = {name: [] for name in procs}
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            for name, proc in procs.items():
                samples[name].append((now, sample(proc.pid)))
            time.sleep(1.0)
    finally:
        for proc in procs.values():
            stop(proc)
        if desktop is not None:
            desktop.stop()
        if keyring is not None:
            keyring.stop()
        env.cleanup()
        tray_env.cleanup()
        checked_env.cleanup()
        metrics_env.cleanup()
        sni_env.cleanup()
        if sni_host is not None:
            sni_host.stop()

    distinct = {
        "ours": "run",
        "peer": "sdk-peer",
        "tray": "tray",
        "checked": "checked",
        "metrics": "metrics",
        "sni": "sni",
    }
    # every request to the app API: the project lookup and the queries
    query_times = [r.at for r in server.requests if r.path.startswith("/api/")]

    def beat_times(name: str) -> list[float]:
        return [
            r.at
            for r in server.capture_requests()
            if any(e.get("distinct_id") == distinct[name] for e in r.events)
        ]

    def figures(name: str) -> dict[str, float]:
        series = samples[name]
        (t0, first), (t1, last) = series[0], series[-1]
        span = t1 - t0
        beats = beat_times(name) + (query_times if name == "checked" else [])
        quiet_wakeups, quiet_cpu, quiet_time = 0, 0.0, 0.0
        for (ta, a), (tb, b) in itertools.pairwise(series):
            if not any(ta - 1.0 <= t <= tb + 1.0 for t in beats):  # no beat near this second
                quiet_wakeups += b.wakeups - a.wakeups
                quiet_cpu += b.cpu - a.cpu
                quiet_time += tb - ta
        return {
            "cpu": last.cpu - first.cpu,
            "cpu_pct": 100 * (last.cpu - first.cpu) / span,
            "rss": last.rss,
            "threads": last.threads,
            "wakeups": (last.wakeups - first.wakeups) / span,
            "quiet_wakeups": quiet_wakeups / quiet_time if quiet_time else float("nan"),
            "quiet_cpu_pct": 100 * quiet_cpu / quiet_time if quiet_time else float("nan"),
            "span": span,
        }

    o, p = figures("ours"), figures("peer")
    span = f"{seconds:.0f} s"
    rows = [
        Row(f"idle, {span}", "CPU time", o["cpu"], p["cpu"], "s"),
        Row(f"idle, {span}", "RSS", o["rss"], p["rss"], "MiB", "< peer", o["rss"] < p["rss"]),
        Row(f"idle, {span}", "threads", o["threads"], p["threads"], ""),
        Row(f"idle, {span}", "wakeups/s (window)", o["wakeups"], p["wakeups"], "/s"),
        Row(
            f"idle, {span}",
            "wakeups/s between beats",
            o["quiet_wakeups"],
            p["quiet_wakeups"],
            "/s",
            "0",
            o["quiet_wakeups"] == 0,
        ),
    ]
    rows += beside_plain_run(
        f"idle with the ingestion check (poll 20 s), {span}",
        figures("checked"),
        o,
        WITHOUT_CHECK,
        "wakeups/s between beats and polls",
    )
    rows += beside_plain_run(
        f"idle with metrics on, not scraped, {span}", figures("metrics"), o, WITHOUT_METRICS
    )
    if with_tray:
        t = figures("tray")
        tray = "tray idle (Xvfb+trayer, key in gnome-keyring)"
        rows += [
            Row(tray, "CPU, window with one beat", t["cpu_pct"], None, "%"),
            Row(
                tray,
                "CPU between beats",
                t["quiet_cpu_pct"],
                None,
                "%",
                "0.00 %",
                round(t["quiet_cpu_pct"], 2) == 0,
            ),
            Row(tray, "RSS", t["rss"], None, "MiB", "< 45 MiB", t["rss"] < 45),
            Row(tray, "threads", t["threads"], None, ""),
            Row(
                tray,
                "wakeups/s between beats",
                t["quiet_wakeups"],
                None,
                "/s",
                "0",
                t["quiet_wakeups"] == 0,
            ),
        ]
        s = figures("sni")
        sni = "SNI tray idle (waybar on sway)"
        xorg = "the xorg tray (trayer), above"
        rows += [
            Row(
                sni,
                "RSS",
                s["rss"],
                t["rss"],
                "MiB",
                "≤ xorg tray",
                s["rss"] <= t["rss"],
                peer_name=xorg,
            ),
            Row(sni, "threads", s["threads"], t["threads"], "", peer_name=xorg),
            Row(
                sni,
                "CPU between beats",
                s["quiet_cpu_pct"],
                t["quiet_cpu_pct"],
                "%",
                peer_name=xorg,
            ),
            Row(
                sni,
                "wakeups/s between beats",
                s["quiet_wakeups"],
                t["quiet_wakeups"],
                "/s",
                "0",
                s["quiet_wakeups"] == 0,
                peer_name=xorg,
            ),
        ]
    return rows


# --- 2. schedule accuracy ---


def first_arrivals(server: CaptureServer, key: str) -> dict[int, float]:
    """Monotonic arrival time of each beat's first attempt, by sequence number."""
    firsts: dict[int, float] = {}
    for request in server.capture_requests():
        for event in request.events:
            props = event.get("properties", {})
            if props.get("$lib") != key:
                continue
            seq = int(props.get("sequence", 0))
            if seq and seq not in firsts:
                firsts[seq] = request.at
    return firsts


def accuracy(beats: int) -> list[Row]:
    """The shipped command, `heartbeat-tray run --interval 1`, against the SDK used the way its
    documentation shows (capture() in a loop with time.sleep(1); its background thread sends),
    both at once, each to its own loopback server that answers in 0-150 ms. Timestamps are the
    servers' arrival times of each beat's first attempt; deviation is from a perfect 1 s grid
    started at the first beat."""
    interval = 1.0
    servers = {who: CaptureServer().start() for who in ("ours", "peer")}
    for server in servers.values():
        server.latency = lambda: random.uniform(0.0, 0.150)
    env = Env("accuracy")
    procs = {
        "ours": subprocess.Popen(
            ours("run", "--interval", "1", "--host", servers["ours"].url),
            env=env.vars,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        "peer": subprocess.Popen(
            [*PEER, "sleep-loop", servers["peer"].url, str(interval), str(beats + 2), "no-flush"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    }
    libs = {"ours": "heartbeat-tray", "peer": "posthog-python"}
    results: dict[str, dict[str, float]] = {}
    try:
        for who, server in servers.items():
            ok = wait_for(
                lambda s=server, lib=libs[who]: len(first_arrivals(s, lib)) >= beats,  # type: ignore[misc]
                beats * interval * 3 + 60,
            )
            assert ok, f"{who}: fewer than {beats} beats arrived"
    finally:
        for proc in procs.values():
            stop(proc)
        for server in servers.values():
            server.stop()
        env.cleanup()
    for who, server in servers.items():
        firsts = first_arrivals(server, libs[who])
        t0 = firsts[1]
        deviations = [abs(firsts[k] - (t0 + (k - 1) * interval)) for k in range(1, beats + 1)]
        results[who] = {
            "median": statistics.median(deviations) * 1000,
            "max": max(deviations) * 1000,
            "drift": (firsts[beats] - (t0 + (beats - 1) * interval)) * 1000,
        }
    o, p = results["ours"], results["peer"]
    name = f"accuracy, {beats} beats at 1 s (`run --interval 1` vs capture()+sleep(1))"
    return [
        Row(name, "median deviation", o["median"], p["median"], "ms", "< 5 ms", o["median"] < 5),
        Row(name, "max deviation", o["max"], p["max"], "ms", "< 25 ms", o["max"] < 25),
        Row(
            name, "drift of last beat", o["drift"], p["drift"], "ms", "< 5 ms", abs(o["drift"]) < 5
        ),
    ]


# --- 3. backlog ---


def fill_outbox(path: Path, count: int) -> None:
    """What a long outage leaves behind: ``count`` beats, one a minute, ending now."""
    outbox = Outbox(path)
    template = BeatTemplate("heartbeat", "backlog", 60, {})
    now = datetime.now(UTC)
    try:
        for n in range(1, count + 1):
            moment = now - timedelta(minutes=count - n + 1)
            outbox.add(str(uuid.uuid4()), moment.timestamp(), template)
    finally:
        outbox.close()


def backlog(count: int) -> list[Row]:
    results: dict[str, dict[str, float]] = {}
    for who in ("ours", "peer"):
        server = CaptureServer().start()
        env = Env("backlog")
        try:
            if who == "ours":
                # it keeps running after the backlog: time the delivery, read its peak, stop it
                fill_outbox(env.outbox, count)
                started = time.monotonic()
                proc = subprocess.Popen(
                    ours("run", "--interval", "60", "--host", server.url),
                    env=env.vars,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    delivered = wait_for(lambda s=server: len(s.events) > count, 300)  # type: ignore[misc]
                    assert delivered, "ours: the backlog was not delivered in 300 s"
                    wall = time.monotonic() - started
                    peak = sample(proc.pid).hwm
                finally:
                    stop(proc)
            else:
                # the SDK script exits once it has flushed: the whole process is the measure
                wall, peak, code = run_measured(
                    [*PEER, "backlog", server.url, str(count)], env.vars
                )
                assert code == 0 and len(server.events) >= count, "peer: backlog not delivered"
        finally:
            server.stop()
            env.cleanup()
        if who == "ours":
            uuids = [e["uuid"] for e in server.events]
            assert len(set(uuids)) == len(uuids), "ours delivered a beat twice"
        results[who] = {
            "requests": len(server.capture_requests()),
            "wall": wall,
            "peak": peak,
        }
    o, p = results["ours"], results["peer"]
    name = f"backlog, {count:,} beats"
    return [
        Row(name, "requests", o["requests"], p["requests"], "", "≤ 25", o["requests"] <= 25),
        Row(name, "wall time", o["wall"], p["wall"], "s", "< 5 s", o["wall"] < 5),
        Row(name, "peak RSS", o["peak"], p["peak"], "MiB"),
    ]


# --- 4. one-shot ---


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time, peak RSS (MiB) and exit code of one whole process."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    return result["wall"], result["peak_mib"], result["exit"]


def one_shot() -> list[Row]:
    """One beat and exit: `heartbeat-tray once` against the SDK's capture(); flush()."""
    server = CaptureServer().start()
    env = Env("once")
    try:
        o_wall, o_rss, code = run_measured(ours("once", "--host", server.url), env.vars)
        assert code == 0, "ours: one-shot failed"
        p_wall, p_rss, code = run_measured([*PEER, "once", server.url], env.vars)
        assert code == 0, "peer: one-shot failed"
    finally:
        server.stop()
        env.cleanup()
    name = "one-shot"
    return [
        Row(name, "wall time", o_wall, p_wall, "s", "≤ peer", o_wall <= p_wall),
        Row(name, "peak RSS", o_rss, p_rss, "MiB"),
    ]


# --- the table ---


def table(figures: list[Figure]) -> str:
    header = [
        "scenario",
        "metric",
        "heartbeat-tray (min / median / max)",
        "peer",
        "peer (min / median / max)",
        "how the peer's figure was obtained",
        "ours/peer (medians)",
        "target (every run)",
        "",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(figure.cells()) + " |" for figure in figures]
    return "\n".join(lines)


# --- 5. noticing a break, side by side with the Ingestion Alert rule ---

PEER_RULE = "Ingestion Alert rule (its code, beside ours)"
PEER_COMPUTED = "Ingestion Alert rule"
HOW_SIMULATED = "computed from its documented rule, on the same simulated beats"


def detection(phases: int, runs: int) -> list[Figure]:
    import detection as d

    figures: list[Figure] = []
    scale = "1:10 time: beats 1 s, checks 6 s, threshold 6 s"
    env = Env("detect")
    stand = d.Stand(OURS_KEY, PERSONAL_KEY, env, other_traffic=False)
    try:
        rng = random.Random(25)
        out = d.break_and_fix(stand, [rng.uniform(0, d.EVERY) for _ in range(phases)])
    finally:
        stand.close()
        env.cleanup()
    name = f"nothing stored from a break on, {phases} phases ({scale})"
    worst_ok = max(out["ours_alert"]) <= max(out["peer_alert"])
    figures += [
        Figure(
            Row(name, "break → alert", None, None, "s", "worst ≤ peer's worst", None, PEER_RULE),
            out["ours_alert"],
            out["peer_alert"],
            [worst_ok],
        ),
        Figure(
            Row(name, "fix → resolved", None, None, "s", "", None, PEER_RULE),
            out["ours_fix"],
            out["peer_fix"],
            [],
        ),
    ]
    subset_ours, subset_peer = [], []
    lag_ours, lag_peer, behind, lost = [], [], [], []
    for _ in range(runs):
        env = Env("subset")
        stand = d.Stand(OURS_KEY, PERSONAL_KEY, env, other_traffic=True)
        try:
            o, p = d.subset_dropped(stand, 5 * d.WINDOW)
        finally:
            stand.close()
            env.cleanup()
        subset_ours.append(o)
        subset_peer.append(p)
        env = Env("lag")
        stand = d.Stand(OURS_KEY, PERSONAL_KEY, env, other_traffic=False)
        try:
            result = d.lag_grows(stand, 1.5 * d.WINDOW)
        finally:
            stand.close()
            env.cleanup()
        lag_ours.append(result["ours"])
        lag_peer.append(result["peer"])
        behind.append(result["says_behind"])
        lost.append(result["lost"])
    subset = f"heartbeats dropped, the project's other events still stored ({scale})"
    lag = f"every event stored, 9 s late (90 s deployed) ({scale})"
    figures += [
        Figure(
            Row(
                subset,
                "drop → alert (each watched for 30 s)",
                None,
                None,
                "s",
                "alerts",
                None,
                PEER_RULE,
            ),
            subset_ours,
            subset_peer,
            [all(v != NEVER for v in subset_ours)],
        ),
        Figure(
            Row(lag, "slow-down → alert", None, None, "s", "", None, PEER_RULE),
            lag_ours,
            lag_peer,
            [],
        ),
        Figure(
            Row(lag, "says how far behind (1 = yes)", None, None, "", "1", None, PEER_RULE),
            behind,
            [],
            [v == 1 for v in behind],
        ),
        Figure(
            Row(lag, "late beats counted lost", None, None, "", "0", None, PEER_RULE),
            lost,
            [],
            [v == 0 for v in lost],
        ),
    ]
    # The deployed settings, on a simulated clock (half an hour of real time each otherwise).
    trials = max(3, runs * 10)
    ours_default, peer_default = d.simulated_alerts(trials, alert_after=600, poll_seconds=120)
    ours_equal, peer_equal = d.simulated_alerts(trials, alert_after=1800, poll_seconds=120)
    sim = f"break downstream, simulated clock, {trials} random phases (our poller's code)"
    figures += [
        Figure(
            Row(
                sim,
                "defaults → alert (ours 600 s, poll 120 s; peer 30 min)",
                None,
                None,
                "min",
                "",
                None,
                PEER_COMPUTED,
                HOW_SIMULATED,
            ),
            ours_default,
            peer_default,
            [],
        ),
        Figure(
            Row(
                sim,
                "equal thresholds (1800 s) → alert",
                None,
                None,
                "min",
                "worst ≤ peer's worst + 2 min (poll 120 s vs its 60 s)",
                None,
                PEER_COMPUTED,
                HOW_SIMULATED,
            ),
            ours_equal,
            peer_equal,
            [max(ours_equal) <= max(peer_equal) + 2],
        ),
        Figure(
            Row(
                sim,
                "defaults → alert vs an hourly insight alert",
                None,
                None,
                "min",
                "",
                None,
                "hourly insight alert (last completed hour)",
                "computed from its documented rule: 1 to 2 h after the break",
            ),
            ours_default,
            [60.0, 90.0, 120.0],
            [],
        ),
    ]
    return figures


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}" if head else "unknown"


def idle_run(seconds: float, with_tray: bool) -> list[Row]:
    server = CaptureServer().start()
    try:
        return idle(server, seconds, with_tray)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that proves the harness")
    parser.add_argument("--no-tray", action="store_true", help="skip the tray (no Xvfb here)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    quick = args.quick
    runs = 1 if quick else 3
    seconds = 4.0 if quick else 60.0
    figures: list[Figure] = []
    with_tray = not args.no_tray
    figures += repeat(runs, lambda: idle_run(seconds, with_tray))
    figures += repeat(runs, lambda: accuracy(5 if quick else 30))
    figures += repeat(runs, lambda: backlog(300 if quick else 10_000))
    figures += repeat(1 if quick else 5, one_shot)
    figures += detection(phases=1 if quick else 6, runs=runs)
    text = table(figures)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.write_text(
        f"# Benchmarks\n\nRun {stamp} on {os.cpu_count()} cores, commit {commit()}"
        f"{' (quick run: one run each)' if quick else ''}; `benchmarks/run` makes this table. "
        "Each figure is min / median / max over the runs (3, or 5 for one-shot; the detection "
        "rows: one run per break phase), ours and the peer in the same run; a target is met "
        "only if every run met it. The peer column names what we compare with and the next "
        "one how its figure was obtained.\n\n"
        f"{text}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
