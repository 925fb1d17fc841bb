"""The ticker's schedule, retries and outbox, driven by a fake clock and httpx.MockTransport."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from heartbeat_tray.core.app_state import AppState, Health
from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.ports import AcceptedBeat
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.ticker import MAX_BATCH, Ticker, TickerConfig, request_timeout
from heartbeat_tray.posthog.capture import PostHogClient
from tests.fakes import FakeClock, FakePostHog

KEY = "phc_" + "a" * 43


class Harness:
    def __init__(self, tmp_path: Path, settings: Settings | None = None, **server: Any) -> None:
        self.clock = FakeClock()
        self.server = FakePostHog(self.clock, **server)
        self.outbox = Outbox(tmp_path / "outbox.sqlite3")
        self.state = AppState()
        self.client = PostHogClient(transport=self.server.transport(), wall_clock=self.clock.wall)
        self.settings = settings or Settings(interval_seconds=60)
        self.announced: list[AcceptedBeat] = []
        self.ticker = Ticker(
            TickerConfig(self.settings, "test-install"),
            key_source=lambda: KEY,
            outbox=self.outbox,
            client=self.client,
            state=self.state,
            on_accepted=self.announced.extend,
            clock=self.clock,
            random_fraction=lambda: 1.0,
        )
        self.start = self.clock.monotonic()
        self.start_wall = self.clock.wall().timestamp()
        self.wakes: list[float] = []

    def run_until(self, t: float) -> None:
        """Run the ticker as its thread would, up to ``t`` seconds after the start."""
        target = self.start + t
        while True:
            wake = self.ticker.step()
            self.wakes.append(self.clock.monotonic())
            if wake is None or wake > target:
                self.clock.advance(max(0.0, target - self.clock.monotonic()))
                return
            self.clock.advance(max(0.0, wake - self.clock.monotonic()))

    def beat_times(self) -> list[float]:
        """Each accepted event's timestamp, in wall-clock seconds after the start."""
        return [
            round(datetime.fromisoformat(e["timestamp"]).timestamp() - self.start_wall, 6)
            for e in self.server.accepted
        ]


def respond(status: int, **headers: str) -> Any:
    return lambda events: httpx.Response(status, headers=headers, json={"status": status})


def test_beats_fall_on_the_grid_and_slow_answers_do_not_push_them(tmp_path: Path) -> None:
    h = Harness(tmp_path, latency=7.5)  # every request takes 7.5 s of a 60 s interval
    h.run_until(600)
    assert h.beat_times() == [60.0 * k for k in range(11)]
    # one request per beat: nothing is sent twice and nothing is polled in between
    assert len(h.server.requests) == 11
    assert h.state.snapshot.health is Health.HEALTHY


