"""The ingestion verdict: which accepted beats PostHog really stored, how far behind, and
whether an incident is open. Pure functions over the ledger and one query's answer.

Rules (the README's "Ingestion check" section says them for users):
- *ingested*: an accepted beat whose uuid the query returned. The lag of a live beat (accepted
  within one interval of its own time) is ``created_at - timestamp``, PostHog's own clock.
- *failing* (an incident): the newest beat seen stored is more than ``alert_after`` old by its
  own time, and a beat accepted after it is not proven stored yet — the Ingestion Alert's rule
  ("no event newer than the window") applied to our own beats, so at equal thresholds it is
  never later. With no beat stored at all (a wrong project key from the start): once the oldest
  unproven beat was accepted ``alert_after`` ago. Open since the oldest unproven beat's
  acceptance; it ends as soon as a newer beat is seen stored.
- *lost*: not stored while a newer beat is, and still missing ``alert_after`` after that newer
  beat was accepted. A beat stored later than the check that expected it is *late*, not lost.
- *waiting*: no beat ingested and none due yet. *ok*: otherwise, once one beat is ingested.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from heartbeat_tray.core.ingestion_status import (
    LAG_WINDOWS,
    IngestionState,
    LagWindow,
)
from heartbeat_tray.core.verdicts import StoredBeat

MIN_WINDOW_SECONDS = 7200


def query_window(alert_after_seconds: int) -> int:
    """How far back the query looks: twice the alert delay, and at least two hours."""
    return max(MIN_WINDOW_SECONDS, 2 * alert_after_seconds)


@dataclass(frozen=True)
class LedgerBeat:
    uuid: str
    beat_time: datetime  # the beat's own time
    accepted_at: datetime  # when capture answered 2xx
    live: bool  # accepted within one interval of its own time: its lag counts
    mono: float | None = None  # acceptance on this run's monotonic clock (None: another run)


def _order(beat: LedgerBeat) -> tuple[int, float]:
    """Newer sorts later: this run's beats by their monotonic acceptance (a wall-clock step
    cannot reorder them), after every beat of an earlier run, which go by their own time."""
    return (1, beat.mono) if beat.mono is not None else (0, beat.beat_time.timestamp())


def _age(beat: LedgerBeat, now: datetime, now_mono: float | None) -> float:
    """Seconds since the beat's own time, on the monotonic clock where the beat was ours."""
    if beat.mono is not None and now_mono is not None:
        return now_mono - beat.mono + (beat.accepted_at - beat.beat_time).total_seconds()
    return (now - beat.beat_time).total_seconds()


@dataclass(frozen=True)
class Judgement:
    state: IngestionState  # WAITING, OK or FAILING
    ingested: frozenset[str]
    lost: frozenset[str]  # newly known lost (due, not stored, a newer one is)
    expired: frozenset[str]  # left the query window without a verdict
    incident_since: datetime | None
    lag_seconds: float | None  # the newest live beat's
    lag_median_seconds: float | None
    last_ingested: datetime | None  # PostHog's timestamp of the newest ingested beat
    newest_stored: datetime | None = None  # the newest stored beat's own time
    behind_seconds: float | None = None  # how old that beat is (monotonic, where it can be)
    newest_stored_mono: float | None = None  # its acceptance on this run's monotonic clock
    incident_since_mono: float | None = None  # the first unproven beat's, likewise
    live_lags: Mapping[str, tuple[datetime, float]] = field(default_factory=dict)
    """uuid → (PostHog's timestamp, lag) of each live beat seen stored: the percentiles' data."""


