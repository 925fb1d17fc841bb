"""Counts since this process started, for the metrics endpoint: counters in Prometheus's sense
(they only grow; a restart starts them at zero, which Prometheus reads as a reset).

The workers keep them and publish them in the snapshot; the metrics presenter only reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

# Lag buckets, in seconds: PostHog's lag gauge has 60 s error bars and its pipeline target is
# 30 s p95, so the buckets are dense from 1 s to 2 min and then reach the 1 h an incident takes.
LAG_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class BeatTally:
    made: int = 0  # beats created on the grid (or by "send now")
    accepted: int = 0  # beats PostHog accepted (2xx)
    refused: int = 0  # beats PostHog refused for good (400): dropped
    missed: int = 0  # beats dropped unsent: backfill off, older than 7 days, outbox full

    def add(self, **counts: int) -> BeatTally:
        return replace(self, **{k: getattr(self, k) + v for k, v in counts.items() if v})


@dataclass(frozen=True)
class LagHistogram:
    """Each live beat's lag observed once: per-bucket counts (the last one is +Inf)."""

    counts: tuple[int, ...] = (0,) * (len(LAG_BUCKETS) + 1)
    total: float = 0.0
    n: int = 0

    def observe(self, lags: Iterable[float]) -> LagHistogram:
        counts = list(self.counts)
        total, n = self.total, self.n
        for lag in lags:
            lag = max(0.0, lag)
            counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
            total += lag
            n += 1
        return LagHistogram(tuple(counts), total, n)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count of lags at or below it), as the text format writes them."""
        running, rows = 0, []
        for bound, count in zip((*LAG_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            rows.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        return rows


@dataclass(frozen=True)
class CheckTally:
    lags: LagHistogram = field(default_factory=LagHistogram)
    lost: int = 0  # beats newly proven lost
    incidents: Mapping[str, int] = field(default_factory=dict)  # kind → opened

    def opened(self, kind: str) -> CheckTally:
        return replace(self, incidents={**self.incidents, kind: self.incidents.get(kind, 0) + 1})
