"""The heartbeat event, exactly as PostHog receives it (the README lists its fields)."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heartbeat_tray import __version__
from heartbeat_tray.core.timefmt import iso_utc

LIB = "heartbeat-tray"

# Properties every beat carries; an extra property may not replace them.
BEAT_PROPERTIES = frozenset(
    {
        "$lib",
        "$lib_version",
        "$process_person_profile",
        "$geoip_disable",
        "$os",
        "interval_seconds",
        "sequence",
    }
)


def os_name() -> str:
    if sys.platform.startswith("win"):
        return "Windows"
    if sys.platform == "darwin":
        return "Mac OS X"  # the value PostHog's own SDKs send
    return platform.system() or sys.platform


def build_event(
    *,
    event: str,
    distinct_id: str,
    uuid: str,
    timestamp: datetime,
    sequence: int,
    interval_seconds: int,
    extra_properties: Mapping[str, Any],
) -> dict[str, Any]:
    properties: dict[str, Any] = dict(extra_properties)
    properties.update(
        {
            "$lib": LIB,
            "$lib_version": __version__,
            "$process_person_profile": False,
            "$geoip_disable": True,
            "$os": os_name(),
            "interval_seconds": interval_seconds,
            "sequence": sequence,
        }
    )
    return {
        "event": event,
        "distinct_id": distinct_id,
        "uuid": uuid,
        "timestamp": iso_utc(timestamp),
        "properties": properties,
    }


@dataclass(frozen=True)
class BeatTemplate:
    """What every beat of one configuration shares; ``build`` adds what makes each one unique."""

    event: str
    distinct_id: str
    interval_seconds: int
    properties: Mapping[str, Any]

    def build(self, *, uuid: str, timestamp: datetime, sequence: int) -> dict[str, Any]:
        return build_event(
            event=self.event,
            distinct_id=self.distinct_id,
            uuid=uuid,
            timestamp=timestamp,
            sequence=sequence,
            interval_seconds=self.interval_seconds,
            extra_properties=self.properties,
        )
