"""The ticker: beats on a fixed monotonic grid, a durable outbox, retries that never lose a beat.

``step()`` does whatever is due now and says when it next needs to run; a ``Worker`` thread
sleeps until then or until a control call pokes it. Nothing runs between beats. The parts it
composes each hold one job: ``Schedule`` (when), ``DeliveryPolicy`` (what an answer means),
``Outbox`` + ``StatsStore`` (what is kept), ``AppState`` (what is shown).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from heartbeat_tray.core.api_key import KeyringUnavailable, MisplacedKey
from heartbeat_tray.core.app_state import AppState, Health
from heartbeat_tray.core.clock import RUN_ID, Clock, SystemClock
from heartbeat_tray.core.delivery import MAX_BATCH, DeliveryPolicy
from heartbeat_tray.core.event import BeatTemplate
from heartbeat_tray.core.outbox import MAX_AGE_SECONDS, MAX_BEATS, Outbox, QueuedBeat
from heartbeat_tray.core.ports import REQUEST_DEADLINE, AcceptedBeat, AcceptedListener, Capture
from heartbeat_tray.core.schedule import Schedule
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.stats import Outcome, StatsStore
from heartbeat_tray.core.tally import BeatTally
from heartbeat_tray.core.verdicts import VERDICT_WORDS, Verdict
from heartbeat_tray.core.worker import Worker

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCH", "Ticker", "TickerConfig", "request_timeout"]

MIN_REQUEST_TIMEOUT = 1.0  # below this a healthy server's ordinary answer times out
MIN_BACKFILL_SHARE = 0.4  # of an interval, at the least, for one backfill request
MIN_RESEND_GAP = 1.0  # seconds between requests while the outbox cannot record answers
BACKFILL_MARGIN = 0.05  # seconds kept free before the next live beat

# Short enough for a tooltip; the full sentence is in the log.
KEYRING_PROBLEM = "Keyring unavailable — unlock it or set POSTHOG_PROJECT_API_KEY"

KeySource = Callable[[], "str | None"]  # raises KeyringUnavailable


def request_timeout(interval: float) -> float:
    """The deadline for one whole exchange: min(10 s, interval/2), but never under 1 s."""
    return max(MIN_REQUEST_TIMEOUT, min(REQUEST_DEADLINE, interval / 2))


@dataclass(frozen=True)
class TickerConfig:
    settings: Settings
    distinct_id: str
    problem: str | None = None  # the settings file is broken: nothing is sent anywhere

    def template(self) -> BeatTemplate:
        return self.settings.beat_template(self.distinct_id)


@dataclass
class _Requests:
    """What other threads asked for since the last step (guarded by the ticker's lock)."""

    enabled: bool
    send_now: int = 0
    config: TickerConfig | None = None


def _storage_problem(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "full" in text:
        return "Disk full — beats are not being kept"
    if "readonly" in text or "read-only" in text:
        return "The state folder is read-only — beats are not being kept"
    return f"Cannot write the outbox ({exc}) — beats are not being kept"


class Ticker:
    def __init__(
        self,
        config: TickerConfig,
        *,
        key_source: KeySource,
        outbox: Outbox,
        client: Capture,
        state: AppState,
        on_accepted: AcceptedListener = lambda beats: None,
        clock: Clock | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._key_source = key_source
        self._outbox = outbox
        self._client = client
        self._on_accepted = on_accepted  # the ingestion check's ledger, in the engine
        self._state = state
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._requests = _Requests(enabled=config.settings.enabled)
        self._worker = Worker("heartbeat-ticker", self.step, self._clock)

        # Touched only by the worker's thread (or a test calling step()).
        self._enabled = False  # becomes the requested value on the first step
        self._schedule = Schedule(config.settings.interval_seconds)
        self._policy = DeliveryPolicy(random_fraction)
        self._stats_store = StatsStore(outbox)
        self._stats = self._stats_store.load()
        self._key: str | None = None
        self._key_read = False
        self._setup_problem: str | None = None
        self._keyring_locked = False
        self._storage_problem: str | None = None
        self._accepted_live = 0
        self._tally = BeatTally()
        # Beats PostHog accepted (or refused for good) that the outbox could not remove (a full
        # disk): never sent again by this process, and removed once the disk takes writes.
        self._unrecorded: set[str] = set()
        self._after_first_step: Callable[[], None] | None = None

    # --- control, from any thread ---

    def start(self, then: Callable[[], None] | None = None) -> None:
        """Start beating; ``then`` runs on the ticker's thread once its first step is done."""
        if then is not None:
            self._after_first_step = then
        self._worker.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the ticker; True if it finished within ``timeout`` (an in-flight request may not).

        A beat whose request is abandoned stays in the outbox and is sent again, same uuid.
        """
        return self._worker.stop(timeout)

    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._requests.enabled = enabled
        self._worker.poke()

    def send_now(self) -> None:
        with self._lock:
            self._requests.send_now += 1
        self._worker.poke()

    def apply(self, config: TickerConfig) -> None:
        """New settings (and possibly a new key): re-read the key, re-anchor on a new interval."""
        with self._lock:
            self._requests.config = config
            self._requests.enabled = config.settings.enabled
        self._worker.poke()

    @property
    def enabled(self) -> bool:
        with self._lock:
            return self._requests.enabled

    # --- the engine ---

    def step(self) -> float | None:
        """Do what is due now. Returns the monotonic time to run again, or None for 'when woken'."""
        try:
            return self._step()
        finally:
            then, self._after_first_step = self._after_first_step, None
            if then is not None:
                then()

    def _step(self) -> float | None:
        now = self._clock.monotonic()
        wall = self._clock.wall()
        with self._lock:
            pending, self._requests.config = self._requests.config, None
            send_now, self._requests.send_now = self._requests.send_now, 0
            enabled = self._requests.enabled
        if pending is not None:
            self._adopt(pending, now)
        if enabled != self._enabled:
            self._enabled = enabled
            self._schedule.start(now) if enabled else self._schedule.stop()
            log.info("Heartbeat %s", "enabled" if enabled else "disabled")
        self._schedule.observe(now, wall)

        key = self._read_key()
        live: list[QueuedBeat] = []
        if key and enabled and self._schedule.take_due(now):
            live.append(self._make_beat(wall))
            if not self._config.settings.backfill:
                self._drop_undelivered(wall, keep=[b.uuid for b in live])
        if key:
            live.extend(self._make_beat(wall) for _ in range(send_now))
        if live:
            self._enforce_bounds(wall)
        if self._unrecorded:
            self._record_unrecorded()

        sent = False
        interval = self._config.settings.interval_seconds
        timeout = request_timeout(interval)
        # A backfill request ends before the next live beat, and gets a fair share of the
        # time: the whole deadline, or at least 40 % of an interval; else it waits for the beat.
        least = min(timeout, MIN_BACKFILL_SHARE * interval)
        if self._unrecorded:
            least = max(least, MIN_RESEND_GAP)  # the disk is full: a second between requests
        if key and self._policy.may_send(now):
            if live:
                self._deliver(live, live=True, timeout=timeout)
                sent = True
            elif self._policy.may_send_backlog(now) and self._window(now) >= least:
                batch = self._outbox.oldest(self._policy.batch_limit, skip=self._unrecorded)
                if batch:
                    self._deliver(batch, live=False, timeout=min(timeout, self._window(now)))
                    sent = True
        self._publish()
        if sent:
            return self._clock.monotonic()  # look again at once: more backlog, or the next due
        return self._next_wake(key, now, least)

    def _window(self, now: float) -> float:
        """Time until the next live beat (less a margin): a backfill request ends before it."""
        due = self._schedule.next_due
        return REQUEST_DEADLINE if due is None else due - now - BACKFILL_MARGIN

    def _next_wake(self, key: str | None, now: float, timeout: float) -> float | None:
        if not key:
            return None  # nothing to do until the settings change
        wakes = []
        due = self._schedule.next_due
        if self._enabled and due is not None:
            wakes.append(due)
        if self._policy.stopped is None and not self._policy.wrong_host and self._queued():
            retry = self._policy.next_try(now)
            if due is not None and 0 < due - retry < timeout:
                retry = due  # too close to the next beat: retry right after it
            wakes.append(retry)
        return min(wakes) if wakes else None

    def _adopt(self, config: TickerConfig, now: float) -> None:
        self._config = config
        self._key_read = False  # the key may have changed with the settings
        self._policy.reset(now)
        if self._enabled:
            self._schedule.set_interval(config.settings.interval_seconds, now)
        else:
            self._schedule.interval = config.settings.interval_seconds

    def _read_key(self) -> str | None:
        if self._config.problem:
            self._setup_problem = self._config.problem
            self._keyring_locked = False
            return None  # a broken settings file: no beat and no key goes anywhere
        if not self._key_read:
            self._key_read = True
            try:
                self._key = self._key_source()
                self._setup_problem = None
                self._keyring_locked = False
            except KeyringUnavailable as exc:
                self._key = None
                misplaced = isinstance(exc, MisplacedKey)
                self._setup_problem = str(exc) if misplaced else KEYRING_PROBLEM
                self._keyring_locked = not misplaced
                log.debug("No API key: %s", exc)
        return self._key

    def _make_beat(self, wall: datetime) -> QueuedBeat:
        """A new beat, kept in the outbox; if it cannot be kept, sent all the same (best effort)."""
        template = self._config.template()
        beat_id = str(uuid.uuid4())
        self._tally = self._tally.add(made=1)
        try:
            beat = self._outbox.add(beat_id, wall.timestamp(), template)
        except sqlite3.Error as exc:
            if self._storage_problem is None:
                log.error("Cannot keep beats in %s: %s", self._outbox.path, exc)
            self._storage_problem = _storage_problem(exc)
            return self._outbox.unkept_beat(beat_id, wall.timestamp(), template)
        if self._storage_problem is not None:
            log.info("Beats are kept on disk again")
            self._storage_problem = None
        return beat

    def _enforce_bounds(self, wall: datetime) -> None:
        try:
            dropped = self._outbox.drop_created_before(wall.timestamp() - MAX_AGE_SECONDS)
            self._count_missed(dropped, "older than 7 days")
            self._count_missed(self._outbox.trim_to(MAX_BEATS), f"beyond {MAX_BEATS} queued beats")
        except sqlite3.Error as exc:
            log.warning("Could not trim the outbox: %s", exc)

    def _drop_undelivered(self, wall: datetime, keep: Sequence[str]) -> None:
        interval = self._config.settings.interval_seconds
        try:
            dropped = self._outbox.drop_created_before(wall.timestamp() - interval / 2, keep=keep)
        except sqlite3.Error as exc:
            log.warning("Could not drop undelivered beats: %s", exc)
            return
        self._count_missed(dropped, "not delivered within one interval (backfill is off)")

    def _count_missed(self, dropped: int, why: str) -> None:
        if dropped:
            self._stats = self._stats.with_missed(dropped)
            self._tally = self._tally.add(missed=dropped)
            self._stats_store.save(self._stats)
            log.warning("Dropped %d queued beat(s): %s", dropped, why)

    def _deliver(self, beats: Sequence[QueuedBeat], *, live: bool, timeout: float) -> None:
        settings = self._config.settings
        assert self._key is not None
        result = self._client.send_batch(
            settings.host, self._key, [beat.event() for beat in beats], timeout
        )
        now = self._clock.monotonic()
        wall = self._clock.wall()
        settlement = self._policy.record(result, len(beats), now, wall)
        kind = "live beat" if live else f"{len(beats)} queued beat(s)"
        verdict = result.verdict
        if verdict is Verdict.ACCEPTED:
            self._stats = self._stats.with_sent(len(beats), wall)
            self._tally = self._tally.add(accepted=len(beats))
            if live:
                self._accepted_live += 1
            log.info("Accepted %s (%s)", kind, result.reason)
        elif verdict is Verdict.TRANSIENT:
            log.warning("Sending %s failed: %s; kept for retry", kind, result.reason)
        elif verdict is Verdict.REJECTED_KEY:
            log.error(
                "PostHog rejected the API key (%s); sending stops until the settings "
                "change. Beats are kept.",
                result.reason,
            )
        elif verdict is Verdict.WRONG_HOST:
            log.error(
                "PostHog at %s answered %s: the host or path is wrong. Beats are kept; each "
                "live beat is still tried, and the backlog follows once one is accepted.",
                settings.host,
                result.reason,
            )
        elif settlement.dropped:
            log.warning("Dropped a beat: PostHog refused it (%s)", result.reason)
        else:
            log.warning("%s for %s; sending smaller batches", result.reason, kind)
        if settlement.dropped:
            self._stats = self._stats.with_missed(settlement.dropped)
            self._tally = self._tally.add(refused=settlement.dropped)
        outcome = Outcome(wall, verdict.value, VERDICT_WORDS[verdict], result.reason, live)
        self._stats = replace(
            self._stats, last_outcome=outcome, hold_until=self._policy.hold_until_wall
        )
        done = [beat.uuid for beat in beats] if settlement.remove else []
        try:
            # One transaction, one fsync, per answer: the beats and the counters together.
            self._outbox.settle(done, self._stats_store.facts(self._stats))
        except sqlite3.Error as exc:
            # Answered beats stay in the file but never go again from this process; they are
            # removed once the disk takes writes (a restart before then resends them under
            # the same uuid, which PostHog stores once).
            if self._storage_problem is None:
                log.warning("Could not record the answer in the outbox: %s", exc)
            self._storage_problem = _storage_problem(exc)
            kept = {beat.uuid for beat in beats if beat.id}  # not those sent unkept
            self._unrecorded.update(u for u in done if u in kept)
            self._policy.not_before(now + MIN_RESEND_GAP)
        if verdict is Verdict.ACCEPTED:
            stamp = wall.timestamp()
            interval = settings.interval_seconds
            self._on_accepted(
                [
                    AcceptedBeat(
                        b.uuid, b.created_at, stamp, stamp - b.created_at <= interval, now, RUN_ID
                    )
                    for b in beats
                ]
            )

    def _record_unrecorded(self) -> None:
        """Remove the beats answered while the disk was full, once it takes writes again."""
        try:
            self._outbox.settle(list(self._unrecorded), self._stats_store.facts(self._stats))
        except sqlite3.Error:
            return  # still full: they stay remembered here
        if self._unrecorded:
            log.info("Recorded %d beat(s) answered while the disk was full", len(self._unrecorded))
        self._unrecorded.clear()

    def _queued(self) -> int:
        """Beats still waiting for PostHog (those answered but not yet removed do not count)."""
        return max(0, self._outbox.count() - len(self._unrecorded))

    def _publish(self) -> None:
        policy = self._policy
        if not self._key:
            health = Health.NEEDS_SETUP
        elif policy.stopped is Verdict.REJECTED_KEY:
            health = Health.KEY_REJECTED
        elif policy.wrong_host:
            health = Health.WRONG_HOST
        elif not self._enabled:
            health = Health.DISABLED
        elif policy.failures:
            health = Health.FAILING
        else:
            health = Health.HEALTHY
        try:
            queued = self._queued()
        except sqlite3.Error:
            queued = self._state.snapshot.queued
        self._state.update(
            health=health,
            enabled=self._enabled,
            host=self._config.settings.host,
            last_accepted=self._stats.last_accepted,
            consecutive_failures=policy.failures,
            last_failure=policy.last_failure,
            hold_until=policy.hold_until_wall,
            sent_today=self._stats.sent_today(self._clock.wall()),
            queued=queued,
            missed=self._stats.missed,
            accepted_live=self._accepted_live,
            beats=self._tally,
            setup_problem=self._setup_problem,
            keyring_locked=self._keyring_locked,
            storage_problem=self._storage_problem,
        )
