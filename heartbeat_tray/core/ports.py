"""What the core needs from the edge, as interfaces: the adapters in ``posthog/`` and
``system/`` implement them, the engine plugs them in, and tests pass their own.

Also the values that cross them one way, from the core out (an accepted beat, announced).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from heartbeat_tray.core.verdicts import Delivery, KeyCheck, QueryAnswer, WebhookResult

# No exchange with a server may take longer, connect to last byte, unless said otherwise:
# a beat a minute must never wait behind one (measured: a trickling server held a request
# 36 s against httpx's 10 s per-read timeout; the deadline cuts it at 10 s).
REQUEST_DEADLINE = 10.0


class Capture(Protocol):
    """PostHog's capture endpoint (``posthog.capture.PostHogClient``)."""

    def send_batch(
        self, host: str, api_key: str, events: Sequence[dict[str, Any]], timeout: float
    ) -> Delivery: ...

    def check_key(self, host: str, api_key: str, distinct_id: str, timeout: float) -> KeyCheck: ...

    def close(self) -> None: ...


class StoredBeatsQuery(Protocol):
    """PostHog's query API, read with a personal key (``posthog.query.QueryClient``)."""

    def find_project(
        self,
        app_host: str,
        personal_key: str,
        project_key: str,
        timeout: float = REQUEST_DEADLINE,
        deadline: float | None = None,
    ) -> QueryAnswer: ...

    def stored_beats(
        self,
        app_host: str,
        project_id: int,
        personal_key: str,
        *,
        event: str,
        distinct_id: str,
        window_seconds: int,
        timeout: float = ...,
    ) -> QueryAnswer: ...


class SendWebhook(Protocol):
    """Posts one alert to the user's webhook (``system.webhook.WebhookSender.send``)."""

    def __call__(self, url: str, body: Mapping[str, Any]) -> WebhookResult: ...


@dataclass(frozen=True)
class AcceptedBeat:
    """A beat PostHog accepted, as the ticker announces it (the ingestion check looks for it)."""

    uuid: str
    beat_time: float  # its own wall-clock time, seconds since the epoch
    accepted_at: float  # wall-clock seconds when capture answered 2xx
    live: bool  # accepted within one interval of its own time: its lag counts
    accepted_mono: float  # the acceptance on the monotonic clock of run ``run_id``
    run_id: str


AcceptedListener = Callable[[Sequence[AcceptedBeat]], None]