def judge(
    ledger: Sequence[LedgerBeat],
    stored: Mapping[str, StoredBeat],
    *,
    now: datetime,
    alert_after_seconds: int,
    interval_seconds: float = 60,
    covered_since: datetime | None = None,
    now_mono: float | None = None,
) -> Judgement:
    """``covered_since``: the answer reaches only this far back (its pages ran out); older
    beats are neither proven stored nor proven missing. ``now_mono``: this run's monotonic
    clock, against which its own beats are ordered and aged (a wall-clock step never opens
    or resolves an incident)."""
    window_start = now - timedelta(seconds=query_window(alert_after_seconds))
    expired = frozenset(b.uuid for b in ledger if b.beat_time <= window_start)
    beats = [b for b in ledger if b.uuid not in expired]
    ingested = [b for b in beats if b.uuid in stored]

    def age(beat: LedgerBeat) -> float:
        return _age(beat, now, now_mono)

    newest = max(ingested, key=_order, default=None)
    missing = [
        b
        for b in beats
        if b.uuid not in stored and (covered_since is None or b.beat_time >= covered_since)
    ]
    # The newest beat seen stored: a ledger beat, else (beats of this stream from before a
    # restart) PostHog's timestamp of it.
    newest_time = newest.beat_time if newest else None
    behind: float | None = age(newest) if newest else None
    if newest is None and stored:
        newest_time = max(s.timestamp for s in stored.values())
        behind = (now - newest_time).total_seconds()
    if newest_time is None or behind is None:
        unproven = [b for b in missing if age(b) >= alert_after_seconds]
        stale = bool(unproven)
    else:
        if newest is not None:
            unproven = [b for b in missing if _order(b) > _order(newest)]
        else:
            unproven = [b for b in missing if b.mono is not None or b.beat_time > newest_time]
        # The first unproven beat also had a fair time to be stored: with beats rarer than the
        # threshold (an hourly beat, alert after 10 min) the newest stored one is old by
        # design. With beats every interval < threshold this waits no longer than the rule.
        grace = alert_after_seconds - min(interval_seconds, alert_after_seconds / 2)
        stale = (
            bool(unproven)
            and behind > alert_after_seconds
            and max(age(b) for b in unproven) >= grace
        )
    # Lost: older than a stored beat that was itself accepted alert_after ago (grace for late
    # storage: PostHog stores mostly in order, so a beat still missing by then is gone).
    proven_until = max((_order(b) for b in ingested if age(b) >= alert_after_seconds), default=None)
    lost = frozenset(
        b.uuid for b in missing if proven_until is not None and _order(b) < proven_until
    )
    live = sorted(
        (stored[b.uuid] for b in ingested if b.live), key=lambda s: s.timestamp, reverse=True
    )
    lags = [(s.created_at - s.timestamp).total_seconds() for s in live]
    if stale:
        state = IngestionState.FAILING
    elif ingested or stored:  # stored: beats of this stream from before (a restart)
        state = IngestionState.OK
    else:
        state = IngestionState.WAITING
    last_ingested = max((stored[b.uuid].timestamp for b in ingested), default=None)
    first = min(unproven, key=_order) if stale and unproven else None
    return Judgement(
        state=state,
        ingested=frozenset(b.uuid for b in ingested),
        lost=lost,
        expired=expired,
        incident_since=first.accepted_at if first else None,
        lag_seconds=lags[0] if lags else None,
        lag_median_seconds=statistics.median(lags) if lags else None,
        last_ingested=last_ingested,
        newest_stored=newest_time,
        behind_seconds=behind,
        newest_stored_mono=newest.mono if newest else None,
        incident_since_mono=first.mono if first else None,
        live_lags={
            b.uuid: (stored[b.uuid].timestamp, _lag(stored[b.uuid])) for b in ingested if b.live
        },
    )


def _lag(beat: StoredBeat) -> float:
    return (beat.created_at - beat.timestamp).total_seconds()


def lag_windows(samples: Sequence[tuple[datetime, float]], now: datetime) -> tuple[LagWindow, ...]:
    """Each window of ``LAG_WINDOWS`` that holds at least one beat, by the beats' own time."""
    found = []
    for name, seconds in LAG_WINDOWS:
        start = now - timedelta(seconds=seconds)
        lags = sorted(lag for when, lag in samples if when > start)
        if lags:
            found.append(LagWindow(name, rank(lags, 0.50), rank(lags, 0.95), lags[-1], len(lags)))
    return tuple(found)


def rank(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest lag with at least ``share`` of them at or
    below it (p95 of 20 beats is the 19th; no interpolation between beats)."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


SLOW_MIN_BEATS = 3  # one slow beat after a start is not yet "slow ingestion"


@dataclass(frozen=True)
class Slowness:
    """The p95 lag of the live beats stored in the slow window, against the threshold."""

    p95: float
    n: int
    threshold: float
    window_seconds: int

    @property
    def slow(self) -> bool:
        return self.n >= SLOW_MIN_BEATS and self.p95 > self.threshold


def slowness(
    samples: Sequence[tuple[datetime, float]],
    now: datetime,
    *,
    threshold_seconds: int,
    window_seconds: int,
) -> Slowness | None:
    """None when the slow check is off (threshold 0) or the window holds no beat."""
    if threshold_seconds <= 0:
        return None
    start = now - timedelta(seconds=window_seconds)
    lags = sorted(lag for when, lag in samples if when > start)
    if not lags:
        return None
    return Slowness(rank(lags, 0.95), len(lags), threshold_seconds, window_seconds)


def duration_words(seconds: float) -> str:
    """``15 min`` for whole minutes from 2 min on, else ``90 s``."""
    return f"{seconds / 60:.0f} min" if seconds >= 120 and seconds % 60 == 0 else f"{seconds:.0f} s"


def slow_sentence(slow: Slowness) -> str:
    """``Ingestion slow: p95 412 s over 15 min (over 300 s)``."""
    return (
        f"Ingestion slow: p95 {slow.p95:.0f} s over {duration_words(slow.window_seconds)} "
        f"(over {slow.threshold:.0f} s)"
    )


def ok_sentence(lag: float | None, hour: LagWindow | None = None) -> str:
    """``Ingested 12 s behind · p95 31 s``: the newest live beat's lag, the last hour's p95."""
    if lag is None:
        return "Ingested"
    sentence = f"Ingested {max(0.0, lag):.0f} s behind"
    if hour is not None and hour.n > 1:
        sentence += f" · p95 {max(0.0, hour.p95):.0f} s"
    return sentence


def failing_sentence(newest_stored: datetime | None, behind: float | None, since: datetime) -> str:
    """What PostHog did: how far behind its newest stored beat is, or that none is stored."""
    if newest_stored is None or behind is None:
        return f"Not ingested since {since.astimezone():%H:%M}"
    return (
        f"Ingestion is {max(0.0, behind):.0f} s behind; newest stored beat "
        f"{newest_stored.astimezone():%H:%M:%S}"
    )
