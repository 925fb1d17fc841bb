"""What the app is doing, as one immutable snapshot that UIs subscribe to."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

NOTIFY_AFTER_FAILURES = 3


class Health(enum.Enum):
    NEEDS_SETUP = "needs-setup"  # no key, or the keyring cannot be read
    DISABLED = "disabled"
    HEALTHY = "healthy"  # enabled, last attempt accepted (or none yet)
    FAILING = "failing"  # enabled, the last attempt failed
    KEY_REJECTED = "key-rejected"  # 401/403: nothing is sent until the settings change


@dataclass(frozen=True)
class Snapshot:
    health: Health = Health.HEALTHY
    enabled: bool = True
    last_accepted: datetime | None = None
    consecutive_failures: int = 0
    last_failure: str | None = None
    hold_until: datetime | None = None  # Retry-After in force until then
    sent_today: int = 0
    queued: int = 0
    missed: int = 0  # beats dropped: backfill off, outbox bounds, or rejected (400)
    accepted_live: int = 0  # grows by one per accepted live beat: the tray pulses on it
    setup_problem: str | None = None  # why the app needs setup (no key, keyring locked)
    settings_problem: str | None = None  # the settings file was bad and set aside

    @property
    def status_line(self) -> str:
        if self.health is Health.NEEDS_SETUP:
            return self.setup_problem or "No API key — open Settings"
        if self.health is Health.KEY_REJECTED:
            return f"API key rejected ({self.last_failure}) — open Settings"
        if self.hold_until is not None:
            return f"Rate limited: waiting until {self.hold_until.astimezone():%H:%M:%S}"
        if self.health is Health.FAILING:
            return f"Failing: {self.last_failure} ({self.consecutive_failures} in a row)"
        if self.health is Health.DISABLED:
            return "Disabled"
        if self.last_accepted is not None:
            return f"Last accepted {self.last_accepted.astimezone():%H:%M:%S}"
        return "Waiting for the first heartbeat"

    @property
    def counters_line(self) -> str:
        line = f"Sent today: {self.sent_today} · Queued: {self.queued}"
        return f"{line} · Missed: {self.missed}" if self.missed else line


def notification_for(before: Snapshot, after: Snapshot) -> tuple[str, str] | None:
    """A desktop notification only on a change of state, never per beat."""
    if after.health is Health.KEY_REJECTED and before.health is not Health.KEY_REJECTED:
        return ("PostHog rejected the API key", f"{after.last_failure}. Open Settings to fix it.")
    if before.consecutive_failures < NOTIFY_AFTER_FAILURES <= after.consecutive_failures:
        return ("Heartbeat failing", after.status_line)
    if before.consecutive_failures >= NOTIFY_AFTER_FAILURES and after.consecutive_failures == 0:
        return ("Heartbeat recovered", "PostHog accepts the heartbeat again.")
    return None


Listener = Callable[[Snapshot], None]


class AppState:
    """Holds the latest snapshot; the ticker updates it, subscribers are told of each change.

    Listeners are called on the updating thread: a UI must hand the snapshot to its own thread.
    """

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = initial or Snapshot()
        self._listeners: list[Listener] = []

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def update(self, **changes: Any) -> Snapshot:
        with self._lock:
            new = replace(self._snapshot, **changes)
            if new == self._snapshot:
                return new
            self._snapshot = new
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(new)
            except Exception:
                log.exception("A state listener failed")
        return new
