"""Talks to PostHog's capture endpoint (and, for ``check``, its flags endpoint).

One keep-alive HTTP client for the app's lifetime; TLS verification always on; redirects never
followed (the key is in the body). Every exchange has a deadline for the whole of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from heartbeat_tray import __version__
from heartbeat_tray.core.event import iso_utc
from heartbeat_tray.posthog.deadline import DeadlineTransport
from heartbeat_tray.posthog.flags import KeyCheck, check_key
from heartbeat_tray.posthog.responses import (
    Delivery,
    Verdict,
    classify_status,
    describe_network_error,
)

log = logging.getLogger(__name__)

USER_AGENT = f"heartbeat-tray/{__version__}"


class PostHogClient:
    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._deadline = DeadlineTransport() if transport is None else None
        self._http = httpx.Client(
            transport=transport or self._deadline,
            headers={"User-Agent": USER_AGENT},
            verify=True,
            follow_redirects=False,
        )
        self._wall = wall_clock or (lambda: datetime.now(UTC))

    def close(self) -> None:
        self._http.close()

    @contextlib.contextmanager
    def _within(self, seconds: float) -> Iterator[threading.Event]:
        if self._deadline is None:  # a test's transport answers at once
            yield threading.Event()
            return
        with self._deadline.deadline(seconds) as expired:
            yield expired

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
        with self._within(timeout) as expired:
            try:
                response = self._http.post(
                    f"{host}/batch/",
                    content=content,
                    headers={"Content-Type": "application/json"},
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                reason = (
                    f"timed out (no complete answer within {timeout:g} s)"
                    if expired.is_set()
                    else describe_network_error(exc)
                )
                log.info("Capture request failed: %s", reason)
                return Delivery(Verdict.TRANSIENT, reason)
        return classify_status(response, self._wall())

    def check_key(self, host: str, api_key: str, distinct_id: str, timeout: float) -> KeyCheck:
        with self._within(timeout) as expired:
            return check_key(self._http, host, api_key, distinct_id, timeout, expired)
