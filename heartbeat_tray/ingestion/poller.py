"""The ingestion poller: every ``poll_seconds`` it asks PostHog which accepted beats are stored
(the project from ``project``), judges the answer (``rules``), hands the judgement to
``incidents`` and publishes what the check shows; between checks it lets the webhook outbox
deliver. It runs on its own ``Worker`` thread: a slow query never delays a beat, and nothing
runs between checks.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.api_key import KeyringUnavailable, MisplacedKey
from heartbeat_tray.core.app_state import AppState
from heartbeat_tray.core.backoff import retry_delay
from heartbeat_tray.core.clock import Clock, SystemClock
from heartbeat_tray.core.ingestion_status import IncidentKind, IngestionState, IngestionStatus
from heartbeat_tray.core.ports import SendWebhook, StoredBeatsQuery
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.tally import CheckTally
from heartbeat_tray.core.verdicts import QueryVerdict
from heartbeat_tray.core.worker import Worker
from heartbeat_tray.ingestion.alerts import (
    Whose,
)
from heartbeat_tray.ingestion.incidents import Incidents
from heartbeat_tray.ingestion.project import check_host, resolve_project
from heartbeat_tray.ingestion.rules import (
    Judgement,
    judge,
    lag_windows,
    query_window,
)
from heartbeat_tray.ingestion.store import IngestionStore
from heartbeat_tray.ingestion.webhooks import WebhookOutbox

log = logging.getLogger(__name__)

KeySource = Callable[[], "str | None"]  # raises KeyringUnavailable


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
        client: StoredBeatsQuery,
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
        self._webhooks = WebhookOutbox(
            store, send_webhook, config.settings.ingestion.webhook_url, random_fraction
        )
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
        self._tally = CheckTally()
        self._incidents = Incidents(
            store,
            self._webhooks,
            self._clock,
            on_alert=on_alert,
            on_opened=self._opened,
            on_queued=self._worker.poke,
        )
        try:
            self._observed = store.lag_uuids()  # lags counted already (before a restart)
        except sqlite3.Error:
            self._observed = set()

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
            self._webhooks.url = pending.settings.ingestion.webhook_url
            self._keys_read = False
            self._stopped = False
            self._failures = 0
            self._next_check = None
        webhook_wake = self._webhooks.deliver_due(now, wall)
        ingestion = self._config.settings.ingestion
        # Turned off: the keyring is not even asked (on Linux that is a child process).
        personal = self._read_personal_key() if ingestion.check else None
        if self._config.problem or not personal:
            why = (
                (self._key_problem or "Ingestion not checked — add a personal API key in Settings")
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

    def _check(self, personal: str, now: float, wall: datetime) -> None:
        settings = self._config.settings
        ingestion = settings.ingestion
        try:
            project_key = self._project_key() or ""
        except KeyringUnavailable:
            project_key = ""
        found = resolve_project(self._client, settings, personal, project_key, cache=self._store)
        if found.verdict is not QueryVerdict.OK or found.project_id is None:
            self._failed(found.verdict, found.message, found.retry_after, now)
            return
        project_id = found.project_id
        answer = self._client.stored_beats(
            check_host(settings),
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
            samples = self._store.record_lags(judgement.live_lags, wall)
            self._disk_problem = self._store.degraded
        except sqlite3.Error as exc:  # a full or locked disk: judge and alert all the same
            lost = self._status.lost
            samples = list(judgement.live_lags.values())
            self._disk_problem = f"the state file cannot be written ({exc})"
        windows = lag_windows(samples, wall)
        self._count(judgement, lost)
        who = Whose(settings.event, self._config.distinct_id, settings.host, project_id)
        outcome = self._incidents.decide(judgement, samples, windows, wall, settings, who)
        state, sentence, since = outcome.state, outcome.sentence, outcome.since
        self._publish(
            IngestionStatus(
                state=state,
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

    def _count(self, judgement: Judgement, lost: int) -> None:
        """The metrics' counters: each live beat's lag once, the beats newly proven lost."""
        fresh = [lag for u, (_when, lag) in judgement.live_lags.items() if u not in self._observed]
        self._observed = set(judgement.live_lags)
        self._tally = replace(
            self._tally,
            lags=self._tally.lags.observe(fresh),
            lost=self._tally.lost + max(0, lost - self._status.lost),
        )

    def _opened(self, kind: IncidentKind) -> None:
        self._tally = self._tally.opened(kind.value)

    def _publish(self, status: IngestionStatus) -> None:
        problem = self._disk_problem or self._store.degraded
        if problem and status.state is not IngestionState.OFF:
            status = replace(status, sentence=f"{status.sentence} — not kept on disk: {problem}")
        self._status = status
        with contextlib.suppress(sqlite3.Error):  # said in the sentence; shown from memory
            self._store.save_status(status)
        self._state.update(ingestion=status, checks=self._tally)
