"""Time as the ticker sees it: a monotonic clock for the grid, a wall clock for timestamps."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

# This process's run: monotonic readings recorded under it are comparable with each other (and
# with the clock now), never with another run's.
RUN_ID = str(uuid.uuid4())


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (and stops while the machine sleeps)."""

    def wall(self) -> datetime:
        """Now, as an aware UTC datetime."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)
