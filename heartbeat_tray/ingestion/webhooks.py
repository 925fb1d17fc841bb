"""The webhook outbox: each alert's body is queued in the state file in the same transaction
as the incident's new state, then delivered in order, retried with backoff for 24 hours.

The URL is the one in the settings now (``url``, set by the poller whenever they change): an
alert made while no webhook was set is never queued, and a webhook cleared since gives up what
is queued for it. Failed deliveries are retried with the beats' backoff: a second or two,
then doubling, at most every 5 minutes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from heartbeat_tray.core.backoff import retry_delay
from heartbeat_tray.core.ports import SendWebhook
from heartbeat_tray.core.verdicts import WebhookResult
from heartbeat_tray.ingestion.store import PendingWebhook

log = logging.getLogger(__name__)

GIVE_UP_SECONDS = 24 * 3600.0


class WebhookQueue(Protocol):
    """Where the bodies wait (``IngestionStore``)."""

    def pending_webhooks(self) -> Sequence[PendingWebhook]: ...

    def webhook_done(self, webhook_id: int) -> None: ...

    def webhook_retry(self, webhook_id: int, next_try: float) -> None: ...


class WebhookOutbox:
    def __init__(
        self,
        queue: WebhookQueue,
        send: SendWebhook,
        url: str = "",
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._queue = queue
        self._send = send
        self.url = url
        self._random = random_fraction

    def deliver_due(self, now: float, wall: datetime) -> float | None:
        """Send what is due, in order; the monotonic time of the next retry, or None."""
        stamp = wall.timestamp()
        for hook in self._queue.pending_webhooks():
            if not self.url:
                log.warning("The webhook URL was cleared: a pending %s alert is dropped", hook.kind)
                self._queue.webhook_done(hook.id)
                continue
            if stamp - hook.created_at > GIVE_UP_SECONDS:
                log.warning("Gave up a %s webhook after 24 hours of failures", hook.kind)
                self._queue.webhook_done(hook.id)
                continue
            if hook.next_try > stamp:
                return now + (hook.next_try - stamp)
            result = self._send(self.url, hook.body)
            if result is WebhookResult.DELIVERED:
                log.info("Webhook %s delivered", hook.body.get("status"))
                self._queue.webhook_done(hook.id)
            elif result is WebhookResult.REFUSED:
                log.warning("The webhook refused the alert; not retried")
                self._queue.webhook_done(hook.id)
            else:
                delay = retry_delay(hook.tries + 1, self._random)
                self._queue.webhook_retry(hook.id, stamp + delay)
                return now + delay  # keep their order: the next waits for this one
        return None

    def send_unkept(self, body: dict[str, Any]) -> None:
        """Once, without retries: the state file could not keep it (a full disk)."""
        if self.url:
            self._send(self.url, body)
