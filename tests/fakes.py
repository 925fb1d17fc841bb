"""Test doubles for the core: a clock the test moves, a PostHog stand-in behind MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from testkit.simulation import FakeClock

__all__ = ["FakeClock", "FakePostHog", "MemoryKeyring"]


@dataclass
class FakePostHog:
    """Answers capture requests; ``answer`` decides each response from the request."""

    clock: FakeClock
    latency: float = 0.0
    answer: Callable[[list[dict[str, Any]]], httpx.Response] | None = None
    requests: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.clock.advance(self.latency)
        body = json.loads(request.content)
        events = body["batch"]
        self.requests.append((self.clock.monotonic(), events))
        response = self.answer(events) if self.answer else httpx.Response(200, json={"status": 1})
        if 200 <= response.status_code < 300:
            self.accepted.extend(events)
        return response


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise PasswordDeleteError("not found")
        del self.store[(service, username)]
