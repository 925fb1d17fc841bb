"""What the app is doing, as one immutable snapshot that presenters subscribe to.

Data flows one way: workers (the ticker) update the state; presenters (the tray, the log lines
of ``run``, alert rules) read snapshots. Nothing here knows about a toolkit.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from heartbeat_tray.core.ingestion_status import IngestionState, IngestionStatus
from heartbeat_tray.core.tally import BeatTally, CheckTally

log = logging.getLogger(__name__)


class Health(enum.Enum):
    NEEDS_SETUP = "needs-setup"  # no key, the keyring cannot be read, or a broken settings file
    DISABLED = "disabled"
    HEALTHY = "healthy"  # enabled, last attempt accepted (or none yet)
    FAILING = "failing"  # enabled, the last attempt failed
    KEY_REJECTED = "key-rejected"  # 401/403: nothing is sent until the settings change
    WRONG_HOST = "wrong-host"  # 3xx/404/405: only live beats go until one is accepted


@dataclass(frozen=True)
class Snapshot:
    health: Health = Health.HEALTHY
    enabled: bool = True
    host: str = ""
    last_accepted: datetime | None = None
    consecutive_failures: int = 0
    last_failure: str | None = None
    hold_until: datetime | None = None  # Retry-After in force until then
    sent_today: int = 0
    queued: int = 0
    missed: int = 0  # beats dropped: backfill off, outbox bounds, or rejected (400)
    accepted_live: int = 0  # grows by one per accepted live beat: the tray pulses on it
    setup_problem: str | None = None  # why the app needs setup (no key, keyring, settings file)
    keyring_locked: bool = False  # the keyring could not be read: a dialog could not store a key
    settings_problem: str | None = None  # a reload found a broken file: last good settings kept
    storage_problem: str | None = None  # beats cannot be kept on disk (full, read-only)
    ingestion: IngestionStatus = field(default_factory=IngestionStatus)
    beats: BeatTally = field(default_factory=BeatTally)  # since start: for the metrics
    checks: CheckTally = field(default_factory=CheckTally)  # likewise

    @property
    def not_ingested(self) -> bool:
        """Accepted, but PostHog does not store the beats (an ingestion incident)."""
        return self.ingestion.state is IngestionState.FAILING

    @property
    def ingestion_slow(self) -> bool:
        """Stored, but slowly: a slow incident is open (spec §10.1)."""
        return self.ingestion.state is IngestionState.SLOW

    @property
    def status_line(self) -> str:
        """The one line that matters most now: the tooltip, the menu, ``status``."""
        if self.health is Health.NEEDS_SETUP:
            return self.setup_problem or "No API key — open Settings"
        if self.health is Health.KEY_REJECTED:
            return f"API key rejected ({self.last_failure}) — open Settings"
        if self.health is Health.WRONG_HOST:
            return f"PostHog at {self.host} answered {self.last_failure} — check the host"
        if self.storage_problem:
            return self.storage_problem
        if self.hold_until is not None:
            return f"Rate limited: waiting until {self.hold_until.astimezone():%H:%M:%S}"
        if self.health is Health.FAILING:
            return f"Failing: {self.last_failure} ({self.consecutive_failures} in a row)"
        if self.settings_problem:
            return f"Kept the last good settings: {self.settings_problem}"
        if self.health is Health.DISABLED:
            return "Disabled"
        if self.not_ingested or self.ingestion_slow:
            return self.ingestion.sentence
        if self.last_accepted is not None:
            return f"Last accepted {self.last_accepted.astimezone():%H:%M:%S}"
        return "Waiting for the first heartbeat"

    @property
    def counters_line(self) -> str:
        line = f"Sent today: {self.sent_today} · Queued: {self.queued}"
        return f"{line} · Missed: {self.missed}" if self.missed else line

    @property
    def needs_setup(self) -> bool:
        return self.health is Health.NEEDS_SETUP


Listener = Callable[[Snapshot], None]


class AppState:
    """Holds the latest snapshot; the ticker updates it, subscribers are told of each change.

    Listeners are called on the updating thread: a UI must hand the snapshot to its own thread.
    """

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = initial or Snapshot()
        self._listeners: list[Callable[[Snapshot, Snapshot], None]] = []

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def subscribe(self, listener: Listener) -> None:
        self.subscribe_changes(lambda _before, after: listener(after))

    def subscribe_changes(self, listener: Callable[[Snapshot, Snapshot], None]) -> None:
        """``listener(before, after)`` on every change, in order, on the updating thread."""
        with self._lock:
            self._listeners.append(listener)

    def update(self, **changes: Any) -> Snapshot:
        with self._lock:
            before = self._snapshot
            new = replace(before, **changes)
            if new == before:
                return new
            self._snapshot = new
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(before, new)
            except Exception:
                log.exception("A state listener failed")
        return new