def test_between_beats_the_ticker_sleeps_until_the_next_beat(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run_until(300)
    steps_after_start = [round(w - h.start, 6) for w in h.wakes]
    # each beat costs two steps (send, then see nothing left to do); nothing else runs
    assert steps_after_start == [0, 0, 60, 60, 120, 120, 180, 180, 240, 240, 300, 300]


def test_event_has_the_spec_fields(tmp_path: Path) -> None:
    settings = Settings(interval_seconds=60, event="pipeline_ok", properties={"team": "infra"})
    h = Harness(tmp_path, settings)
    h.run_until(60)
    first, second = h.server.accepted
    assert first["event"] == "pipeline_ok"
    assert first["distinct_id"] == "test-install"
    assert first["timestamp"] == "2026-11-26T12:00:00.000Z"
    assert second["timestamp"] == "2026-11-26T12:01:00.000Z"
    props = first["properties"]
    assert props["$lib"] == "heartbeat-tray"
    assert props["$process_person_profile"] is False
    assert props["$geoip_disable"] is True
    assert props["interval_seconds"] == 60
    assert props["team"] == "infra"
    assert second["properties"]["sequence"] == props["sequence"] + 1
    assert first["uuid"] != second["uuid"]


def test_outage_keeps_every_beat_and_delivers_each_once_oldest_first(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(503)
    h.run_until(600)  # 11 beats fail
    assert h.server.accepted == []
    assert h.outbox.count() == 11
    snap = h.state.snapshot
    assert snap.health is Health.FAILING
    assert snap.status_line.startswith("Failing: 503 Service Unavailable")
    h.server.answer = None
    h.run_until(660)
    uuids = [e["uuid"] for e in h.server.accepted]
    assert len(uuids) == 12 and len(set(uuids)) == 12
    # the live beat first, then the backlog oldest first, each with its own time
    assert h.beat_times() == [660.0] + [60.0 * k for k in range(11)]
    assert h.outbox.count() == 0
    assert h.state.snapshot.health is Health.HEALTHY


def test_a_retried_beat_keeps_its_uuid_and_timestamp(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(500)
    h.run_until(0)
    failed = h.server.requests[0][1][0]
    h.server.answer = None
    h.run_until(30)  # a backlog retry before the next beat
    assert h.server.accepted[0]["uuid"] == failed["uuid"]
    assert h.server.accepted[0]["timestamp"] == failed["timestamp"]


def test_retries_back_off_but_live_beats_keep_their_grid(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(503)
    h.run_until(600)
    times = [round(t - h.start, 3) for t, _ in h.server.requests]
    live = [t for t in times if t % 60 == 0]
    assert live == [60.0 * k for k in range(11)]  # every live beat tried at its grid time
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1.0  # never faster than once a second
    assert len(times) < 40  # retries back off instead of hammering


def test_retry_after_holds_every_request_including_live_beats(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(429, **{"Retry-After": "150"})
    h.run_until(0)
    h.server.answer = None
    h.run_until(149)
    assert len(h.server.requests) == 1  # the beats at 60 and 120 waited
    assert h.outbox.count() == 3
    assert h.state.snapshot.status_line.startswith("Rate limited")
    h.run_until(151)
    assert sorted(h.beat_times()) == [0.0, 60.0, 120.0]


def test_retry_after_as_http_date(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(503, **{"Retry-After": "Thu, 26 Nov 2026 12:03:00 GMT"})
    h.run_until(0)
    h.server.answer = None
    h.run_until(179)
    assert len(h.server.requests) == 1
    h.run_until(181)
    assert sorted(h.beat_times()) == [0.0, 60.0, 120.0, 180.0]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_stops_sending_keeps_beats_until_settings_change(
    tmp_path: Path, status: int
) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(status)
    h.run_until(3600)
    assert len(h.server.requests) == 1  # no retry storm
    assert h.outbox.count() == 61  # every beat kept
    snap = h.state.snapshot
    assert snap.health is Health.KEY_REJECTED
    assert "API key rejected" in snap.status_line
    h.server.answer = None
    h.ticker.apply(TickerConfig(h.settings, "test-install"))
    h.run_until(3601)
    assert len(h.server.accepted) == 61


def test_a_rejected_beat_is_dropped_and_counted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(400)
    h.run_until(0)
    assert h.outbox.count() == 0
    assert h.state.snapshot.missed == 1


def test_too_large_halves_the_batch_until_it_fits(tmp_path: Path) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=1))
    h.server.answer = respond(503)
    h.run_until(299.5)  # 300 beats queued
    h.server.answer = lambda events: (
        httpx.Response(413) if len(events) > 40 else httpx.Response(200, json={})
    )
    h.run_until(310)
    uuids = [e["uuid"] for e in h.server.accepted]
    assert len(uuids) == len(set(uuids)) == 311
    assert h.outbox.count() == 0


def test_backlog_goes_out_in_large_batches(tmp_path: Path) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=1))
    h.server.answer = respond(503)
    h.run_until(1999.5)
    failed_requests = len(h.server.requests)
    h.server.answer = None
    h.run_until(2000)
    sizes = [len(events) for _, events in h.server.requests[failed_requests:]]
    assert sizes[0] == 1  # the live beat, on its own
    assert max(sizes) == MAX_BATCH
    assert sum(sizes) == 2001
    assert len(sizes) <= 6


def test_without_backfill_missed_beats_are_counted_and_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=60, backfill=False))
    h.server.answer = respond(503)
    h.run_until(300)
    assert h.outbox.count() == 1  # only the current beat may still be delivered
    assert h.state.snapshot.missed == 5
    h.server.answer = None
    h.run_until(360)
    assert h.beat_times() == [360.0]  # the beat at 300 had its interval and is gone too
    assert h.state.snapshot.missed == 6
    assert h.state.snapshot.counters_line.endswith("Missed: 6")


