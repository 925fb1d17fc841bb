"""The durable outbox: every beat is written here before it is sent, removed once accepted."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heartbeat_tray.core.event import BeatTemplate
from heartbeat_tray.core.state_file import (
    BUSY_TIMEOUT,
    Meta,
    all_meta,
    in_memory,
    open_for_writing,
    open_read_only,
    read_meta,
    write_meta,
)

log = logging.getLogger(__name__)

MAX_BEATS = 20_000
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_BATCH_BYTES = 4 * 1024 * 1024  # PostHog SDKs stay under 5 MiB per request; keep a margin
OPEN_ATTEMPTS = 6  # a lock held longer (a backup tool, an sqlite3 shell) is waited out ~30 s


# Only these mean the file itself is damaged; "locked", "unable to open", "disk I/O error" or
# "readonly" are about this moment or this machine, and a healthy file must never be set aside.
_CORRUPT = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


def is_corrupt(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _CORRUPT or "malformed" in str(exc)


@dataclass(frozen=True)
class QueuedBeat:
    id: int
    uuid: str
    created_at: float  # the beat's own wall-clock time, seconds since the epoch
    payload: str  # the event as JSON, frozen when the beat was made

    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.payload)
        return result


def _payload(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


class Outbox:
    """SQLite in WAL mode with full sync: survives kill -9 and power loss at any moment.

    When the file cannot be written (a full disk, a read-only folder), the outbox still opens
    (read-only, or in memory as a last resort) so that queued beats are delivered and live
    beats sent; ``Ticker`` says that beats are not being kept, and ``reopen`` recovers.
    """

    def __init__(self, path: Path, *, now: datetime | None = None) -> None:
        self.path = path
        self._now = now
        self.writable = True
        self._unkept_sequence = 0
        self._db = self._open_for_writing()

    def _open_for_writing(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            log.error("Cannot create the state folder %s: %s", self.path.parent, exc)
            return self._fallback()
        for attempt in range(OPEN_ATTEMPTS):
            try:
                db = open_for_writing(self.path)
                self.writable = True
                return db
            except sqlite3.Error as exc:
                if is_corrupt(exc):
                    self._set_aside(exc)
                    continue
                if "locked" in str(exc) and attempt < OPEN_ATTEMPTS - 1:
                    log.info("The outbox is locked by another process; waiting")
                    continue  # each try already waited BUSY_TIMEOUT
                log.error("Cannot open the outbox %s for writing: %s", self.path, exc)
                return self._fallback()
        return self._fallback()

    def _fallback(self) -> sqlite3.Connection:
        """Read what is queued if the file can be read; else keep beats in memory only."""
        self.writable = False
        if self.path.exists():
            try:
                db = sqlite3.connect(
                    f"{self.path.as_uri()}?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.execute("SELECT count(*) FROM beats").fetchone()
                return db
            except sqlite3.Error as exc:
                log.error("Cannot read the outbox %s either: %s", self.path, exc)
        return in_memory()

    def reopen(self) -> bool:
        """Try the file again after a failure to write it; True when it is writable now."""
        if self.writable:
            return True
        db = self._open_for_writing()
        if not self.writable:
            db.close()
            return False
        self._db.close()
        self._db = db
        log.info("The outbox %s is writable again", self.path)
        return True

    def _set_aside(self, exc: sqlite3.Error) -> None:
        stamp = (self._now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        log.error("Outbox %s is damaged (%s); moved to %s, starting empty", self.path, exc, aside)
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            sidecar = self.path.with_name(self.path.name + suffix)
            if sidecar.exists():
                sidecar.rename(aside.with_name(aside.name + suffix))

    def close(self) -> None:
        self._db.close()

    # --- beats ---

    def add(self, uuid: str, created_at: float, template: BeatTemplate) -> QueuedBeat:
        """Store a new beat with the next sequence number, in one transaction."""
        if not self.writable and not self.reopen():
            raise sqlite3.OperationalError("attempt to write a readonly database")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            sequence = self._bump_sequence()
            payload = _payload(
                template.build(uuid=uuid, timestamp=_utc(created_at), sequence=sequence)
            )
            cur = self._db.execute(
                "INSERT INTO beats (uuid, created_at, payload) VALUES (?, ?, ?)",
                (uuid, created_at, payload),
            )
        return QueuedBeat(int(cur.lastrowid or 0), uuid, created_at, payload)

    def unkept_beat(self, uuid: str, created_at: float, template: BeatTemplate) -> QueuedBeat:
        """A beat that could not be stored: sent once, best effort, with a sequence that goes on."""
        if not self._unkept_sequence:
            try:
                self._unkept_sequence = int(self.read_meta(Meta.SEQUENCE) or 0)
            except sqlite3.Error:
                self._unkept_sequence = 0
        self._unkept_sequence += 1
        event = template.build(
            uuid=uuid, timestamp=_utc(created_at), sequence=self._unkept_sequence
        )
        return QueuedBeat(0, uuid, created_at, _payload(event))

    def oldest(
        self, limit: int, max_bytes: int = MAX_BATCH_BYTES, skip: Collection[str] = ()
    ) -> list[QueuedBeat]:
        """The oldest queued beats, leaving out ``skip`` (accepted, but not yet removed)."""
        rows = self._db.execute(
            "SELECT id, uuid, created_at, payload FROM beats ORDER BY created_at, id LIMIT ?",
            (limit + len(skip),),
        ).fetchall()
        batch: list[QueuedBeat] = []
        size = 0
        for row in rows:
            beat = QueuedBeat(*row)
            if beat.uuid in skip:
                continue
            if len(batch) == limit:
                break
            size += len(beat.payload) + 1
            if batch and size > max_bytes:
                break
            batch.append(beat)
        return batch

    def settle(self, uuids: Iterable[str], facts: Mapping[Meta, Any]) -> None:
        """Remove delivered (or refused) beats and record facts, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM beats WHERE uuid = ?", [(u,) for u in uuids])
            write_meta(self._db, facts)

    def count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM beats").fetchone()
        return int(n)

    def drop_created_before(self, cutoff: float, keep: Sequence[str] = ()) -> int:
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
        last = read_meta(self._db, Meta.SEQUENCE)
        # After beats sent unkept (a full disk), the numbering goes on from theirs.
        value = max(int(last) + 1 if last else 1, self._unkept_sequence + 1)
        write_meta(self._db, {Meta.SEQUENCE: value})
        return value

    def read_meta(self, key: Meta) -> Any:
        return read_meta(self._db, key)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def read_only_view(path: Path) -> OutboxView:
    """For ``status``: reads the outbox without creating, locking for writing or moving it."""
    return OutboxView(path)


class OutboxView:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[int, dict[Meta, Any]]:
        """(queued beats, meta rows); raises sqlite3.Error when the file cannot be read."""
        if not self.path.exists():
            return 0, {}
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                db = open_read_only(self.path)
                try:
                    (count,) = db.execute("SELECT count(*) FROM beats").fetchone()
                    meta = all_meta(db)
                finally:
                    db.close()
                return int(count), meta
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
