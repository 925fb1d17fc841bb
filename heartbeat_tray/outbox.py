"""The durable outbox: every beat is written here before it is sent, removed once accepted."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_BEATS = 20_000
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_BATCH_BYTES = 4 * 1024 * 1024  # PostHog SDKs stay under 5 MiB per request; keep a margin

_SCHEMA = """
CREATE TABLE IF NOT EXISTS beats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class QueuedBeat:
    id: int
    uuid: str
    created_at: float  # the beat's own wall-clock time, seconds since the epoch
    payload: str  # the event as JSON, frozen when the beat was made

    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.payload)
        return result


class Outbox:
    """SQLite in WAL mode with full sync: survives kill -9 and power loss at any moment."""

    def __init__(self, path: Path, *, now: datetime | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
            aside = path.with_name(f"{path.name}.bad-{stamp}")
            log.error("Outbox %s is unreadable (%s); moved to %s, starting empty", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                sidecar = path.with_name(path.name + suffix)
                if sidecar.exists():
                    sidecar.rename(aside.with_name(aside.name + suffix))
            self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM beats").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    # --- beats ---

    def add(
        self, uuid: str, created_at: float, make_event: Callable[[int], dict[str, Any]]
    ) -> None:
        """Store a new beat; ``make_event`` gets the next sequence number, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            sequence = self._bump_sequence()
            payload = json.dumps(make_event(sequence), separators=(",", ":"))
            self._db.execute(
                "INSERT INTO beats (uuid, created_at, payload) VALUES (?, ?, ?)",
                (uuid, created_at, payload),
            )

    def oldest(self, limit: int, max_bytes: int = MAX_BATCH_BYTES) -> list[QueuedBeat]:
        rows = self._db.execute(
            "SELECT id, uuid, created_at, payload FROM beats ORDER BY created_at, id LIMIT ?",
            (limit,),
        ).fetchall()
        batch: list[QueuedBeat] = []
        size = 0
        for row in rows:
            beat = QueuedBeat(*row)
            size += len(beat.payload) + 1
            if batch and size > max_bytes:
                break
            batch.append(beat)
        return batch

    def get(self, uuids: Sequence[str]) -> list[QueuedBeat]:
        marks = ",".join("?" * len(uuids))
        rows = self._db.execute(
            f"SELECT id, uuid, created_at, payload FROM beats WHERE uuid IN ({marks}) "
            "ORDER BY created_at, id",
            list(uuids),
        ).fetchall()
        return [QueuedBeat(*row) for row in rows]

    def settle(self, uuids: Iterable[str], facts: Mapping[str, Any]) -> None:
        """Remove delivered (or refused) beats and record facts, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM beats WHERE uuid = ?", [(u,) for u in uuids])
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in facts.items()],
            )

    def count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM beats").fetchone()
        return int(n)

    def drop_created_before(self, cutoff: float, keep: Iterable[str] = ()) -> int:
        """Remove beats older than ``cutoff`` (wall seconds), except those in ``keep``."""
        kept = list(keep)
        marks = ",".join("?" * len(kept))
        clause = f" AND uuid NOT IN ({marks})" if kept else ""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                f"DELETE FROM beats WHERE created_at < ?{clause}", [cutoff, *kept]
            )
        return cur.rowcount

    def trim_to(self, max_beats: int) -> int:
        """Drop the oldest beats beyond ``max_beats``; returns how many were dropped."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "DELETE FROM beats WHERE id IN (SELECT id FROM beats "
                "ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)",
                (max_beats,),
            )
        return cur.rowcount

    # --- small persistent facts: the sequence counter, counters, the last outcome ---

    def next_sequence(self) -> int:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return self._bump_sequence()

    def _bump_sequence(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
        value = int(row[0]) + 1 if row else 1
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('sequence', ?)", (str(value),)
        )
        return value

    def read_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def write_meta(self, key: str, value: Any) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )
