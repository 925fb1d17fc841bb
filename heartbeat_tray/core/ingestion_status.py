"""What the ingestion check found, as every surface shows it: the app state, the tray,
``status`` and the metrics read these values; the ``ingestion`` package computes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class IngestionState(enum.Enum):
    OFF = "off"
    WAITING = "waiting"
    OK = "ok"
    FAILING = "failing"
    SLOW = "slow"  # stored, but the window's p95 lag is over the slow threshold
    ERROR = "error"


LAG_WINDOWS = (("1h", 3600), ("24h", 86400))  # spec §10.1: over the last hour and 24 hours


@dataclass(frozen=True)
class LagWindow:
    """The lags of the live beats stored in one window: nearest-rank percentiles."""

    name: str
    p50: float
    p95: float
    max: float
    n: int


@dataclass(frozen=True)
class IngestionStatus:
    """What every surface shows of the check (the tray line, ``status``, ``status --json``)."""

    state: IngestionState = IngestionState.OFF
    sentence: str = "Ingestion not checked — add a personal API key in Settings"
    lag_seconds: float | None = None
    lag_median_seconds: float | None = None
    last_ingested: datetime | None = None
    last_check: datetime | None = None
    lost: int = 0
    incident_since: datetime | None = None
    project_id: int | None = None
    lag_windows: tuple[LagWindow, ...] = ()

    def window(self, name: str) -> LagWindow | None:
        return next((w for w in self.lag_windows if w.name == name), None)


class IncidentKind(enum.Enum):
    """What an incident is about: in its webhooks (``kind``), the history and the metrics."""

    NOT_INGESTED = "not_ingested"  # accepted beats not stored (or far behind)
    SLOW = "slow"  # stored, but the p95 lag is over the slow threshold
