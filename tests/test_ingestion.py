"""The ingestion check without a network: the verdict as pure rules, and the poller's every
state transition, driven by a fake clock and a stand-in PostHog query API (MockTransport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heartbeat_tray.core.ingestion_status import IngestionState
from heartbeat_tray.core.settings import IngestionSettings
from heartbeat_tray.core.timefmt import parse_iso as parse_time
from heartbeat_tray.core.verdicts import StoredBeat
from heartbeat_tray.ingestion.poller import IngestionPoller, PollerConfig
from heartbeat_tray.ingestion.rules import (
    LedgerBeat,
    failing_sentence,
    judge,
    lag_windows,
    slow_sentence,
    slowness,
)
from heartbeat_tray.ingestion.store import status_from_json, status_to_json
from heartbeat_tray.posthog.query import QueryClient, hogql
from testkit.simulation import PERSONAL, PROJECT_KEY, T0, Harness


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def beat(n: int, accepted_after: float = 0.2, live: bool = True) -> LedgerBeat:
    return LedgerBeat(f"u{n}", at(60 * n), at(60 * n + accepted_after), live)


def stored(n: int, lag: float = 12.0) -> StoredBeat:
    return StoredBeat(f"u{n}", at(60 * n), at(60 * n + lag))


# --- the verdict ---


def test_nothing_stored_and_nothing_due_is_waiting() -> None:
    j = judge([beat(0), beat(1)], {}, now=at(120), alert_after_seconds=600)
    assert j.state is IngestionState.WAITING and j.incident_since is None


def test_stored_beats_are_ok_with_the_newest_live_lag_and_the_median() -> None:
    ledger = [beat(0), beat(1), beat(2), beat(3, live=False)]
    found = {"u0": stored(0, 10), "u1": stored(1, 14), "u2": stored(2, 12), "u3": stored(3, 99)}
    j = judge(ledger, found, now=at(300), alert_after_seconds=600)
    assert j.state is IngestionState.OK
    assert j.lag_seconds == 12.0  # the newest *live* beat's; a backfilled one does not count
    assert j.lag_median_seconds == 12.0
    assert j.last_ingested == at(180)


def test_a_due_beat_not_stored_with_nothing_newer_stored_opens_an_incident() -> None:
    ledger = [beat(0), beat(1), beat(2), beat(12)]
    found = {"u0": stored(0)}
    j = judge(ledger, found, now=at(60 * 12 + 5), alert_after_seconds=600)
    assert j.state is IngestionState.FAILING
    assert j.incident_since == beat(1).accepted_at  # the oldest unproven due beat
    assert j.lost == frozenset()


def test_a_newer_stored_beat_ends_it_at_once_and_the_gap_is_lost_after_a_grace() -> None:
    ledger = [beat(0), beat(1), beat(2), beat(12)]
    found = {"u0": stored(0), "u12": stored(12)}
    j = judge(ledger, found, now=at(60 * 12 + 20), alert_after_seconds=600)
    assert j.state is IngestionState.OK
    assert j.incident_since is None
    assert j.lost == frozenset()  # they may still be stored late
    later = judge(ledger, found, now=at(60 * 22 + 1), alert_after_seconds=600)
    assert later.lost == frozenset({"u1", "u2"})  # still missing a threshold after u12


def test_a_late_beat_is_not_lost() -> None:
    ledger = [beat(n) for n in range(6)]
    # beats 3 and 4 were stored out of order, after beat 5: late, never lost
    early = {f"u{n}": stored(n) for n in (0, 1, 2, 5)}
    assert judge(ledger, early, now=at(330), alert_after_seconds=120).lost == frozenset()
    late = {**early, "u3": stored(3, 200), "u4": stored(4, 150)}
    j = judge(ledger, late, now=at(500), alert_after_seconds=120)
    assert j.lost == frozenset() and j.ingested == frozenset(f"u{n}" for n in range(6))


@pytest.mark.parametrize("stored_until", [0, 3, 7])
def test_an_incident_opens_once_the_newest_stored_beat_is_older_than_the_threshold(
    stored_until: int,
) -> None:
    # beats every 10 s, alert after 60 s: the Ingestion Alert's rule on our own beats
    ledger = [LedgerBeat(f"u{n}", at(10 * n), at(10 * n + 0.1), True) for n in range(30)]
    found = {
        f"u{n}": StoredBeat(f"u{n}", at(10 * n), at(10 * n + 2)) for n in range(stored_until + 1)
    }
    newest = 10 * stored_until
    ok = judge(ledger, found, now=at(newest + 59.9), alert_after_seconds=60, interval_seconds=10)
    assert ok.state is IngestionState.OK
    failing = judge(
        ledger, found, now=at(newest + 60.1), alert_after_seconds=60, interval_seconds=10
    )
    assert failing.state is IngestionState.FAILING
    assert failing.incident_since == at(newest + 10.1)  # the first beat not proven stored
    assert failing.newest_stored == at(newest)
    assert failing_sentence(failing.newest_stored, failing.behind_seconds, at(0)).startswith(
        "Ingestion is 60 s behind; newest stored beat "
    )


def test_beats_rarer_than_the_threshold_are_not_an_incident_while_they_are_fresh() -> None:
    # an hourly beat, alert after 10 min: the newest stored beat is an hour old by design
    ledger = [LedgerBeat(f"u{n}", at(3600 * n), at(3600 * n + 0.1), True) for n in range(3)]
    found = {"u0": stored(0), "u1": StoredBeat("u1", at(3600), at(3610))}
    fresh = judge(ledger, found, now=at(7200 + 30), alert_after_seconds=600, interval_seconds=3600)
    assert fresh.state is IngestionState.OK
    overdue = judge(
        ledger, found, now=at(7200 + 301), alert_after_seconds=600, interval_seconds=3600
    )
    assert overdue.state is IngestionState.FAILING


def test_a_wrong_project_key_from_the_start_fails_once_the_first_beat_is_due() -> None:
    ledger = [beat(n) for n in range(12)]
    assert judge(ledger, {}, now=at(599), alert_after_seconds=600).state is IngestionState.WAITING
    failing = judge(ledger, {}, now=at(601), alert_after_seconds=600)
    assert failing.state is IngestionState.FAILING and failing.incident_since == at(0.2)


def test_beats_older_than_the_window_leave_without_a_verdict() -> None:
    j = judge(
        [beat(0), beat(200)], {"u200": stored(200)}, now=at(60 * 200 + 30), alert_after_seconds=600
    )
    assert j.expired == frozenset({"u0"}) and j.lost == frozenset()


def test_the_query_is_exactly_the_documented_one_and_times_keep_their_offset() -> None:
    assert hogql(7200) == (
        "SELECT uuid, timestamp, created_at FROM events WHERE event = {event} AND "
        "distinct_id = {distinct_id} AND timestamp > now() - INTERVAL 7200 SECOND "
        "ORDER BY timestamp DESC LIMIT 1000"
    )
    assert parse_time("2026-11-26T13:26:11.402627+01:00") == datetime(
        2026, 11, 26, 12, 26, 11, 402627, tzinfo=UTC
    )


# --- the poller ---


def test_without_a_personal_key_the_check_is_off_and_asks_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    poller = IngestionPoller(
        PollerConfig(h.settings, "install-1"),
        personal_key=lambda: None,
        project_key=lambda: PROJECT_KEY,
        store=h.store,
        client=QueryClient(transport=h.api.transport()),
        state=h.state,
        send_webhook=lambda url, body: None,
        on_alert=h.alerts.append,
        clock=h.clock,
    )
    assert poller.step() is None  # nothing to wake for: zero wakeups
    assert h.status.state is IngestionState.OFF
    assert h.status.sentence == "Ingestion not checked — add a personal API key in Settings"
    assert h.api.queries == [] and h.api.project_pages == 0


def test_a_healthy_pipeline_shows_the_lag_and_finds_the_project_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run(600)
    assert h.status.state is IngestionState.OK
    assert h.status.sentence == "Ingested 10 s behind · p95 10 s" and h.status.lag_seconds == 10.0
    assert h.status.project_id == 4242 and h.api.project_pages == 2  # followed "next" once
    assert all(q["refresh"] == "force_blocking" for q in h.api.queries)
    assert h.api.queries[0]["query"]["values"] == {"event": "heartbeat", "distinct_id": "install-1"}
    assert len(h.api.queries) == 10  # one query per poll, no more
    assert h.alerts == []


def test_a_break_downstream_alerts_once_and_recovery_once_also_across_a_restart(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.run(600)
    h.run(900, lag=None)  # capture still answers 200; nothing is stored any more
    assert h.status.state is IngestionState.FAILING
    assert [a.title for a in h.alerts] == ["Heartbeat not ingested"]
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]
    hook = h.api.webhooks[0]
    assert set(hook) == {
        "status",
        "kind",
        "incident",
        "text",
        "event",
        "distinct_id",
        "host",
        "project_id",
        "since",
        "last_ingested",
        "lag_seconds",
    }
    assert PERSONAL not in json.dumps(hook) and PROJECT_KEY not in json.dumps(hook)
    h.poller = h.make_poller()  # a restart in the middle of the incident
    h.run(600, lag=None)
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]  # not again
    h.run(600)  # stored again
    assert h.status.state is IngestionState.OK
    assert [w["status"] for w in h.api.webhooks] == ["triggered", "resolved"]
    # one id for the incident, in both: a receiver deduplicates a repeated delivery on it
    assert h.api.webhooks[0]["incident"] == h.api.webhooks[1]["incident"]
    assert len(h.api.webhooks[0]["incident"]) == 36
    assert [a.title for a in h.alerts] == ["Heartbeat not ingested", "Heartbeat ingested again"]
    assert h.status.lost == 25  # every beat of the incident, counted exactly once


def test_a_rejected_personal_key_is_an_error_not_an_incident_and_no_storm(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.api.answer = 401
    h.run(3600, lag=None)
    assert h.status.state is IngestionState.ERROR
    assert "rejected the personal API key (401) (Nope.)" in h.status.sentence
    assert len(h.api.queries) == 1 and h.alerts == [] and h.api.webhooks == []


def test_rate_limited_waits_for_retry_after(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.api.answer, h.api.retry_after = 429, "900"
    h.run(60)
    assert len(h.api.queries) == 1 and h.status.state is IngestionState.ERROR
    assert h.status.sentence.startswith("Rate limited by PostHog — next check at")
    h.api.answer = None
    h.run(1200)
    first, second = h.api.query_times[:2]
    assert second - first >= 900  # nothing before Retry-After
    assert second - first < 900 + 1
    assert h.status.state is IngestionState.OK


def test_a_failing_webhook_is_retried_until_delivered_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.api.webhook_failures = 4
    h.run(600)
    h.run(900, lag=None)
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]
    assert h.store.pending_webhooks() == []


@pytest.mark.parametrize("check", [False])
def test_the_check_can_be_turned_off(tmp_path: Path, check: bool) -> None:
    h = Harness(tmp_path)
    from dataclasses import replace

    h.poller.apply(PollerConfig(replace(h.settings, ingestion=IngestionSettings(check=check)), "i"))
    assert h.poller.step() is None
    assert h.status.sentence == "Ingestion not checked (turned off in Settings)"


@pytest.mark.parametrize("phase", [0.0, 2.5, 5.0, 7.5, 9.9])
def test_the_poller_alerts_within_one_poll_of_the_newest_stored_beat_plus_the_threshold(
    tmp_path: Path, phase: float
) -> None:
    # beats every 10 s, a check every 15 s, alert after 60 s; the break at every phase of a beat
    h = Harness(tmp_path, poll=15, alert_after=60, interval=10)
    h.run_on_grid(300 + phase)
    assert h.status.state is IngestionState.OK
    stored_before = set(h.api.stored)
    h.run_on_grid(0.0, lag=None)
    broke = h.clock.wall()
    while not h.alerts:
        h.run_on_grid(0.5, lag=None)
    alerted = h.clock.wall()
    newest = max(h.api.stored[u].timestamp for u in stored_before)
    step = timedelta(seconds=0.5)  # how finely this loop looks
    assert alerted - newest <= timedelta(seconds=60 + 15) + step  # the peer's rule, + one poll
    assert alerted - broke <= timedelta(seconds=60 + 15) + step
    assert h.status.state is IngestionState.FAILING
    assert (
        h.status.sentence.startswith("Ingestion is ") and "newest stored beat" in h.status.sentence
    )
    h.run_on_grid(0.1, lag=None)  # the webhook goes out at the next step
    hook = h.api.webhooks[0]
    assert "newest stored beat" in hook["text"] and hook["status"] == "triggered"
    # fixed: resolved at the first check that sees a newer beat stored
    h.run_on_grid(0.0)
    fixed = h.clock.wall()
    while h.status.state is IngestionState.FAILING:
        h.run_on_grid(0.5)
    # the next beat, its 10 s lag, one poll
    assert h.clock.wall() - fixed <= timedelta(seconds=10 + 10 + 15) + step
    h.run_on_grid(0.1)
    assert [w["status"] for w in h.api.webhooks] == ["triggered", "resolved"]


def test_after_hours_off_with_an_incident_open_only_a_newer_stored_beat_resolves_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.run(600)
    h.run(900, lag=None)  # broken: the incident opens
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]
    h.clock.advance(3 * 3600)  # the app was off for three hours; the ledger has aged out
    h.poller = h.make_poller()
    h.run(300, lag=None)  # still broken at the restart: nothing due yet, nothing stored
    assert h.status.state is IngestionState.FAILING
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]  # no false "resolved"
    h.run(300)  # fixed: a newer beat is stored
    assert h.status.state is IngestionState.OK
    assert [w["status"] for w in h.api.webhooks] == ["triggered", "resolved"]


@pytest.mark.parametrize("step", [120.0, -120.0, 3600.0, -3600.0])
def test_a_wall_clock_step_neither_opens_nor_delays_an_incident(
    tmp_path: Path, step: float
) -> None:
    # beats every 10 s, a check every 15 s, alert after 60 s; the wall clock jumps mid-run
    h = Harness(tmp_path, poll=15, alert_after=60, interval=10)
    h.run_on_grid(300)
    h.clock.suspend(step) if step > 0 else h.clock.step_back(-step)  # the wall clock only
    h.run_on_grid(300)
    assert h.status.state is IngestionState.OK  # a step while healthy: no incident
    assert h.alerts == [] and h.api.webhooks == [] and h.status.lost == 0
    h.clock.suspend(step) if step > 0 else h.clock.step_back(-step)  # and again: then a break
    h.run_on_grid(0.0, lag=None)
    broke = h.clock.monotonic()
    while not h.alerts:
        h.run_on_grid(0.5, lag=None)
    assert h.clock.monotonic() - broke <= 60 + 15 + 0.5  # on time, whatever the step
    assert "Ingestion is 6" in h.status.sentence or "Ingestion is 7" in h.status.sentence
    h.run_on_grid(0.1, lag=None)
    h.run_on_grid(60)  # fixed
    assert h.status.state is IngestionState.OK
    assert [w["status"] for w in h.api.webhooks] == ["triggered", "resolved"]


# --- percentiles (spec §10.1) ---


def test_percentiles_are_nearest_rank_over_the_beats_own_time() -> None:
    now = at(7200)
    samples = [(at(3660 + 60 * i), float(i + 1)) for i in range(20)]  # last hour: 1..20 s
    samples += [(at(60), 500.0)]  # two hours ago: only in the 24 h window
    hour, day = lag_windows(samples, now)
    assert (hour.name, hour.p50, hour.p95, hour.max, hour.n) == ("1h", 10.0, 19.0, 20.0, 20)
    assert (day.name, day.p50, day.p95, day.max, day.n) == ("24h", 11.0, 20.0, 500.0, 21)
    assert lag_windows([], now) == ()
    (only_day,) = lag_windows([(at(60), 3.0)], now)  # nothing in the last hour: no 1 h window
    assert only_day.name == "24h"


def test_the_percentiles_follow_slow_ingestion_and_survive_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run(20 * 60, lag=10.0)
    h.run(20 * 60, lag=40.0)  # ingestion slows down
    hour = h.status.window("1h")
    assert hour is not None and hour.max == 40.0 and hour.p95 == 40.0 and hour.p50 == 10.0
    assert h.status.sentence == "Ingested 40 s behind · p95 40 s"
    data = status_to_json(h.status)
    assert data["lag"]["1h"] == {"p50": 10.0, "p95": 40.0, "max": 40.0, "n": hour.n}
    assert data["lag"]["24h"]["n"] == hour.n
    assert status_from_json(json.loads(json.dumps(data))) == h.status

    h.poller = h.make_poller()  # a restart: the lags kept in the state file count on
    h.run(10 * 60, lag=5.0)
    after = h.status.window("1h")
    assert after is not None and after.n >= hour.n + 10 and after.max == 40.0


def test_lags_older_than_a_day_leave_the_state_file(tmp_path: Path) -> None:
    h = Harness(tmp_path, interval=3600, poll=3600, alert_after=7200)
    h.run(3 * 3600, beat_every=3600, lag=300.0)
    h.run(24 * 3600, beat_every=3600, lag=2.0)
    day = h.status.window("24h")
    assert day is not None and day.max == 2.0  # the slow hours of yesterday are gone
    kept = h.store._db.execute("SELECT count(*) FROM lags").fetchone()[0]
    assert kept == day.n <= 25


# --- slow ingestion (spec §10.1) ---


def test_slowness_is_the_p95_of_the_window_and_needs_three_beats() -> None:
    now = at(3600)
    samples = [(at(3600 - 60 * i), float(lag)) for i, lag in enumerate([400, 10, 10])]
    slow = slowness(samples, now, threshold_seconds=300, window_seconds=900)
    assert slow is not None and slow.p95 == 400.0 and slow.n == 3 and slow.slow
    assert not slowness(samples[:2], now, threshold_seconds=300, window_seconds=900).slow  # type: ignore[union-attr]
    assert slowness(samples, now, threshold_seconds=0, window_seconds=900) is None  # off
    old = [(at(0), 999.0)] * 5  # an hour ago: outside a 15 min window
    assert slowness(old, now, threshold_seconds=300, window_seconds=900) is None
    assert slow_sentence(slow) == "Ingestion slow: p95 400 s over 15 min (over 300 s)"


def test_slow_ingestion_alerts_once_across_a_restart_and_resolves_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, alert_after=600, slow_after_seconds=120, slow_window_seconds=900)
    h.run(20 * 60, lag=10.0)
    assert h.status.state is IngestionState.OK and h.alerts == []
    h.run(20 * 60, lag=200.0)  # stored, but more than 2 min late
    assert h.status.state is IngestionState.SLOW
    assert h.status.sentence.startswith("Ingestion slow: p95 200 s over 15 min (over 120 s)")
    assert h.state.snapshot.status_line == h.status.sentence  # the tooltip says it
    assert [a.title for a in h.alerts] == ["Heartbeat ingestion slow"]
    assert "p95 lag 200 s over the last 15 min" in h.alerts[0].message
    (hook,) = h.api.webhooks
    assert (hook["status"], hook["kind"], hook["threshold_seconds"]) == ("slow", "slow", 120)
    assert hook["p95_seconds"] == 200.0 and hook["window_seconds"] == 900
    assert h.state.snapshot.checks.incidents == {"slow": 1}

    h.poller = h.make_poller()  # a restart in the middle of the incident
    h.run(10 * 60, lag=200.0)
    assert [w["status"] for w in h.api.webhooks] == ["slow"]  # not again
    assert h.status.state is IngestionState.SLOW

    h.run(30 * 60, lag=5.0)  # back to speed once the window's p95 is under the threshold
    assert h.status.state is IngestionState.OK
    assert [w["status"] for w in h.api.webhooks] == ["slow", "resolved"]
    assert h.api.webhooks[1]["kind"] == "slow"
    assert h.api.webhooks[0]["incident"] == h.api.webhooks[1]["incident"]
    assert [a.title for a in h.alerts] == [
        "Heartbeat ingestion slow",
        "Heartbeat ingestion back to speed",
    ]


def test_a_not_ingested_incident_takes_precedence_over_slow(tmp_path: Path) -> None:
    # stored 200 s late with alert after 180 s: behind the threshold, and slow too
    h = Harness(tmp_path, alert_after=180, slow_after_seconds=120, slow_window_seconds=900)
    h.run(5 * 60, lag=2.0)
    h.run(30 * 60, lag=200.0)
    assert h.status.state is IngestionState.FAILING
    assert [a.title for a in h.alerts] == ["Heartbeat not ingested"]
    assert [(w["status"], w["kind"]) for w in h.api.webhooks] == [("triggered", "not_ingested")]


def test_turning_the_slow_check_off_resolves_an_open_slow_incident(tmp_path: Path) -> None:
    from dataclasses import replace

    h = Harness(tmp_path, alert_after=600, slow_after_seconds=120, slow_window_seconds=900)
    h.run(20 * 60, lag=200.0)
    assert h.status.state is IngestionState.SLOW
    off = replace(h.settings, ingestion=replace(h.settings.ingestion, slow_after_seconds=0))
    h.poller.apply(PollerConfig(off, "install-1"))
    h.run(3 * 60, lag=200.0)
    assert h.status.state is IngestionState.OK
    assert [w["status"] for w in h.api.webhooks] == ["slow", "resolved"]


def test_the_metrics_histogram_counts_each_lag_once_even_across_a_restart(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.run(10 * 60, lag=10.0)
    lags = h.state.snapshot.checks.lags
    assert lags.n == len(h.api.stored) == 10
    assert dict(lags.cumulative())["10"] == lags.n and dict(lags.cumulative())["5"] == 0
    assert lags.total == 10.0 * lags.n
    h.poller = h.make_poller()  # a restart: the kept lags are not counted again
    h.run(3 * 60, lag=10.0)
    assert h.state.snapshot.checks.lags.n == len(h.api.stored) - 10 > 0
