"""When beats are due: a fixed grid ``t0 + k·interval`` on the monotonic clock.

No drift however long it runs, and a slow request never pushes the next beat later. After a
suspend (or a stopped process) one beat is due at once and the grid re-anchors; beats for the
time asleep are not invented.
"""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger(__name__)


class Schedule:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_due: float | None = None  # None: stopped (disabled)
        self._last_mono: float | None = None
        self._last_wall: datetime | None = None

    @property
    def running(self) -> bool:
        return self.next_due is not None

    def start(self, now: float) -> None:
        """Enabling beats at once, on a new grid."""
        self.next_due = now

    def stop(self) -> None:
        self.next_due = None

    def set_interval(self, interval: float, now: float) -> None:
        if interval != self.interval:
            self.interval = interval
            if self.running:
                self.next_due = now + interval
                log.info("Interval is now %g s; grid re-anchored", interval)

    def observe(self, now: float, wall: datetime) -> None:
        """Notice a suspend: the monotonic clock stood still while wall time went on."""
        last_mono, last_wall = self._last_mono, self._last_wall
        self._last_mono, self._last_wall = now, wall
        if last_mono is None or last_wall is None or not self.running:
            return
        slept = (wall - last_wall).total_seconds() - (now - last_mono)
        if slept > max(self.interval, 2.0):
            log.info("The machine slept for about %.0f s; one beat now and a new grid", slept)
            self.next_due = now

    def take_due(self, now: float) -> bool:
        """True when a beat is due now; the grid then moves on by one interval."""
        if self.next_due is None or now < self.next_due:
            return False
        if now - self.next_due >= self.interval:
            skipped = int((now - self.next_due) // self.interval)
            log.info("Woke %d interval(s) late; one beat now and a new grid", skipped)
            self.next_due = now
        self.next_due += self.interval
        return True
