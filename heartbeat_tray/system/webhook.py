"""Posts an alert to the user's webhook (Slack, Mattermost, Rocket.Chat, Google Chat or any
endpoint that takes JSON). No key is ever part of it; redirects are not followed."""

from __future__ import annotations

import enum
import logging
from typing import Any

import httpx

from heartbeat_tray.posthog.capture import USER_AGENT
from heartbeat_tray.posthog.deadline import DeadlineTransport
from heartbeat_tray.posthog.responses import describe_network_error

log = logging.getLogger(__name__)


class WebhookResult(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network, timeout, 408, 429, 5xx
    REFUSED = "refused"  # any other answer: retrying would not help


class WebhookSender:
    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._deadline = DeadlineTransport() if transport is None else None
        self._http = httpx.Client(
            transport=transport or self._deadline,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def send(self, url: str, body: dict[str, Any], timeout: float = 10.0) -> WebhookResult:
        try:
            if self._deadline is not None:
                with self._deadline.deadline(timeout):
                    response = self._http.post(url, json=body, timeout=timeout)
            else:
                response = self._http.post(url, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning("The webhook could not be reached: %s", describe_network_error(exc))
            return WebhookResult.RETRY
        status = response.status_code
        if 200 <= status < 300:
            return WebhookResult.DELIVERED
        log.warning("The webhook answered %s %s", status, response.reason_phrase)
        if status in (408, 429) or status >= 500:
            return WebhookResult.RETRY
        return WebhookResult.REFUSED
