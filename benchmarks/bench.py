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

OURS_KEY = "phc_benchmarkOursKey0123456789abcdefghijklmno"
PERSONAL_KEY = "phx_benchmarkPersonalKey0123456789abcdefghij"
PEER = [sys.executable, str(ROOT / "benchmarks" / "sdk_peer.py")]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    scenario: str
    metric: str
    ours: float | None
    peer: float | None
    unit: str
    target: str = ""
    met: bool | None = None

    def cells(self) -> list[str]:
        ratio = (
            f"{self.ours / self.peer:.2f}"
            if self.ours is not None and self.peer not in (None, 0)
            else "—"
        )
        verdict = {None: "", True: "met", False: "**missed**"}[self.met]
        return [
            self.scenario,
            self.metric,
            _fmt(self.ours, self.unit),
            _fmt(self.peer, self.unit),
            ratio,
            self.target,
            verdict,
        ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = 0 if float(value).is_integer() or abs(value) >= 100 else 2
    return f"{value:,.{digits}f} {unit}".strip()


# --- processes and /proc ---


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


def idle(server: CaptureServer, seconds: float, with_tray: bool) -> list[Row]:
    interval = 60
    env = Env("idle")
    procs: dict[str, subprocess.Popen[Any]] = {}
    desktop = None
    keyring = None
    tray_env = Env("tray")
    checked_env = Env("checked")
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
        firsts = {
            "ours": lambda: events_from(server, "heartbeat-tray", "run"),
            "peer": lambda: [e for e in server.events if e.get("distinct_id") == "sdk-peer"],
            "tray": lambda: events_from(server, "heartbeat-tray", "tray"),
            "checked": lambda: events_from(server, "heartbeat-tray", "checked"),
            "sni": lambda: events_from(server, "heartbeat-tray", "sni"),
        }
        for name in procs:
            assert wait_for(lambda n=name: bool(firsts[n]()), 60), f"{name} sent no first beat"
        time.sleep(2.0)  # let start-up work and the first pulse finish
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
        sni_env.cleanup()
        if sni_host is not None:
            sni_host.stop()

    distinct = {
        "ours": "run",
        "peer": "sdk-peer",
        "tray": "tray",
        "checked": "checked",
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
    span = f"{o['span']:.0f} s"
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
    c = figures("checked")
    checked = f"idle with the ingestion check (poll 20 s), {span}"
    rows += [
        Row(checked, "RSS (peer: the same run without)", c["rss"], o["rss"], "MiB"),
        Row(checked, "threads", c["threads"], o["threads"], ""),
        Row(
            checked,
            "wakeups/s between beats and polls",
            c["quiet_wakeups"],
            o["quiet_wakeups"],
            "/s",
            "0",
            c["quiet_wakeups"] == 0,
        ),
    ]
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
        sni = "SNI tray idle (waybar on sway; peer: the xorg tray above)"
        rows += [
            Row(sni, "RSS", s["rss"], t["rss"], "MiB", "≤ xorg tray", s["rss"] <= t["rss"]),
            Row(sni, "threads", s["threads"], t["threads"], ""),
            Row(sni, "CPU between beats", s["quiet_cpu_pct"], t["quiet_cpu_pct"], "%"),
            Row(
                sni,
                "wakeups/s between beats",
                s["quiet_wakeups"],
                t["quiet_wakeups"],
                "/s",
                "0",
                s["quiet_wakeups"] == 0,
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


def accuracy(beats: int, interval: float) -> list[Row]:
    results: dict[str, dict[str, float]] = {}
    for who in ("ours", "peer"):
        server = CaptureServer().start()
        server.latency = lambda: random.uniform(0.0, 0.150)
        env = Env("accuracy")
        lib = "heartbeat-tray" if who == "ours" else "posthog-python"
        if who == "ours":
            env.outbox.parent.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                str(ROOT / "benchmarks" / "ticker_driver.py"),
                server.url,
                str(interval),
                str(env.outbox.parent),
            ]
        else:
            cmd = [*PEER, "sleep-loop", server.url, str(interval), str(beats)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ok = wait_for(
                lambda s=server, lib=lib: len(first_arrivals(s, lib)) >= beats,  # type: ignore[misc]
                beats * interval * 3 + 60,
            )
            assert ok, f"{who}: fewer than {beats} beats arrived"
        finally:
            stop(proc)
            server.stop()
            env.cleanup()
        firsts = first_arrivals(server, lib)
        t0 = firsts[1]
        deviations = [abs(firsts[k] - (t0 + (k - 1) * interval)) for k in range(1, beats + 1)]
        results[who] = {
            "median": statistics.median(deviations) * 1000,
            "max": max(deviations) * 1000,
            "drift": (firsts[beats] - (t0 + (beats - 1) * interval)) * 1000,
        }
    o, p = results["ours"], results["peer"]
    name = f"accuracy, {beats} beats at {interval} s"
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


def one_shot(runs: int) -> list[Row]:
    server = CaptureServer().start()
    env = Env("once")
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
    try:
        for _ in range(runs):
            for who, cmd in (
                ("ours", ours("once", "--host", server.url)),
                ("peer", [*PEER, "once", server.url]),
            ):
                wall, rss, code = run_measured(cmd, env.vars)
                assert code == 0, f"{who} one-shot failed"
                results[who].append((wall, rss))
    finally:
        server.stop()
        env.cleanup()
    o_wall = statistics.median(w for w, _ in results["ours"])
    p_wall = statistics.median(w for w, _ in results["peer"])
    o_rss = max(r for _, r in results["ours"])
    p_rss = max(r for _, r in results["peer"])
    name = f"one-shot, median of {runs}"
    return [
        Row(name, "wall time", o_wall, p_wall, "s", "≤ peer", o_wall <= p_wall),
        Row(name, "peak RSS", o_rss, p_rss, "MiB"),
    ]


# --- the table ---


def table(rows: list[Row]) -> str:
    header = [
        "scenario",
        "metric",
        "heartbeat-tray",
        "posthog-python loop",
        "ours/peer",
        "target",
        "",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


# --- 5. from a break downstream to the alert ---


def time_to_alert(trials: int) -> list[Row]:
    """Our poller's real code with the defaults (poll 120 s, alert after 600 s, a beat a
    minute), on a simulated clock: PostHog stops storing beats at a random moment, and we time
    the alert. The alternatives' times come from their documented rules."""
    from heartbeat_tray.core.ingestion import IngestionState
    from testkit.simulation import Harness

    rng = random.Random(7)
    minutes = []
    for n in range(trials):
        with tempfile.TemporaryDirectory() as folder:
            h = Harness(Path(folder), webhook=False, poll=120)
            h.settings = replace_settings(h.settings)
            h.poller = h.make_poller()
            h.run(1800 + rng.uniform(0, 240))  # healthy for a while, broken at a random phase
            broke = h.clock.monotonic()
            while not h.alerts:
                h.run(5, lag=None)
            assert h.status.state is IngestionState.FAILING, n
            minutes.append((h.clock.monotonic() - broke) / 60)
    ours_median, ours_max = statistics.median(minutes), max(minutes)
    # Ingestion Alert: polls every minute for "no event in the last 30 minutes".
    ia_median, ia_max = 30 + 0.5, 30 + 1
    # An hourly insight alert checks the last completed hour at each whole hour: the first hour
    # without a beat is the one after the break's hour, checked when it ends.
    hourly_median, hourly_max = 90.0, 120.0
    scenario = "break downstream → alert (defaults)"
    return [
        Row(scenario, "median vs Ingestion Alert (30 min)", ours_median, ia_median, "min"),
        Row(scenario, "worst vs Ingestion Alert (30 min)", ours_max, ia_max, "min"),
        Row(scenario, "median vs hourly insight alert", ours_median, hourly_median, "min"),
        Row(
            scenario,
            "worst vs hourly insight alert",
            ours_max,
            hourly_max,
            "min",
            "≤ 14 min",
            ours_max <= 14,
        ),
    ]


def replace_settings(settings: Any) -> Any:
    from dataclasses import replace

    from heartbeat_tray.core.settings import IngestionSettings

    return replace(settings, ingestion=IngestionSettings(poll_seconds=120, alert_after_seconds=600))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that proves the harness")
    parser.add_argument("--no-tray", action="store_true", help="skip the tray (no Xvfb here)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    quick = args.quick
    rows: list[Row] = []
    server = CaptureServer().start()
    try:
        rows += idle(server, 4.0 if quick else 60.0, with_tray=not args.no_tray)
    finally:
        server.stop()
    rows += accuracy(10 if quick else 200, 0.2)
    rows += backlog(300 if quick else 10_000)
    rows += one_shot(1 if quick else 5)
    rows += time_to_alert(3 if quick else 40)
    text = table(rows)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.write_text(
        f"# Benchmarks\n\nRun {stamp} on {os.cpu_count()} cores"
        f"{' (quick run)' if quick else ''}; `benchmarks/run` makes this table.\n\n{text}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
