"""Posts an alert to the user's webhook (Slack, Mattermost, Rocket.Chat, Google Chat or any
endpoint that takes JSON). No key is ever part of it; redirects are not followed."""

from __future__ import annotations

import enum
import logging
from typing import Any

import httpx

from heartbeat_tray.posthog.http import (
    WEBHOOK_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    failure_reason,
)

log = logging.getLogger(__name__)


class WebhookResult(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network, timeout, 408, 429, 5xx
    REFUSED = "refused"  # any other answer: retrying would not help


class WebhookSender(DeadlineClient):
    def send(self, url: str, body: dict[str, Any], timeout: float = 10.0) -> WebhookResult:
        """Any failure to send is a failed delivery, never an exception: a URL httpx cannot
        use, a redirect (never followed: retried like a 5xx), a huge answer."""
        with self.within(timeout) as expired:
            try:
                response = self.fetch(
                    "POST", url, limit=WEBHOOK_ANSWER_LIMIT, json=body, timeout=timeout
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "The webhook could not be reached: %s", failure_reason(exc, expired, timeout)
                )
                return WebhookResult.RETRY
            except UnreadableAnswer as exc:  # its status unread: retried, like a 5xx
                log.warning("The webhook's answer was abandoned: %s", exc)
                return WebhookResult.RETRY
            except Exception as exc:  # e.g. httpx.InvalidURL: not an HTTPError
                log.warning("The webhook could not be sent: %s", type(exc).__name__)
                return WebhookResult.RETRY
        status = response.status_code
        if 200 <= status < 300:
            return WebhookResult.DELIVERED
        log.warning("The webhook answered %s %s", status, response.reason_phrase)
        if status in (408, 429) or status >= 500 or 300 <= status < 400:
            return WebhookResult.RETRY
        return WebhookResult.REFUSED
