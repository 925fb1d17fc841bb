"""The ingestion verdict: which accepted beats PostHog really stored, how far behind, and
whether an incident is open. Pure functions over the ledger and one query's answer.

Rules (the README's "Ingestion check" section says them for users):
- *ingested*: an accepted beat whose uuid the query returned. The lag of a live beat (accepted
  within one interval of its own time) is ``created_at - timestamp``, PostHog's own clock.
- *due*: accepted more than ``alert_after`` ago.
- *failing* (an incident): a due beat is not ingested and no beat accepted after it is; the
  incident is open since the acceptance of the oldest such beat.
- *lost*: a due beat not ingested while a newer one is: counted, never an incident of its own.
- *waiting*: no beat ingested and none due yet. *ok*: otherwise, once one beat is ingested.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from heartbeat_tray.posthog.query import StoredBeat

MIN_WINDOW_SECONDS = 7200


class IngestionState(enum.Enum):
    OFF = "off"
    WAITING = "waiting"
    OK = "ok"
    FAILING = "failing"
    ERROR = "error"


def query_window(alert_after_seconds: int) -> int:
    """How far back the query looks: twice the alert delay, and at least two hours."""
    return max(MIN_WINDOW_SECONDS, 2 * alert_after_seconds)


@dataclass(frozen=True)
class LedgerBeat:
    uuid: str
    beat_time: datetime  # the beat's own time
    accepted_at: datetime  # when capture answered 2xx
    live: bool  # accepted within one interval of its own time: its lag counts


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


def judge(
    ledger: Sequence[LedgerBeat],
    stored: Mapping[str, StoredBeat],
    *,
    now: datetime,
    alert_after_seconds: int,
) -> Judgement:
    window_start = now - timedelta(seconds=query_window(alert_after_seconds))
    due_before = now - timedelta(seconds=alert_after_seconds)
    expired = frozenset(b.uuid for b in ledger if b.beat_time <= window_start)
    beats = [b for b in ledger if b.uuid not in expired]
    ingested = [b for b in beats if b.uuid in stored]
    newest_ingested = max((b.accepted_at for b in ingested), default=None)
    missing_due = [b for b in beats if b.uuid not in stored and b.accepted_at <= due_before]
    unproven = [
        b for b in missing_due if newest_ingested is None or b.accepted_at >= newest_ingested
    ]
    lost = frozenset(b.uuid for b in missing_due if b not in unproven)
    live = sorted(
        (stored[b.uuid] for b in ingested if b.live), key=lambda s: s.timestamp, reverse=True
    )
    lags = [(s.created_at - s.timestamp).total_seconds() for s in live]
    if unproven:
        state = IngestionState.FAILING
    elif ingested or stored:  # stored: beats of this stream from before (a restart)
        state = IngestionState.OK
    else:
        state = IngestionState.WAITING
    newest = max((stored[b.uuid].timestamp for b in ingested), default=None)
    return Judgement(
        state=state,
        ingested=frozenset(b.uuid for b in ingested),
        lost=lost,
        expired=expired,
        incident_since=min((b.accepted_at for b in unproven), default=None),
        lag_seconds=lags[0] if lags else None,
        lag_median_seconds=statistics.median(lags) if lags else None,
        last_ingested=newest,
    )


@dataclass(frozen=True)
class IngestionStatus:
    """What every surface shows of the check (the tray line, ``status``, ``status --json``)."""

    state: IngestionState = IngestionState.OFF
    sentence: str = "Ingestion not checked — add a personal API key in Settings"
    lag_seconds: float | None = None
    lag_median_seconds: float | None = None
    last_ingested: datetime | None = None
    last_check: datetime | None = None
    lost: int = 0
    incident_since: datetime | None = None
    project_id: int | None = None


def ok_sentence(lag: float | None) -> str:
    if lag is None:
        return "Ingested"
    return f"Ingested {max(0.0, lag):.0f} s behind"


def failing_sentence(last_ingested: datetime | None, since: datetime) -> str:
    if last_ingested is None:
        return f"Not ingested since {since.astimezone():%H:%M}"
    return f"Not ingested since {last_ingested.astimezone():%H:%M}"
