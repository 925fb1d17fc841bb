"""The engine, as `run` and the tray drive it, on a fake clock and transport (the fast layer).

Its worker threads run for real; the fake clock stands still, so nothing happens between the
steps a test causes (a start, a reload, Send now, a stop) and each wait is for a condition.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.api_key import ApiKey, KeyKind
from heartbeat_tray.core.app_state import Health, Snapshot
from heartbeat_tray.core.outbox import read_only_view
from heartbeat_tray.core.settings import Overrides
from heartbeat_tray.engine import Engine
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.paths import AppPaths
from testkit.simulation import FakeClock

KEY = "phc_" + "e" * 43
WAIT = 10.0  # seconds: a condition that takes longer has failed


class Capture:
    """PostHog's capture endpoint behind MockTransport; ``hold`` keeps answers back, and
    ``drop`` ends what was held without an answer (the connection of a process that exited)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self.drop = False
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/batch/", request.url  # the check is off in these tests
        self.arrived.set()
        assert self.hold.wait(WAIT)
        if self.drop:
            self.drop = False
            raise httpx.ReadError("connection closed", request=request)
        with self.lock:
            self.events.extend(json.loads(request.content)["batch"])
        return httpx.Response(200, json={"status": 1})

    def names(self) -> list[str]:
        with self.lock:
            return [event["event"] for event in self.events]


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` becomes true within ``seconds`` (looked at every 5 ms)."""
    gone = threading.Event()
    timer = threading.Timer(seconds, gone.set)
    timer.start()
    try:
        while not condition():
            if gone.wait(0.005):
                return False
        return True
    finally:
        timer.cancel()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    if not within(WAIT, condition):
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    paths = AppPaths(tmp_path / "config", tmp_path / "state", tmp_path / "log")
    paths.config_dir.mkdir()
    write_settings(paths, 'event = "first"\ninterval_seconds = 60\n')
    return paths


def write_settings(paths: AppPaths, text: str) -> None:
    paths.config_file.write_text(text + "\n[ingestion]\ncheck = false\n", encoding="utf-8")


class CountedKeys(KeyStore):
    def __init__(self, environ: dict[str, str], kind: KeyKind) -> None:
        super().__init__(environ, kind=kind)
        self.reads = 0

    def get(self) -> ApiKey | None:
        self.reads += 1
        return super().get()


class Running:
    def __init__(self, paths: AppPaths, capture: Capture, **overrides: Any) -> None:
        self.alerts: list[Alert] = []
        self.clock = FakeClock()
        self.personal = CountedKeys({}, KeyKind.PERSONAL)
        self.engine = Engine(
            paths,
            overrides=Overrides.parse(**overrides),
            keys=KeyStore({"POSTHOG_PROJECT_API_KEY": KEY}),
            personal_keys=self.personal,
            front_end="run",
            on_alert=self.alerts.append,
            clock=self.clock,
            transport=httpx.MockTransport(capture.handle),
        )

    @property
    def snap(self) -> Snapshot:
        return self.engine.state.snapshot


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def running(paths: AppPaths, capture: Capture) -> Iterator[Running]:
    run = Running(paths, capture, interval_seconds=30)
    run.engine.start()
    yield run
    capture.hold.set()
    run.engine.stop(WAIT)


def test_a_start_beats_once_and_says_what_runs(running: Running, capture: Capture) -> None:
    wait_for(lambda: running.snap.sent_today == 1, "the first beat")
    assert capture.names() == ["first"]
    assert running.snap.health is Health.HEALTHY
    info = json.loads(running.engine.paths.running_file.read_text(encoding="utf-8"))
    assert info["front_end"] == "run" and info["overrides"] == ["interval_seconds"]
    assert info["settings"]["interval_seconds"] == 30  # the override, not the file's 60
    off = "Ingestion not checked (turned off in Settings)"
    wait_for(lambda: running.snap.ingestion.sentence == off, "the check to say it is off")
    assert running.personal.reads == 0  # the check is off: the keyring is not even asked


def test_the_check_starts_only_once_the_first_beat_is_made(
    paths: AppPaths, capture: Capture
) -> None:
    """Both at once, the check's first status write held the first beat back (benchmarks)."""
    run = Running(paths, capture)
    capture.hold.clear()  # the first beat stays in flight
    run.engine.start()
    off = "Ingestion not checked (turned off in Settings)"
    try:
        assert capture.arrived.wait(WAIT)
        # Started at once, the check says it is off within milliseconds; here it must not.
        assert not within(1.0, lambda: run.snap.ingestion.sentence == off)
        capture.hold.set()
        wait_for(lambda: run.snap.ingestion.sentence == off, "the check once the beat is made")
    finally:
        capture.hold.set()
        run.engine.stop(WAIT)


def test_a_reload_takes_the_file_and_keeps_the_overrides_on_top(
    running: Running, capture: Capture, paths: AppPaths
) -> None:
    wait_for(lambda: running.snap.sent_today == 1, "the first beat")
    write_settings(paths, 'event = "second"\ninterval_seconds = 300\n')
    loaded = running.engine.reload()
    assert loaded.problem is None
    assert running.engine.settings.event == "second"
    assert running.engine.settings.interval_seconds == 30  # --interval still wins
    running.engine.send_now()
    wait_for(lambda: capture.names() == ["first", "second"], "a beat with the new event")
    assert capture.events[-1]["properties"]["interval_seconds"] == 30


def test_a_reload_of_a_broken_file_keeps_the_last_good_settings(
    running: Running, capture: Capture, paths: AppPaths
) -> None:
    wait_for(lambda: running.snap.sent_today == 1, "the first beat")
    paths.config_file.write_text('event = "second\n', encoding="utf-8")
    loaded = running.engine.reload()
    assert loaded.problem is not None and "line 1" in loaded.problem
    assert running.snap.settings_problem == loaded.problem
    running.engine.send_now()
    wait_for(lambda: len(capture.names()) == 2, "the next beat")
    assert capture.names() == ["first", "first"]  # nothing from the broken file


def test_pause_and_resume_are_remembered_in_the_file_without_the_overrides(
    running: Running, capture: Capture, paths: AppPaths
) -> None:
    wait_for(lambda: running.snap.sent_today == 1, "the first beat")
    running.engine.set_enabled(False)
    wait_for(lambda: running.snap.health is Health.DISABLED, "the ticker to confirm the pause")
    saved = tomllib.loads(paths.config_file.read_text(encoding="utf-8"))
    assert saved["enabled"] is False
    assert saved["interval_seconds"] == 60 and saved["event"] == "first"  # no override saved
    running.engine.set_enabled(True)
    wait_for(lambda: running.snap.health is Health.HEALTHY, "the ticker to resume")
    saved = tomllib.loads(paths.config_file.read_text(encoding="utf-8"))
    assert saved["enabled"] is True


def test_a_pause_never_rewrites_a_file_the_user_has_to_fix(
    running: Running, paths: AppPaths
) -> None:
    wait_for(lambda: running.snap.sent_today == 1, "the first beat")
    broken = 'event = "second\n'
    paths.config_file.write_text(broken, encoding="utf-8")
    running.engine.set_enabled(False)
    wait_for(lambda: running.snap.health is Health.DISABLED, "the pause")
    assert paths.config_file.read_text(encoding="utf-8") == broken


def test_a_stop_with_a_beat_in_flight_keeps_it_queued_for_the_next_start(
    paths: AppPaths, capture: Capture
) -> None:
    first = Running(paths, capture)
    capture.hold.clear()  # PostHog takes its time over the first beat
    first.engine.start()
    assert capture.arrived.wait(WAIT)
    assert first.engine.stop(0.2) is False  # it did not end in time
    queued, _meta = read_only_view(paths.outbox_file).read()
    assert queued == 1  # the beat in flight is still in the outbox
    assert not paths.running_file.exists()
    capture.drop = True  # the process exits: its request ends without an answer
    capture.hold.set()
    wait_for(lambda: first.snap.consecutive_failures == 1, "the dropped request to end")
    queued, _meta = read_only_view(paths.outbox_file).read()
    assert queued == 1 and capture.events == []

    second = Running(paths, capture)
    second.clock.advance(60)  # a minute later
    second.engine.start()
    try:
        wait_for(lambda: len(capture.events) == 2, "the new live beat and the queued one")
    finally:
        second.engine.stop(WAIT)
    live, resent = capture.events
    assert resent["timestamp"] < live["timestamp"]  # the queued beat keeps its own time
    assert live["properties"]["sequence"] == resent["properties"]["sequence"] + 1
    queued, _meta = read_only_view(paths.outbox_file).read()
    assert queued == 0
