"""The ingestion poller: every ``poll_seconds`` it asks PostHog which accepted beats are stored,
judges the answer, opens and resolves incidents (alerting exactly once each), and delivers the
webhooks. It runs on its own ``Worker`` thread: a slow query never delays a beat, and nothing
runs between checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.api_key import KeyringUnavailable, MisplacedKey
from heartbeat_tray.core.app_state import AppState
from heartbeat_tray.core.backoff import retry_delay
from heartbeat_tray.core.clock import RUN_ID, Clock, SystemClock
from heartbeat_tray.core.event import iso_utc
from heartbeat_tray.core.ingestion import (
    IngestionState,
    IngestionStatus,
    Judgement,
    failing_sentence,
    judge,
    lag_windows,
    ok_sentence,
    query_window,
)
from heartbeat_tray.core.ingestion_store import Incident, IngestionStore
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.worker import Worker
from heartbeat_tray.posthog.hosts import app_host
from heartbeat_tray.posthog.query import QueryClient, QueryVerdict

log = logging.getLogger(__name__)

WEBHOOK_FIRST_RETRY = 3.0  # seconds; then doubling
WEBHOOK_MAX_DELAY = 300.0
WEBHOOK_GIVE_UP = 24 * 3600.0

KeySource = Callable[[], "str | None"]  # raises KeyringUnavailable
SendWebhook = Callable[[str, dict[str, Any]], Any]  # returns a WebhookResult-like value


@dataclass(frozen=True)
class PollerConfig:
    settings: Settings
    distinct_id: str
    problem: str | None = None  # a broken settings file: the check is off too


class IngestionPoller:
    def __init__(
        self,
        config: PollerConfig,
        *,
        personal_key: KeySource,
        project_key: KeySource,
        store: IngestionStore,
        client: QueryClient,
        state: AppState,
        send_webhook: SendWebhook,
        on_alert: Callable[[Alert], None],
        clock: Clock | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._personal_key = personal_key
        self._project_key = project_key
        self._store = store
        self._client = client
        self._state = state
        self._send_webhook = send_webhook
        self._on_alert = on_alert
        self._clock = clock or SystemClock()
        self._random = random_fraction
        self._lock = threading.Lock()
        self._pending: PollerConfig | None = None
        self._worker = Worker("ingestion-check", self.step, self._clock)
        # the worker's own
        self._keys_read = False
        self._personal: str | None = None
        self._key_problem: str | None = None
        self._next_check: float | None = None
        self._stopped = False  # 401/403: until the settings change
        self._failures = 0
        self._status = IngestionStatus(lost=store.lost())
        self._disk_problem: str | None = None  # the last check could not record its verdicts
        self._unkept_incident: Incident | None = None  # alerted, but not recorded (a full disk)

    # --- control ---

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 1.0) -> bool:
        return self._worker.stop(timeout)

    def apply(self, config: PollerConfig) -> None:
        with self._lock:
            self._pending = config
        self._worker.poke()

    # --- the worker ---

    def step(self) -> float | None:
        now = self._clock.monotonic()
        wall = self._clock.wall()
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._config = pending
            self._keys_read = False
            self._stopped = False
            self._failures = 0
            self._next_check = None
        webhook_wake = self._deliver_webhooks(now, wall)
        ingestion = self._config.settings.ingestion
        personal = self._read_personal_key()
        if self._config.problem or not ingestion.check or not personal:
            why = self._key_problem or (
                "Ingestion not checked — add a personal API key in Settings"
                if ingestion.check
                else "Ingestion not checked (turned off in Settings)"
            )
            self._publish(replace(IngestionStatus(lost=self._status.lost), sentence=why))
            return webhook_wake
        if self._stopped:
            return webhook_wake
        if self._next_check is None:
            # The first check once a beat or two had time to be stored.
            self._next_check = now + min(ingestion.poll_seconds, 30.0)
            self._publish(
                replace(
                    self._status,
                    state=IngestionState.WAITING
                    if self._status.state is IngestionState.OFF
                    else self._status.state,
                    sentence=self._status.sentence
                    if self._status.state is not IngestionState.OFF
                    else "Checking ingestion…",
                )
            )
        if now >= self._next_check:
            try:
                self._store.reopen()
                self._check(personal, now, wall)
            except Exception as exc:
                # An answer nobody foresaw must not stop the check or speed it up: an error
                # shown as such, and the next check a poll later.
                log.exception("The ingestion check failed")
                self._failed(
                    QueryVerdict.ERROR,
                    f"The ingestion check failed ({type(exc).__name__}); the details are in "
                    "the log.",
                    None,
                    now,
                )
        wakes = [w for w in (self._next_check, webhook_wake) if w is not None]
        if self._stopped:
            return webhook_wake
        return min(wakes) if wakes else None

    def _read_personal_key(self) -> str | None:
        if not self._keys_read:
            self._keys_read = True
            try:
                self._personal = self._personal_key()
                self._key_problem = None
            except KeyringUnavailable as exc:
                self._personal = None
                self._key_problem = (
                    f"Ingestion not checked — {exc}"
                    if isinstance(exc, MisplacedKey)
                    else "Ingestion not checked — keyring unavailable; set POSTHOG_PERSONAL_API_KEY"
                )
                log.debug("No personal API key: %s", exc)
        return self._personal

    def _project_id(self, personal: str, host: str, now: float) -> int | None:
        ingestion = self._config.settings.ingestion
        if ingestion.project_id:
            return int(ingestion.project_id)
        try:
            project_key = self._project_key() or ""
        except KeyringUnavailable:
            project_key = ""
        scope = f"{host}|{hashlib.sha256(project_key.encode()).hexdigest()[:16]}"
        cached = self._store.cached_project(scope)
        if cached is not None:
            return cached
        answer = self._client.find_project(host, personal, project_key)
        if answer.verdict is QueryVerdict.OK and answer.project_id is not None:
            self._store.cache_project(scope, answer.project_id)
            log.info("Ingestion check: the project is %d", answer.project_id)
            return answer.project_id
        self._failed(answer.verdict, answer.message, answer.retry_after, now)
        return None

    def _check(self, personal: str, now: float, wall: datetime) -> None:
        settings = self._config.settings
        ingestion = settings.ingestion
        host = ingestion.app_host or app_host(settings.host)
        project_id = self._project_id(personal, host, now)
        if project_id is None:
            return
        answer = self._client.stored_beats(
            host,
            project_id,
            personal,
            event=settings.event,
            distinct_id=self._config.distinct_id,
            window_seconds=query_window(ingestion.alert_after_seconds),
        )
        if answer.verdict is not QueryVerdict.OK:
            self._failed(answer.verdict, answer.message, answer.retry_after, now, project_id)
            return
        self._failures = 0
        self._next_check = now + ingestion.poll_seconds
        judgement = judge(
            self._store.ledger(),
            {beat.uuid: beat for beat in answer.beats},
            now=wall,
            alert_after_seconds=ingestion.alert_after_seconds,
            interval_seconds=settings.interval_seconds,
            covered_since=answer.covered_since,
            now_mono=now,
        )
        try:
            lost = self._store.apply(judgement)
            windows = lag_windows(self._store.record_lags(judgement.live_lags, wall), wall)
            self._disk_problem = self._store.degraded
        except sqlite3.Error as exc:  # a full or locked disk: judge and alert all the same
            lost = self._status.lost
            windows = lag_windows(list(judgement.live_lags.values()), wall)
            self._disk_problem = f"the state file cannot be written ({exc})"
        incident = self._store.incident() or self._unkept_incident
        if (
            incident is not None
            and incident.triggered_sent
            and judgement.state is not IngestionState.FAILING
            and not _newer_than(judgement, incident)
        ):
            # No verdict yet (the app was off for hours, the ledger is new) is not recovery:
            # it resolves only when a beat newer than the incident's start is seen stored.
            judgement = replace(judgement, state=IngestionState.FAILING)
        if judgement.state is IngestionState.FAILING:
            since = incident.since if incident else judgement.incident_since or wall
            sentence = failing_sentence(judgement.newest_stored, judgement.behind_seconds, since)
            if incident is None or not incident.triggered_sent:
                self._alert(
                    "triggered",
                    since,
                    judgement.last_ingested,
                    judgement.lag_seconds,
                    judgement,
                )
        else:
            since = None
            sentence = (
                ok_sentence(
                    judgement.lag_seconds, next((w for w in windows if w.name == "1h"), None)
                )
                if judgement.state is IngestionState.OK
                else "Waiting for the first beat to be ingested"
            )
            if incident is not None:
                if incident.triggered_sent:
                    self._alert(
                        "resolved", incident.since, judgement.last_ingested, judgement.lag_seconds
                    )
                else:
                    self._store.record_alert(None, None, wall.timestamp())
        self._publish(
            IngestionStatus(
                state=judgement.state,
                sentence=sentence,
                lag_seconds=judgement.lag_seconds,
                lag_median_seconds=judgement.lag_median_seconds,
                last_ingested=judgement.last_ingested or self._status.last_ingested,
                last_check=wall,
                lost=lost,
                incident_since=since,
                project_id=project_id,
                lag_windows=windows,
            )
        )
        log.info("Ingestion check: %s (lost so far: %d)", sentence, lost)

    def _failed(
        self,
        verdict: QueryVerdict,
        message: str,
        retry_after: float | None,
        now: float,
        project_id: int | None = None,
    ) -> None:
        """The check itself failed: shown as an error, never as an incident."""
        self._failures += 1
        poll = float(self._config.settings.ingestion.poll_seconds)
        if verdict is QueryVerdict.REJECTED:
            self._stopped = True  # no retry storm: until the settings change
            self._next_check = None
        elif verdict is QueryVerdict.RATE_LIMITED:
            wait = (
                retry_after
                if retry_after is not None
                else retry_delay(self._failures, self._random)
            )
            self._next_check = now + max(wait, 1.0)
            at = self._clock.wall() + timedelta(seconds=max(wait, 1.0))
            message = f"Rate limited by PostHog — next check at {at.astimezone():%H:%M:%S}"
        elif verdict is QueryVerdict.TRANSIENT:
            self._next_check = now + min(poll, retry_delay(self._failures, self._random))
        else:
            self._next_check = now + poll
        log.warning("Ingestion check failed: %s", message)
        self._publish(
            replace(
                self._status,
                state=IngestionState.ERROR,
                sentence=message,
                last_check=self._clock.wall(),
                project_id=project_id or self._status.project_id,
            )
        )

    def _alert(
        self,
        status: str,
        since: datetime,
        last_ingested: datetime | None,
        lag: float | None,
        judgement: Judgement | None = None,
    ) -> None:
        settings = self._config.settings
        wall = self._clock.wall()
        event, who, host = settings.event, self._config.distinct_id, settings.host
        if status == "triggered":
            title = "Heartbeat not ingested"
            newest = judgement.newest_stored if judgement else None
            behind = judgement.behind_seconds if judgement else None
            if newest is None or behind is None:
                what = f"has stored none of them since {iso_utc(since)}"
            else:
                what = (
                    f"ingestion is {max(0.0, behind):.0f} s behind; newest stored beat "
                    f"{iso_utc(newest)}"
                )
            text = (
                f"PostHog at {host} accepts the '{event}' events from {who}, but {what}: "
                "ingestion may be slow or broken downstream of capture."
            )
            since_mono = judgement.incident_since_mono if judgement else None
            incident: Incident | None = Incident(
                since, True, str(uuid.uuid4()), since_mono, RUN_ID if since_mono is not None else ""
            )
        else:
            title = "Heartbeat ingested again"
            lagging = f", {lag:.0f} s behind" if lag is not None else ""
            text = f"PostHog at {host} stores the '{event}' events from {who} again{lagging}."
            incident = None
        incident_id = incident.id if incident else self._resolving_id()
        body = None
        if settings.ingestion.webhook_url:
            body = {
                "status": status,
                "incident": incident_id,
                "text": text,
                "event": event,
                "distinct_id": who,
                "host": host,
                "project_id": self._status.project_id,
                "since": iso_utc(since),
                "last_ingested": iso_utc(last_ingested) if last_ingested else None,
                "lag_seconds": None if lag is None else round(lag, 1),
            }
        try:
            self._store.record_alert(incident, body, wall.timestamp())
        except sqlite3.Error as exc:
            # Not kept: alert now all the same, the webhook once without its retries.
            log.warning("Could not keep the alert (%s); sending it without keeping it", exc)
            self._unkept_incident = incident
            self._on_alert(Alert(title, text))
            if body is not None and settings.ingestion.webhook_url:
                self._send_webhook(settings.ingestion.webhook_url, body)
            return
        self._unkept_incident = None
        self._on_alert(Alert(title, text))
        if body is not None:
            self._worker.poke()  # deliver it now, not at the next check

    def _resolving_id(self) -> str:
        open_one = self._store.incident() or self._unkept_incident
        return open_one.id if open_one and open_one.id else str(uuid.uuid4())

    def _deliver_webhooks(self, now: float, wall: datetime) -> float | None:
        """Send what is due; the monotonic time of the next retry, or None."""
        url = self._config.settings.ingestion.webhook_url
        stamp = wall.timestamp()
        wake: float | None = None
        for hook in self._store.pending_webhooks():
            if not url or stamp - hook.created_at > WEBHOOK_GIVE_UP:
                log.warning("Gave up a webhook after 24 hours (or none is set any more)")
                self._store.webhook_done(hook.id)
                continue
            if hook.next_try > stamp:
                due = now + (hook.next_try - stamp)
                wake = due if wake is None else min(wake, due)
                continue
            result = getattr(self._send_webhook(url, hook.body), "value", "")
            if result == "delivered":
                log.info("Webhook %s delivered", hook.body.get("status"))
                self._store.webhook_done(hook.id)
            elif result == "refused":
                log.warning("The webhook refused the alert; not retried")
                self._store.webhook_done(hook.id)
            else:
                delay = min(WEBHOOK_MAX_DELAY, WEBHOOK_FIRST_RETRY * 2.0**hook.tries)
                self._store.webhook_retry(hook.id, stamp + delay)
                due = now + delay
                wake = due if wake is None else min(wake, due)
                break  # keep their order: the next waits for this one
        return wake

    def _publish(self, status: IngestionStatus) -> None:
        problem = self._disk_problem or self._store.degraded
        if problem and status.state is not IngestionState.OFF:
            status = replace(status, sentence=f"{status.sentence} — not kept on disk: {problem}")
        self._status = status
        with contextlib.suppress(sqlite3.Error):  # said in the sentence; shown from memory
            self._store.save_status(status)
        self._state.update(ingestion=status)


def _newer_than(judgement: Judgement, incident: Incident) -> bool:
    """A beat newer than the incident's start is seen stored: only that resolves it."""
    if incident.run_id == RUN_ID and incident.since_mono is not None:
        mono = judgement.newest_stored_mono
        return mono is not None and mono > incident.since_mono
    newest = judgement.newest_stored
    return newest is not None and newest >= incident.since
