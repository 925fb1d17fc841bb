"""Talks to PostHog's capture endpoint (and, for ``check``, its flags endpoint).

One keep-alive HTTP client for the app's lifetime; TLS verification always on; redirects never
followed (the key is in the body). Every exchange has a deadline for the whole of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from heartbeat_tray.core.timefmt import iso_utc
from heartbeat_tray.core.verdicts import Delivery, KeyCheck, Verdict
from heartbeat_tray.net.http import (
    CAPTURE_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    no_answer,
)
from heartbeat_tray.posthog.flags import check_key
from heartbeat_tray.posthog.responses import classify_status

log = logging.getLogger(__name__)


class PostHogClient(DeadlineClient):
    def send_batch(
        self, host: str, api_key: str, events: Sequence[dict[str, Any]], timeout: float
    ) -> Delivery:
        """POST the beats; ``timeout`` bounds the whole exchange, not each read."""
        body = {
            "api_key": api_key,
            "batch": list(events),
            "sent_at": iso_utc(self._wall()),
            "historical_migration": False,
        }
        content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        with self.within(timeout) as expired:
            try:
                response = self.fetch(
                    "POST",
                    f"{host}/batch/",
                    limit=CAPTURE_ANSWER_LIMIT,
                    content=content,
                    headers={"Content-Type": "application/json"},
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                why = no_answer(exc, expired, timeout)
                log.info("Capture request failed: %s", why.reason)
                return Delivery(Verdict.TRANSIENT, why.reason, failure=why.kind)
            except UnreadableAnswer as exc:
                log.warning("Capture answer abandoned: %s", exc)
                return Delivery(Verdict.TRANSIENT, str(exc))
        return classify_status(response, self._wall())

    def check_key(self, host: str, api_key: str, distinct_id: str, timeout: float) -> KeyCheck:
        with self.within(timeout) as expired:
            return check_key(self, host, api_key, distinct_id, timeout, expired)
