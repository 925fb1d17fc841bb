"""The HTTP client every outgoing request uses: keep-alive, TLS verified, redirects never
followed (a key may be in the body), and a deadline for each whole exchange."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx

from heartbeat_tray import __version__
from heartbeat_tray.posthog.deadline import DeadlineTransport
from heartbeat_tray.posthog.responses import describe_network_error

USER_AGENT = f"heartbeat-tray/{__version__}"


class DeadlineClient:
    """``http`` for requests; ``within(seconds)`` around one to bound all of it; ``_wall`` the
    clock for ``sent_at`` and Retry-After dates (a test's own)."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._wall = wall_clock or (lambda: datetime.now(UTC))
        # A test's own transport answers at once: no deadline needed around it.
        self._deadline = DeadlineTransport() if transport is None else None
        self.http = httpx.Client(
            transport=transport or self._deadline,
            headers={"User-Agent": USER_AGENT},
            verify=True,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[threading.Event]:
        """The exchange inside is cut after ``seconds``; the event says whether it was."""
        if self._deadline is None:
            yield threading.Event()
            return
        with self._deadline.deadline(seconds) as expired:
            yield expired


def failure_reason(exc: httpx.HTTPError, expired: threading.Event, seconds: float) -> str:
    """Why a request failed, in words: the deadline, or what the network said."""
    if expired.is_set():
        return f"timed out (no complete answer within {seconds:g} s)"
    return describe_network_error(exc)
