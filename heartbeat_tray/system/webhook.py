"""Posts an alert to the user's webhook (Slack, Mattermost, Rocket.Chat, Google Chat or any
endpoint that takes JSON). No key is ever part of it; redirects are not followed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from heartbeat_tray.core.ports import REQUEST_DEADLINE
from heartbeat_tray.core.verdicts import WebhookResult, webhook_result
from heartbeat_tray.net.http import (
    WEBHOOK_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    no_answer,
    reason_phrase,
)

log = logging.getLogger(__name__)


class WebhookSender(DeadlineClient):
    def send(
        self, url: str, body: Mapping[str, Any], timeout: float = REQUEST_DEADLINE
    ) -> WebhookResult:
        """Any failure to send is a failed delivery, never an exception: a URL httpx cannot
        use, a redirect (never followed: retried like a 5xx), a huge answer."""
        with self.within(timeout) as expired:
            try:
                response = self.fetch(
                    "POST", url, limit=WEBHOOK_ANSWER_LIMIT, json=body, timeout=timeout
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "The webhook could not be reached: %s", no_answer(exc, expired, timeout).reason
                )
                return WebhookResult.RETRY
            except UnreadableAnswer as exc:  # its status unread: retried, like a 5xx
                log.warning("The webhook's answer was abandoned: %s", exc)
                return WebhookResult.RETRY
            except Exception as exc:  # e.g. httpx.InvalidURL: not an HTTPError
                log.warning("The webhook could not be sent: %s", type(exc).__name__)
                return WebhookResult.RETRY
        result = webhook_result(response.status_code)
        if result is not WebhookResult.DELIVERED:
            log.warning("The webhook answered %s", reason_phrase(response))
        return result
