"""The last 24 hours of the ingestion check, as the History window and ``history --png`` draw
it: each live beat's lag, the beats proven lost, the incidents, the p95 and the slow threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from heartbeat_tray.core.ingestion_status import LAG_WINDOWS
from heartbeat_tray.ingestion.rules import rank

HISTORY_SECONDS = max(seconds for _name, seconds in LAG_WINDOWS)  # what the state file keeps


@dataclass(frozen=True)
class Span:
    kind: str  # "not_ingested" or "slow"
    start: datetime
    end: datetime | None  # None: still open


@dataclass(frozen=True)
class History:
    now: datetime
    lags: Sequence[tuple[datetime, float]] = ()  # (the beat's own time, its lag)
    lost: Sequence[datetime] = ()  # the own time of each beat proven lost
    incidents: Sequence[Span] = ()
    slow_after_seconds: int = 0  # 0: the slow check is off
    host: str = ""
    hours: int = HISTORY_SECONDS // 3600

    @property
    def start(self) -> datetime:
        return self.now - timedelta(hours=self.hours)

    def p95(self) -> float | None:
        lags = sorted(lag for when, lag in self.lags if when > self.start)
        return rank(lags, 0.95) if lags else None

    def hourly_p95(self) -> list[tuple[datetime, datetime, float]]:
        """The p95 of each hour that holds a beat: the line drawn over the points."""
        found = []
        for hour in range(self.hours):
            start = self.start + timedelta(hours=hour)
            end = start + timedelta(hours=1)
            lags = sorted(lag for when, lag in self.lags if start < when <= end)
            if lags:
                found.append((start, end, rank(lags, 0.95)))
        return found
