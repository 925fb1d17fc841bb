"""Times as the state file, ``status --json``, webhooks and PostHog write them: ISO 8601 in
UTC with a ``Z``. One writer and one reader, so every place agrees on the format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime:
    """An ISO-8601 time (``…Z``, ``…+01:00`` or naive, taken as UTC) as an aware UTC datetime;
    ValueError when it is not one."""
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_iso_or_none(value: Any) -> datetime | None:
    """A stored time, or None for a missing or unreadable one (a file another version wrote)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None
