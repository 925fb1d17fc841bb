"""The ticker: beats on a fixed monotonic grid, a durable outbox, retries that never lose a beat.

``step()`` does whatever is due now and says when it next needs to run; the thread around it
sleeps until then or until a control call wakes it. Nothing runs between beats.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from heartbeat_tray.app_state import AppState, Health
from heartbeat_tray.backoff import retry_delay
from heartbeat_tray.clock import Clock, SystemClock
from heartbeat_tray.event import build_event, iso_utc
from heartbeat_tray.keystore import KeyringUnavailable
from heartbeat_tray.outbox import MAX_AGE_SECONDS, MAX_BEATS, Outbox, QueuedBeat
from heartbeat_tray.posthog_client import PostHogClient, Verdict
from heartbeat_tray.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 500  # beats per backfill request: 10,000 queued beats go out in 20 requests
MAX_REQUEST_TIMEOUT = 10.0
MIN_BACKFILL_WINDOW = 0.1  # seconds before the next grid point below which backfill waits

KeySource = Callable[[], "str | None"]  # raises KeyringUnavailable


def request_timeout(interval: float) -> float:
    return min(MAX_REQUEST_TIMEOUT, interval / 2)


@dataclass(frozen=True)
class TickerConfig:
    settings: Settings
    distinct_id: str


class Ticker:
    def __init__(
        self,
        config: TickerConfig,
        *,
        key_source: KeySource,
        outbox: Outbox,
        client: PostHogClient,
        state: AppState,
        clock: Clock | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._key_source = key_source
        self._outbox = outbox
        self._client = client
        self._state = state
        self._clock = clock or SystemClock()
        self._random = random_fraction

        # Control, shared with other threads under _cond.
        self._cond = threading.Condition()
        self._poked = False
        self._stopping = False
        self._enabled_wanted = config.settings.enabled
        self._send_now_wanted = 0
        self._pending_config: TickerConfig | None = None
        self._thread: threading.Thread | None = None

        # Engine state, touched only by the ticker's own thread (or a test calling step()).
        self._enabled = False  # becomes _enabled_wanted on the first step
        self._next_due: float | None = None
        self._last_mono: float | None = None
        self._last_wall: datetime | None = None
        self._key: str | None = None
        self._key_read = False
        self._setup_problem: str | None = None
        self._key_rejected = False
        self._hold_until = 0.0
        self._hold_until_wall: datetime | None = None
        self._retry_at = 0.0
        self._failures = 0
        self._batch_limit = MAX_BATCH
        self._last_failure: str | None = None
        self._last_accepted: datetime | None = None
        self._accepted_live = 0
        self._missed = int(outbox.read_meta("missed") or 0)
        today = outbox.read_meta("sent_today") or ["", 0]
        self._sent_day, self._sent_today = str(today[0]), int(today[1])

    # --- control, from any thread ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat-ticker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the ticker; True if it finished within ``timeout`` (an in-flight request may not).

        A beat whose request is abandoned stays in the outbox and is sent again, same uuid.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def set_enabled(self, enabled: bool) -> None:
        with self._cond:
            self._enabled_wanted = enabled
            self._poke()

    def send_now(self) -> None:
        with self._cond:
            self._send_now_wanted += 1
            self._poke()

    def apply(self, config: TickerConfig) -> None:
        """New settings (and possibly a new key): re-read the key, re-anchor on a new interval."""
        with self._cond:
            self._pending_config = config
            self._enabled_wanted = config.settings.enabled
            self._poke()

    @property
    def enabled(self) -> bool:
        with self._cond:
            return self._enabled_wanted

    def _poke(self) -> None:
        self._poked = True
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._poked = False
            try:
                next_wake = self.step()
            except Exception:
                # A bug or a broken disk must not kill the heartbeat silently: log, retry later.
                log.exception("The ticker failed; trying again in 5 seconds")
                next_wake = self._clock.monotonic() + 5.0
            with self._cond:
                if self._stopping:
                    return
                if self._poked:
                    continue
                if next_wake is None:
                    self._cond.wait()
                else:
                    timeout = next_wake - self._clock.monotonic()
                    if timeout > 0:
                        self._cond.wait(timeout)

    # --- the engine ---

    def step(self) -> float | None:
        """Do what is due now. Returns the monotonic time to run again, or None for 'when woken'."""
        now = self._clock.monotonic()
        wall = self._clock.wall()
        with self._cond:
            pending, self._pending_config = self._pending_config, None
            send_now, self._send_now_wanted = self._send_now_wanted, 0
            enabled = self._enabled_wanted
        if pending is not None:
            self._adopt(pending, now)
        if enabled != self._enabled:
            self._enabled = enabled
            self._next_due = now if enabled else None  # enabling beats at once, on a new grid
            log.info("Heartbeat %s", "enabled" if enabled else "disabled")
        self._notice_sleep(now, wall)
        self._last_mono, self._last_wall = now, wall

        key = self._read_key()
        interval = self._config.settings.interval_seconds
        live: list[str] = []
        if key and enabled and self._next_due is not None and now >= self._next_due:
            if now - self._next_due >= interval:
                skipped = int((now - self._next_due) // interval)
                log.info("Woke %d interval(s) late; one beat now and a new grid", skipped)
                self._next_due = now
            live.append(self._make_beat(wall))
            self._next_due += interval
            if not self._config.settings.backfill:
                self._count_missed(
                    self._outbox.drop_created_before(wall.timestamp() - interval / 2, keep=live),
                    "not delivered within one interval (backfill is off)",
                )
        if key and send_now:
            live.extend(self._make_beat(wall) for _ in range(send_now))
        if live:
            self._enforce_bounds(wall)

        sent = False
        if key and not self._key_rejected and now >= self._hold_until:
            self._hold_until_wall = None
            if live:
                self._deliver(self._outbox.get(live), live=True, timeout=request_timeout(interval))
                sent = True
            elif now >= self._retry_at:
                window = MAX_REQUEST_TIMEOUT if self._next_due is None else self._next_due - now
                timeout = min(request_timeout(interval), window - MIN_BACKFILL_WINDOW / 2)
                if window >= MIN_BACKFILL_WINDOW:
                    batch = self._outbox.oldest(self._batch_limit)
                    if batch:
                        self._deliver(batch, live=False, timeout=timeout)
                        sent = True
        self._publish()
        if sent:
            return self._clock.monotonic()  # look again at once: more backlog, or the next due
        return self._next_wake(key, now)

    def _next_wake(self, key: str | None, now: float) -> float | None:
        if not key:
            return None  # nothing to do until the settings change
        wakes = []
        if self._enabled and self._next_due is not None:
            wakes.append(self._next_due)
        if not self._key_rejected and self._outbox.count():
            retry = max(self._retry_at, self._hold_until, now)
            if self._next_due is not None and 0 < self._next_due - retry < MIN_BACKFILL_WINDOW:
                retry = self._next_due  # too close to the next beat: retry right after it
            wakes.append(retry)
        return min(wakes) if wakes else None

    def _adopt(self, config: TickerConfig, now: float) -> None:
        old = self._config.settings
        self._config = config
        self._key_read = False  # the key may have changed with the settings
        self._key_rejected = False
        self._failures = 0
        self._retry_at = now
        if self._enabled and config.settings.interval_seconds != old.interval_seconds:
            self._next_due = now + config.settings.interval_seconds
            log.info("Interval is now %d s; grid re-anchored", config.settings.interval_seconds)

    def _notice_sleep(self, now: float, wall: datetime) -> None:
        """After a suspend the monotonic clock has stood still while wall time went on."""
        if self._last_mono is None or self._last_wall is None or self._next_due is None:
            return
        slept = (wall - self._last_wall).total_seconds() - (now - self._last_mono)
        if slept > max(self._config.settings.interval_seconds, 2.0):
            log.info("The machine slept for about %.0f s; one beat now and a new grid", slept)
            self._next_due = now

    def _read_key(self) -> str | None:
        if not self._key_read:
            self._key_read = True
            try:
                self._key = self._key_source()
                self._setup_problem = None
            except KeyringUnavailable as exc:
                self._key = None
                # short enough for a tooltip; the full sentence is in the log
                self._setup_problem = (
                    "Keyring unavailable — unlock it or set POSTHOG_PROJECT_API_KEY"
                )
                log.warning("No API key: %s", exc)
        return self._key

    def _make_beat(self, wall: datetime) -> str:
        settings = self._config.settings
        beat_id = str(uuid.uuid4())
        self._outbox.add(
            beat_id,
            wall.timestamp(),
            lambda sequence: build_event(
                event=settings.event,
                distinct_id=self._config.distinct_id,
                uuid=beat_id,
                timestamp=wall,
                sequence=sequence,
                interval_seconds=settings.interval_seconds,
                extra_properties=settings.properties,
            ),
        )
        return beat_id

    def _enforce_bounds(self, wall: datetime) -> None:
        self._count_missed(
            self._outbox.drop_created_before(wall.timestamp() - MAX_AGE_SECONDS),
            "older than 7 days",
        )
        self._count_missed(self._outbox.trim_to(MAX_BEATS), f"beyond {MAX_BEATS} queued beats")

    def _count_missed(self, dropped: int, why: str) -> None:
        if dropped:
            self._missed += dropped
            self._outbox.write_meta("missed", self._missed)
            log.warning("Dropped %d queued beat(s): %s", dropped, why)

    def _deliver(self, beats: Sequence[QueuedBeat], *, live: bool, timeout: float) -> None:
        settings = self._config.settings
        assert self._key is not None
        result = self._client.send_batch(
            settings.host, self._key, [beat.event() for beat in beats], timeout
        )
        now = self._clock.monotonic()
        wall = self._clock.wall()
        kind = "live beat" if live else f"{len(beats)} queued beat(s)"
        done: list[str] = []  # beats to remove from the outbox
        facts: dict[str, Any] = {}  # persistent counters, written in the same transaction
        if result.verdict is Verdict.ACCEPTED:
            done = [beat.uuid for beat in beats]
            if self._failures:
                log.info("Delivery works again after %d failure(s)", self._failures)
            self._failures = 0
            self._last_failure = None
            self._retry_at = now
            self._batch_limit = min(MAX_BATCH, self._batch_limit * 2)
            self._last_accepted = wall
            facts["sent_today"] = self._count_sent(len(beats), wall)
            if live:
                self._accepted_live += 1
            log.info("Accepted %s (%s)", kind, result.reason)
        elif result.verdict is Verdict.TRANSIENT:
            self._failures += 1
            self._last_failure = result.reason
            self._retry_at = now + retry_delay(self._failures, self._random)
            if result.retry_after is not None:
                self._hold_until = now + result.retry_after
                self._hold_until_wall = wall + timedelta(seconds=result.retry_after)
                self._retry_at = max(self._retry_at, self._hold_until)
            log.warning("Sending %s failed: %s; kept for retry", kind, result.reason)
        elif result.verdict is Verdict.REJECTED_KEY:
            self._failures += 1
            self._key_rejected = True
            self._last_failure = result.reason
            log.error(
                "PostHog rejected the API key (%s); sending stops until the settings "
                "change. Beats are kept.",
                result.reason,
            )
        else:
            self._failures += 1
            self._last_failure = result.reason
            self._retry_at = now
            if len(beats) > 1:
                self._batch_limit = max(1, len(beats) // 2)
                log.warning("%s for %s; sending smaller batches", result.reason, kind)
            else:
                done = [beat.uuid for beat in beats]
                self._missed += 1
                facts["missed"] = self._missed
                log.warning("Dropped a beat: PostHog refused it (%s)", result.reason)
        facts["last_outcome"] = {
            "time": iso_utc(wall),
            "verdict": result.verdict.value,
            "reason": result.reason,
            "live": live,
            "last_accepted": iso_utc(self._last_accepted) if self._last_accepted else None,
        }
        self._outbox.settle(done, facts)  # one transaction, one fsync, per answer

    def _count_sent(self, n: int, wall: datetime) -> list[Any]:
        day = wall.astimezone().date().isoformat()
        if day != self._sent_day:
            self._sent_day, self._sent_today = day, 0
        self._sent_today += n
        return [self._sent_day, self._sent_today]

    def _publish(self) -> None:
        if not self._key:
            health = Health.NEEDS_SETUP
        elif self._key_rejected:
            health = Health.KEY_REJECTED
        elif not self._enabled:
            health = Health.DISABLED
        elif self._failures:
            health = Health.FAILING
        else:
            health = Health.HEALTHY
        day = self._clock.wall().astimezone().date().isoformat()
        self._state.update(
            health=health,
            enabled=self._enabled,
            last_accepted=self._last_accepted,
            consecutive_failures=self._failures,
            last_failure=self._last_failure,
            hold_until=self._hold_until_wall,
            sent_today=self._sent_today if day == self._sent_day else 0,
            queued=self._outbox.count(),
            missed=self._missed,
            accepted_live=self._accepted_live,
            setup_problem=self._setup_problem,
        )
