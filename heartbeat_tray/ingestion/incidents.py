"""The check's incidents: each judgement opens or resolves them, and each opens and resolves
exactly once (also across restarts, and when the disk is full).

*Not ingested* takes precedence: while it is open no slow incident opens (an open one stays
open). It resolves only when a beat newer than its start is seen stored — no verdict (the app
was off for hours, the ledger is new) is not recovery. *Slow* opens when the window's p95 lag
is over the threshold on enough beats, and resolves when it is back under.

Each change is recorded with its webhook in one transaction before the user is told; what a
full disk kept from being recorded is remembered here, so it is not told twice.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.clock import RUN_ID, Clock
from heartbeat_tray.core.ingestion_status import IncidentKind, IngestionState, LagWindow
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.ingestion.alerts import (
    RESOLVED,
    SLOW,
    TRIGGERED,
    Whose,
    not_ingested_alert,
    slow_alert,
    slow_fields,
    webhook_body,
)
from heartbeat_tray.ingestion.rules import (
    Judgement,
    Slowness,
    duration_words,
    failing_sentence,
    ok_sentence,
    slow_sentence,
    slowness,
)
from heartbeat_tray.ingestion.store import Incident, IngestionStore
from heartbeat_tray.ingestion.webhooks import WebhookOutbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the check shows after a judgement."""

    state: IngestionState
    sentence: str
    since: datetime | None  # the open not-ingested incident's start


class Incidents:
    def __init__(
        self,
        store: IngestionStore,
        webhooks: WebhookOutbox,
        clock: Clock,
        *,
        on_alert: Callable[[Alert], None],
        on_opened: Callable[[IncidentKind], None],  # the metrics count it
        on_queued: Callable[[], None],  # a webhook waits: deliver it now
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._clock = clock
        self._on_alert = on_alert
        self._on_opened = on_opened
        self._on_queued = on_queued
        # Alerted, but not recorded (a full disk), by kind.
        self._unkept: dict[IncidentKind, Incident | None] = dict.fromkeys(IncidentKind)

    def decide(
        self,
        judgement: Judgement,
        samples: list[tuple[datetime, float]],
        windows: tuple[LagWindow, ...],
        wall: datetime,
        settings: Settings,
        who: Whose,
    ) -> Outcome:
        incident = self._open(IncidentKind.NOT_INGESTED)
        state = judgement.state
        if (
            incident is not None
            and incident.triggered_sent
            and state is not IngestionState.FAILING
            and not _newer_than(judgement, incident)
        ):
            state = IngestionState.FAILING  # not recovery yet: see the module's docstring
        if state is IngestionState.FAILING:
            since = incident.since if incident else judgement.incident_since or wall
            sentence = failing_sentence(judgement.newest_stored, judgement.behind_seconds, since)
            if incident is None or not incident.triggered_sent:
                self._not_ingested(True, since, judgement, who)
            return Outcome(state, sentence, since)
        sentence = (
            ok_sentence(judgement.lag_seconds, next((w for w in windows if w.name == "1h"), None))
            if state is IngestionState.OK
            else "Waiting for the first beat to be ingested"
        )
        if incident is not None:
            if incident.triggered_sent:
                self._not_ingested(False, incident.since, judgement, who)
            else:
                self._store.record_alert(None, None, wall.timestamp())
        slow = self._slow(samples, wall, judgement, settings, who)
        if slow is not None:
            return Outcome(IngestionState.SLOW, slow, None)
        return Outcome(state, sentence, None)

    def _open(self, kind: IncidentKind) -> Incident | None:
        return self._store.incident(kind) or self._unkept[kind]

    def _slow(
        self,
        samples: list[tuple[datetime, float]],
        wall: datetime,
        judgement: Judgement,
        settings: Settings,
        who: Whose,
    ) -> str | None:
        """Open or resolve the slow incident; its sentence while it is open, else None."""
        ingestion = settings.ingestion
        window = ingestion.slow_window(settings.interval_seconds)
        slow = slowness(
            samples, wall, threshold_seconds=ingestion.slow_after_seconds, window_seconds=window
        )
        incident = self._open(IncidentKind.SLOW)
        extra = slow_fields(slow, ingestion.slow_after_seconds)
        if slow is not None and slow.slow:
            if incident is None or not incident.triggered_sent:
                self._slow_alert(True, slow, wall, judgement, who, extra)
            return slow_sentence(slow)
        if incident is None:
            return None
        if ingestion.slow_after_seconds > 0 and (slow is None or slow.p95 > slow.threshold):
            # Still over the threshold (on too few beats to open one), or nothing stored in the
            # window: not back to speed yet.
            return (
                slow_sentence(slow)
                if slow
                else f"Ingestion slow: no beat stored in the last {duration_words(window)}"
            )
        if incident.triggered_sent:
            self._slow_alert(False, slow, incident.since, judgement, who, extra)
        else:
            self._store.record_alert(None, None, wall.timestamp(), kind=IncidentKind.SLOW)
        return None

    def _not_ingested(
        self, opened: bool, since: datetime, judgement: Judgement, who: Whose
    ) -> None:
        incident: Incident | None = None
        if opened:
            since_mono = judgement.incident_since_mono
            incident = Incident(
                since, True, str(uuid.uuid4()), since_mono, RUN_ID if since_mono is not None else ""
            )
        alert = not_ingested_alert(opened, since, judgement, who)
        status = TRIGGERED if opened else RESOLVED
        self._raise(IncidentKind.NOT_INGESTED, status, incident, since, alert, judgement, who, {})

    def _slow_alert(
        self,
        opened: bool,
        slow: Slowness | None,
        since: datetime,
        judgement: Judgement,
        who: Whose,
        extra: dict[str, Any],
    ) -> None:
        opened = opened and slow is not None
        incident = Incident(since, True, str(uuid.uuid4())) if opened else None
        alert = slow_alert(opened, slow, who)
        status = SLOW if opened else RESOLVED
        self._raise(IncidentKind.SLOW, status, incident, since, alert, judgement, who, extra)

    def _raise(
        self,
        kind: IncidentKind,
        status: str,
        incident: Incident | None,
        since: datetime,
        alert: Alert,
        judgement: Judgement,
        who: Whose,
        extra: dict[str, Any],
    ) -> None:
        """Record the incident's new state with its webhook, then tell the user: exactly once
        each (a full disk: told all the same, the webhook sent once without its retries)."""
        incident_id = incident.id if incident else self._resolving_id(kind)
        body = None
        if self._webhooks.url:
            body = webhook_body(kind, status, incident_id, alert, since, judgement, who, extra)
        if incident is not None:
            self._on_opened(kind)
        try:
            self._store.record_alert(incident, body, self._clock.wall().timestamp(), kind=kind)
        except sqlite3.Error as exc:
            log.warning("Could not keep the alert (%s); sending it without keeping it", exc)
            self._unkept[kind] = incident
            self._on_alert(alert)
            if body is not None:
                self._webhooks.send_unkept(body)
            return
        self._unkept[kind] = None
        self._on_alert(alert)
        if body is not None:
            self._on_queued()

    def _resolving_id(self, kind: IncidentKind) -> str:
        open_one = self._open(kind)
        return open_one.id if open_one and open_one.id else str(uuid.uuid4())


def _newer_than(judgement: Judgement, incident: Incident) -> bool:
    """A beat newer than the incident's start is seen stored: only that resolves it."""
    if incident.run_id == RUN_ID and incident.since_mono is not None:
        mono = judgement.newest_stored_mono
        return mono is not None and mono > incident.since_mono
    newest = judgement.newest_stored
    return newest is not None and newest >= incident.since
