"""The counters that outlive a restart, as one typed record kept beside the beats.

The outbox's ``meta`` table holds them; this module is the only one that knows their keys and
shapes, and the day rollover of "sent today" is written here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.state_file import Meta
from heartbeat_tray.core.timefmt import iso_utc, parse_iso, parse_iso_or_none


def local_day(wall: datetime) -> str:
    return wall.astimezone().date().isoformat()


@dataclass(frozen=True)
class Outcome:
    """PostHog's last answer, in words a person reads."""

    time: datetime
    verdict: str  # for scripts: "accepted", "transient", "rejected-key", "wrong-host", …
    words: str  # "accepted", "not accepted, will retry", "API key rejected", …
    reason: str  # "200 OK", "503 Service Unavailable", "connection refused"
    live: bool

    def sentence(self) -> str:
        when = self.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        what = "a live beat" if self.live else "queued beats"
        return f"{self.words} ({self.reason}) for {what} at {when}"

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso_utc(self.time),
            "verdict": self.verdict,
            "words": self.words,
            "reason": self.reason,
            "live": self.live,
        }

    @classmethod
    def from_json(cls, data: Any) -> Outcome | None:
        try:
            return cls(
                parse_iso(data["time"]),
                str(data["verdict"]),
                str(data["words"]),
                str(data["reason"]),
                bool(data["live"]),
            )
        except (KeyError, TypeError, ValueError):
            return None  # written by an older version: not worth a crash


@dataclass(frozen=True)
class Stats:
    missed: int = 0  # beats dropped: backfill off, outbox bounds, or refused (400)
    sent_day: str = ""  # local date of sent_count
    sent_count: int = 0
    last_outcome: Outcome | None = None
    last_accepted: datetime | None = None
    hold_until: datetime | None = None  # PostHog's Retry-After holds every request until then

    def sent_today(self, wall: datetime) -> int:
        return self.sent_count if self.sent_day == local_day(wall) else 0

    def with_sent(self, n: int, wall: datetime) -> Stats:
        day = local_day(wall)
        return replace(self, sent_day=day, sent_count=self.sent_today(wall) + n, last_accepted=wall)

    def with_missed(self, n: int) -> Stats:
        return replace(self, missed=self.missed + n)


def stats_from_meta(read: Callable[[Meta], Any]) -> Stats:
    """Stats from the meta rows (``read(key)``: the row's JSON value, or None)."""
    try:
        today = read(Meta.SENT_TODAY) or ["", 0]
        last_accepted = read(Meta.LAST_ACCEPTED)
        return Stats(
            missed=int(read(Meta.MISSED) or 0),
            sent_day=str(today[0]),
            sent_count=int(today[1]),
            last_outcome=Outcome.from_json(read(Meta.LAST_OUTCOME)),
            last_accepted=parse_iso_or_none(last_accepted),
            hold_until=parse_iso_or_none(read(Meta.HOLD_UNTIL)),
        )
    except (TypeError, ValueError, IndexError):
        return Stats()  # rows of an older version: start the counters afresh


class StatsStore:
    """Reads and writes ``Stats`` in the outbox's meta table (same file, same transactions)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def load(self) -> Stats:
        return stats_from_meta(self._outbox.read_meta)

    @staticmethod
    def facts(stats: Stats) -> dict[Meta, Any]:
        """The meta rows for ``Outbox.settle``: one transaction with the beats it removes."""
        return {
            Meta.MISSED: stats.missed,
            Meta.SENT_TODAY: [stats.sent_day, stats.sent_count],
            Meta.LAST_OUTCOME: stats.last_outcome.to_json() if stats.last_outcome else None,
            Meta.LAST_ACCEPTED: iso_utc(stats.last_accepted) if stats.last_accepted else None,
            Meta.HOLD_UNTIL: iso_utc(stats.hold_until) if stats.hold_until else None,
        }

    def save(self, stats: Stats) -> None:
        self._outbox.settle((), self.facts(stats))
