"""The delivery policy: what each PostHog answer means for the beats and for the next request.

Transient failures back off (never faster than once a second); ``Retry-After`` holds every
request back; a rejected key stops sending until the settings change; a wrong host (3xx, 404,
405) holds the backlog back while each live beat is still tried at its grid time, so delivery
resumes by itself once the host answers 2xx again; every beat is kept. Only a 400 drops a beat;
a 413 halves the batch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from heartbeat_tray.core.backoff import retry_delay
from heartbeat_tray.core.verdicts import Delivery, Verdict

log = logging.getLogger(__name__)

MAX_BATCH = 500  # beats per backfill request: 10,000 queued beats go out in 20 requests


@dataclass(frozen=True)
class Settlement:
    """What to do with the beats of one request."""

    remove: bool  # delivered, or refused for good: take them out of the outbox
    dropped: int = 0  # of those, how many were refused (counted as missed)


class DeliveryPolicy:
    def __init__(self, random_fraction: Callable[[], float] = random.random) -> None:
        self._random = random_fraction
        self.failures = 0
        self.last_failure: str | None = None
        self.stopped: Verdict | None = None  # REJECTED_KEY until the settings change
        # The host answered 3xx/404/405 (a proxy mid-upgrade, a typo): no backlog is sent,
        # live beats still go, and the first one accepted ends it.
        self.wrong_host = False
        self.hold_until = 0.0  # Retry-After, monotonic
        self.hold_until_wall: datetime | None = None
        self.retry_at = 0.0
        self.batch_limit = MAX_BATCH

    def reset(self, now: float) -> None:
        """New settings: try again at once."""
        self.stopped = None
        self.wrong_host = False
        self.failures = 0
        self.retry_at = now

    def may_send(self, now: float) -> bool:
        if self.stopped is not None or now < self.hold_until:
            return False
        self.hold_until_wall = None
        return True

    def may_send_backlog(self, now: float) -> bool:
        return not self.wrong_host and now >= self.retry_at

    def not_before(self, when: float) -> None:
        """No backlog request before ``when`` (after a local failure: never a resend storm)."""
        self.retry_at = max(self.retry_at, when)

    def next_try(self, now: float) -> float:
        return max(self.retry_at, self.hold_until, now)

    def record(self, result: Delivery, count: int, now: float, wall: datetime) -> Settlement:
        verdict = result.verdict
        if verdict is Verdict.ACCEPTED:
            if self.failures:
                log.info("Delivery works again after %d failure(s)", self.failures)
            self.failures = 0
            self.last_failure = None
            self.wrong_host = False
            self.retry_at = now
            self.batch_limit = min(MAX_BATCH, self.batch_limit * 2)
            return Settlement(remove=True)
        self.failures += 1
        self.last_failure = result.reason
        if verdict is Verdict.TRANSIENT:
            self.retry_at = now + retry_delay(self.failures, self._random)
            if result.retry_after is not None:
                self.hold_until = now + result.retry_after
                self.hold_until_wall = wall + timedelta(seconds=result.retry_after)
                self.retry_at = max(self.retry_at, self.hold_until)
            return Settlement(remove=False)
        if verdict is Verdict.REJECTED_KEY:
            self.stopped = verdict
            return Settlement(remove=False)
        if verdict is Verdict.WRONG_HOST:
            self.wrong_host = True
            return Settlement(remove=False)
        self.retry_at = now
        if count > 1:  # 413, or a 400 for one of many: find it in smaller batches
            self.batch_limit = max(1, count // 2)
            return Settlement(remove=False)
        return Settlement(remove=True, dropped=1)