def test_after_a_suspend_one_beat_goes_at_once_and_the_grid_reanchors(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run_until(30)
    h.clock.suspend(3600)  # wall clock moves an hour, the monotonic clock stands still
    h.clock.advance(40)  # the wait for the beat at 60 ends after resume
    h.run_until(70)
    times = h.beat_times()
    assert times[:2] == [0.0, 3670.0]  # no beats invented for the hour asleep
    h.run_until(130)
    assert h.beat_times()[2] == 3730.0  # the new grid: 60 s after the resume beat


def test_a_stopped_process_sends_one_beat_on_resume_and_reanchors(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run_until(0)
    h.clock.advance(330)  # SIGSTOP for 5.5 intervals: the monotonic clock ran on
    h.run_until(330)
    h.run_until(400)
    assert h.beat_times() == [0.0, 330.0, 390.0]


def test_disabled_makes_no_beats_but_delivers_queued_ones(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = respond(503)
    h.run_until(120)
    h.ticker.set_enabled(False)
    h.server.answer = None
    h.run_until(600)
    assert sorted(h.beat_times()) == [0.0, 60.0, 120.0]
    assert h.state.snapshot.health is Health.DISABLED
    h.ticker.set_enabled(True)
    h.run_until(601)
    assert sorted(h.beat_times())[-1] == 600.0  # enabling beats at once


def test_send_now_adds_a_beat_off_the_grid(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run_until(10)
    h.ticker.send_now()
    h.run_until(60)
    assert h.beat_times() == [0.0, 10.0, 60.0]
    assert h.state.snapshot.accepted_live == 3


def test_interval_change_reanchors_the_grid(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run_until(90)
    h.ticker.apply(TickerConfig(Settings(interval_seconds=10), "test-install"))
    h.run_until(120)
    assert h.beat_times() == [0.0, 60.0, 100.0, 110.0, 120.0]


def test_outbox_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=1))
    h.server.answer = respond(503)
    for _ in range(20_005):
        h.ticker._make_beat(h.clock.wall())
        h.clock.advance(1)
    h.ticker._enforce_bounds(h.clock.wall())
    assert h.outbox.count() == 20_000
    oldest = h.outbox.oldest(1)[0]
    assert oldest.event()["properties"]["sequence"] == 6


def test_no_key_means_needs_setup_and_no_beats(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.ticker._key_source = lambda: None
    assert h.ticker.step() is None  # nothing to do until the settings change
    assert h.outbox.count() == 0
    snap = h.state.snapshot
    assert snap.health is Health.NEEDS_SETUP
    assert snap.status_line == "No API key — open Settings"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (301, "Moved Permanently"),
        (307, "Temporary Redirect"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
    ],
)
def test_a_redirect_or_a_404_keeps_every_beat_and_recovers_by_itself(
    tmp_path: Path, status: int, words: str
) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=1))
    h.server.answer = respond(503)
    h.run_until(299.5)  # 300 beats queued by an outage
    h.server.answer = respond(status, Location="https://elsewhere.example/batch/")
    before = len(h.server.requests)
    h.run_until(899.5)  # ten minutes behind a proxy that answers 404 during an upgrade
    assert h.outbox.count() == 900  # not one beat lost
    assert h.state.snapshot.missed == 0
    wrong = h.server.requests[before:]
    # one request per interval, the live beat alone: no backlog, no storm, no halving
    assert len(wrong) <= 601
    assert sum(1 for _, events in wrong if len(events) > 1) <= 1
    times = [round(t - h.start, 6) for t, events in wrong if len(events) == 1]
    assert times[-600:] == [float(k) for k in range(300, 900)]
    snap = h.state.snapshot
    assert snap.health is Health.WRONG_HOST
    assert (
        snap.status_line
        == f"PostHog at {h.settings.host} answered {status} {words} — check the host"
    )
    h.server.answer = None  # the proxy is back; nobody touched the settings
    h.run_until(901)
    assert h.state.snapshot.health is Health.HEALTHY  # the next live beat got through
    h.run_until(960)
    assert len({e["uuid"] for e in h.server.accepted}) == 961
    assert h.outbox.count() == 0


def test_only_a_400_drops_a_beat_and_only_that_one(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.server.answer = lambda events: (
        httpx.Response(400)
        if any(e["properties"]["sequence"] == 2 for e in events)
        else httpx.Response(200)
    )
    h.run_until(180)
    assert [e["properties"]["sequence"] for e in h.server.accepted] == [1, 3, 4]
    assert h.state.snapshot.missed == 1


def test_a_broken_settings_file_sends_nothing_anywhere(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.ticker.apply(TickerConfig(h.settings, "test-install", problem="config.toml line 3: bad"))
    h.run_until(600)
    assert h.server.requests == []
    snap = h.state.snapshot
    assert snap.health is Health.NEEDS_SETUP and snap.status_line == "config.toml line 3: bad"


class FailingWrites:
    """An outbox whose disk is full for a while (SQLite says 'database or disk is full'):
    neither a new beat nor the record of an answer can be written."""

    def __init__(self, outbox: Outbox) -> None:
        self.full = False
        self._add = outbox.add
        self._settle = outbox.settle
        outbox.add = self.add  # type: ignore[method-assign]
        outbox.settle = self.settle  # type: ignore[method-assign]

    def _check(self) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")

    def add(self, *args: Any) -> Any:
        self._check()
        return self._add(*args)

    def settle(self, *args: Any) -> Any:
        self._check()
        return self._settle(*args)


def test_a_full_disk_still_sends_the_live_beat_says_so_and_recovers(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    disk = FailingWrites(h.outbox)
    h.run_until(60)
    disk.full = True
    h.run_until(240)
    assert len(h.server.accepted) == 5  # the live beats went out all the same
    assert [e["properties"]["sequence"] for e in h.server.accepted] == [1, 2, 3, 4, 5]
    assert h.state.snapshot.status_line == "Disk full — beats are not being kept"
    disk.full = False
    h.run_until(300)
    assert h.state.snapshot.storage_problem is None
    assert h.state.snapshot.status_line.startswith("Last accepted")
    assert [e["properties"]["sequence"] for e in h.server.accepted][-1] == 6


@pytest.mark.parametrize("interval", [1, 5, 60])
def test_an_accepted_beat_the_full_disk_cannot_record_is_never_sent_again(
    tmp_path: Path, interval: int
) -> None:
    h = Harness(tmp_path, Settings(interval_seconds=interval))
    disk = FailingWrites(h.outbox)
    h.server.answer = respond(503)
    h.run_until(30 * interval - interval / 2)  # 30 beats queued by an outage
    assert h.outbox.count() == 30
    h.server.answer = None
    disk.full = True  # PostHog is back, but no answer can be recorded
    before = len(h.server.requests)
    h.run_until(90 * interval - interval / 2)
    during = h.server.requests[before:]
    sends = [e["uuid"] for _, events in during for e in events]
    assert len(sends) == len(set(sends))  # each beat went once: no resend storm
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(during)]
    assert min(gaps) >= 1.0  # nothing faster than once a second
    assert len(during) <= 60 + 1  # the live beats, and the backlog at most once more
    disk.full = False
    h.run_until(91 * interval)
    assert h.outbox.count() == 0  # recorded once the disk takes writes: nothing sent again
    uuids = [e["uuid"] for e in h.server.accepted]
    assert len(uuids) == len(set(uuids)) == 92  # beats 0 … 91, each once
    assert h.state.snapshot.storage_problem is None


def test_a_backfill_request_gets_the_whole_deadline_or_waits_for_the_next_beat(
    tmp_path: Path,
) -> None:
    timeouts: list[float] = []
    h = Harness(tmp_path, Settings(interval_seconds=20))
    real = h.client.send_batch

    def spy(host: str, key: str, events: Any, timeout: float) -> Any:
        timeouts.append(timeout)
        return real(host, key, events, timeout)

    h.client.send_batch = spy  # type: ignore[method-assign]
    h.server.answer = respond(503)
    h.run_until(200)
    h.server.answer = None
    h.run_until(400)
    assert h.outbox.count() == 0
    # every request had the whole 10 s deadline, or at least 40 % of an interval: no sliver
    assert min(timeouts) >= 0.4 * 20


def test_the_request_deadline_is_half_the_interval_up_to_10_s_and_at_least_1_s() -> None:
    assert [request_timeout(i) for i in (1, 2, 5, 20, 60, 3600)] == [
        1.0,
        1.0,
        2.5,
        10.0,
        10.0,
        10.0,
    ]


def test_the_ingestion_ledger_keeps_every_beat_of_the_window_the_check_judges(
    tmp_path: Path,
) -> None:
    from dataclasses import replace as with_

    from heartbeat_tray.core.clock import RUN_ID
    from heartbeat_tray.core.ingestion_status import IngestionState
    from heartbeat_tray.ingestion.rules import judge, query_window
    from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore

    # one beat a second and an alert after a day, both allowed: a 48-hour window
    settings = Settings(interval_seconds=1)
    settings = with_(settings, ingestion=with_(settings.ingestion, alert_after_seconds=86_400))
    h = Harness(tmp_path, settings)
    ledger_file = AcceptedLedger(h.outbox.path, lambda: query_window(86_400))
    start = h.start_wall
    window = query_window(86_400)

    def accepted(uuid: str, at: float, lag: float) -> AcceptedBeat:
        return AcceptedBeat(uuid, at, at + lag, True, 0.0, "an earlier run")

    old = [accepted(f"old{n}", start - window - 10 + n, 0.0) for n in range(5)]
    # 25 hours of accepted beats (90,000), none stored by PostHog
    day = [accepted(f"b{n}", start - 90_000 + n, 0.2) for n in range(90_000)]
    ledger_file.record(old + day)
    h.run_until(1)  # a beat, announced and recorded: what is kept is trimmed
    assert h.announced and {(b.live, b.run_id) for b in h.announced} == {(True, RUN_ID)}
    ledger_file.record(h.announced)
    ledger_file.close()
    store = IngestionStore(h.outbox.path)
    ledger = store.ledger()
    store.close()
    assert {b.uuid for b in ledger} >= {b.uuid for b in day}  # was capped at 20,000 (5.6 h)
    assert not any(b.uuid.startswith("old") for b in ledger)  # before the window: gone
    verdict = judge(ledger, {}, now=h.clock.wall(), alert_after_seconds=86_400)
    assert verdict.state is IngestionState.FAILING  # stayed "waiting" forever
