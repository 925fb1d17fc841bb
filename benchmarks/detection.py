"""Noticing a break: `heartbeat-tray run` against PostHog's retired Ingestion Alert app, side
by side on one loopback PostHog and one clock (issue: "no later than the Ingestion Alert").

The peer is its published rule as code: every minute, `GET /api/event?after=<now - window>` with
a personal key; "triggered" once when the answer is empty, "resolved" once events come back.
Real time is scaled 1:10 so a run takes minutes, not hours: beats every 1 s, both check every
6 s over a 6 s window (the peer's 60 s and 60 s). The rules are the same at any scale.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.posthog_server import CaptureServer  # noqa: E402
from testkit.waiting import poll  # noqa: E402

SCALE = 10  # real seconds here are SCALE times shorter than the deployed settings
WINDOW = 6.0  # the threshold, for both (60 s deployed)
EVERY = 6.0  # how often each checks (60 s deployed: the peer's fixed minute)
NEVER = float("inf")


@dataclass
class IngestionAlertPeer:
    """The Ingestion Alert app's rule, polling the loopback PostHog on its own thread."""

    url: str
    personal_key: str
    window: float = WINDOW
    every: float = EVERY
    triggered: list[float] = field(default_factory=list)  # time.time() of each alert
    resolved: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> IngestionAlertPeer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        active = False
        while not self._stop.is_set():
            after = (datetime.now(UTC) - timedelta(seconds=self.window)).isoformat()
            request = urllib.request.Request(
                f"{self.url}/api/event?after={after.replace('+', '%2B')}&refresh=true",
                headers={"Authorization": f"Bearer {self.personal_key}"},
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                empty = not json.loads(answer.read())["results"]
            if empty and not active:
                active = True
                self.triggered.append(time.time())
            elif not empty and active:
                active = False
                self.resolved.append(time.time())
            self._stop.wait(self.every)


class OtherTraffic:
    """Other events of the same project (a product's own pageviews), every half second."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> OtherTraffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = datetime.now(UTC).isoformat()
            event = {
                "event": "$pageview",
                "distinct_id": "visitor",
                "uuid": str(uuid.uuid4()),
                "timestamp": now,
                "properties": {},
            }
            body = json.dumps({"api_key": self.key, "batch": [event], "sent_at": now}).encode()
            request = urllib.request.Request(
                f"{self.url}/batch/", data=body, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request, timeout=5).read()
            self._stop.wait(0.5)


class Stand:
    """One loopback PostHog, `heartbeat-tray run` with the ingestion check and a webhook, the
    Ingestion Alert rule beside it, and (optionally) other traffic in the project."""

    def __init__(self, key: str, personal: str, env: Any, other_traffic: bool) -> None:
        self.server = CaptureServer(valid_keys={key}).start()
        self.server.personal_keys = {personal}
        self.env = env
        env.write_config(
            f'host = "{self.server.url}"\ninterval_seconds = 1\n[ingestion]\n'
            f"poll_seconds = {EVERY:.0f}\nalert_after_seconds = {WINDOW:.0f}\n"
            f'webhook_url = "{self.server.url}/webhook"\n'
        )
        self.vars = {**env.vars, "POSTHOG_PERSONAL_API_KEY": personal}
        # its stderr (with a traceback of every thread if it ever fails to stop) stays for
        # whoever reads the benchmark's output: tempfile's folder, named in the message below
        self.stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix="hb-detect-run-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "heartbeat_tray", "run"],
            env=self.vars,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self.traffic = OtherTraffic(self.server.url, key).start() if other_traffic else None
        self.peer = IngestionAlertPeer(self.server.url, personal)
        # both healthy before anything breaks: ours has checked twice, the peer sees events
        assert poll(lambda: len(self.server.queries) >= 2, 60), "ours never checked"
        self.peer.start()
        time.sleep(EVERY + 1)

    def ours(self, status: str) -> list[float]:
        with self.server._cond:
            return [
                at
                for at, hook in zip(self.server.webhook_times, self.server.webhooks, strict=True)
                if hook.get("status") == status
            ]

    def lost(self) -> int:
        out = subprocess.run(
            [sys.executable, "-m", "heartbeat_tray", "status", "--json"],
            env=self.vars,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(json.loads(out)["ingestion"]["lost"])

    def close(self) -> None:
        self.peer.stop()
        if self.traffic is not None:
            self.traffic.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a bug of ours: say so, with its threads' stacks
                self.proc.send_signal(signal.SIGABRT)
                self.proc.wait(timeout=10)
                print(f"heartbeat-tray run did not stop on SIGTERM: {self.stderr.name}")
        self.stderr.close()
        self.server.stop()


def _wait(values: Any, count: int, timeout: float) -> bool:
    return bool(poll(lambda: len(values()) >= count, timeout, every=0.05))


def _both(stand: Stand, status: str, n: int, since: float) -> tuple[float, float]:
    """Seconds from ``since`` to the n-th ``status`` alert of ours and of the peer."""
    peer = stand.peer.triggered if status == "triggered" else stand.peer.resolved
    ok = _wait(lambda: stand.ours(status), n + 1, 60) and _wait(lambda: peer, n + 1, 60)
    assert ok, f"no {status} alert from both"
    return stand.ours(status)[n] - since, peer[n] - since


def break_and_fix(stand: Stand, phases: list[float]) -> dict[str, list[float]]:
    """Nothing stored from the break on, then stored again: seconds to alert and to resolve."""
    out: dict[str, list[float]] = {
        k: [] for k in ("ours_alert", "peer_alert", "ours_fix", "peer_fix")
    }
    for n, phase in enumerate(phases):
        time.sleep(phase)
        broke = time.time()
        stand.server.drop_downstream = True
        ours, peer = _both(stand, "triggered", n, broke)
        out["ours_alert"].append(ours)
        out["peer_alert"].append(peer)
        fixed = time.time()
        stand.server.drop_downstream = False
        ours, peer = _both(stand, "resolved", n, fixed)
        out["ours_fix"].append(ours)
        out["peer_fix"].append(peer)
        time.sleep(WINDOW + 2)  # healthy for a while between breaks
    return out


def subset_dropped(stand: Stand, wait_for: float) -> tuple[float, float]:
    """Heartbeats are dropped while the project's other events are still stored."""
    time.sleep(random.uniform(0, EVERY))
    broke = time.time()
    stand.server.drop_events = {"heartbeat"}
    _wait(lambda: stand.ours("triggered"), 1, wait_for)
    time.sleep(max(0.0, broke + wait_for - time.time()))
    ours = stand.ours("triggered")
    peer = stand.peer.triggered
    stand.server.drop_events = set()
    return (ours[0] - broke if ours else NEVER, peer[0] - broke if peer else NEVER)


def lag_grows(stand: Stand, lag: float) -> dict[str, float]:
    """Every event is still stored, but `lag` seconds late (more than the threshold)."""
    time.sleep(random.uniform(0, EVERY))
    slowed = time.time()
    stand.server.ingest_lag = lag
    ok = _wait(lambda: stand.ours("triggered"), 1, 60) and _wait(
        lambda: stand.peer.triggered, 1, 60
    )
    assert ok, "the lag went unnoticed"
    text = next(w for w in stand.server.webhooks if w.get("status") == "triggered")["text"]
    stand.server.ingest_lag = 0.5
    _wait(lambda: stand.ours("resolved"), 1, 60)
    time.sleep(3 * WINDOW)  # every late beat stored, and a threshold more: now count the lost
    return {
        "ours": stand.ours("triggered")[0] - slowed,
        "peer": stand.peer.triggered[0] - slowed,
        "says_behind": float("s behind; newest stored beat" in text),
        "lost": float(stand.lost()),
    }


# --- on a simulated clock: the deployed defaults, which take half an hour of real time ---


def simulated_alerts(
    trials: int, alert_after: int, poll_seconds: int
) -> tuple[list[float], list[float]]:
    """Minutes from a break to the alert: our poller's real code on a fake clock (beats every
    60 s on their grid, stored 10 s later), and the Ingestion Alert rule (30-minute window,
    checked every minute at a random phase) applied to the same stored beats."""
    import tempfile

    from testkit.simulation import Harness

    rng = random.Random(7)
    ours, peer = [], []
    for _ in range(trials):
        with tempfile.TemporaryDirectory() as folder:
            h = Harness(Path(folder), webhook=False, poll=poll_seconds, alert_after=alert_after)
            h.run_on_grid(1800 + rng.uniform(0, 240))  # healthy, then broken at a random phase
            broke = h.clock.monotonic()
            last_beat = (h.next_beat or broke) - 60  # the newest beat that will ever be stored
            while not h.alerts:
                h.run_on_grid(5, lag=None)
            ours.append((h.clock.monotonic() - broke) / 60)
            # the peer: the first of its minute ticks at which that beat is older than 30 min
            phase = rng.uniform(0, 60)
            tick = last_beat + 1800
            tick = broke + phase + 60 * max(0, -(-(tick - broke - phase) // 60))
            peer.append((tick - broke) / 60)
    return ours, peer
