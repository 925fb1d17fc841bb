"""Exponential backoff with jitter for retries of queued beats."""

from __future__ import annotations

import random
from collections.abc import Callable

MIN_DELAY = 1.0  # never retry faster than once a second
MAX_DELAY = 300.0


def retry_delay(failures: int, random_fraction: Callable[[], float] = random.random) -> float:
    """Delay before the next retry after ``failures`` consecutive failures (1, 2, …).

    Doubles from 2 s up to 5 minutes, each delay drawn from its upper half so that many
    machines recovering from the same outage do not retry in lockstep.
    """
    ceiling = min(MAX_DELAY, MIN_DELAY * 2.0 ** min(max(1, failures), 16))
    return max(MIN_DELAY, ceiling * (0.5 + 0.5 * random_fraction()))
