"""The state file's one owner: its schema, its versioned migrations, how a connection to it is
opened, and typed access to its meta rows.

Every part that keeps state opens its own connection here (the outbox for the ticker's thread,
the ingestion store for the poller's, the ledger for accepted beats, ``status`` read-only); none
of them declares a table. A file an earlier release wrote is brought up to ``SCHEMA_VERSION``
in one transaction when it is opened, keeping every row; a file of a newer release (a higher
``user_version``) is used as it is, since every migration only adds.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

BUSY_TIMEOUT = 5.0  # another process holding a write lock for a moment is waited out

# The tables as release 0.1.0 created them; the migrations below add to them.
BASE_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS accepted (
    uuid TEXT PRIMARY KEY,
    beat_time REAL NOT NULL,
    accepted_at REAL NOT NULL,
    live INTEGER NOT NULL,
    verdict TEXT
);
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_try REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0
);
"""


def _monotonic_acceptance(db: sqlite3.Connection) -> None:
    """1: the ingestion ledger orders and ages beats on the monotonic clock of their run."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(accepted)")}
    if "accepted_mono" not in columns:
        db.execute("ALTER TABLE accepted ADD COLUMN accepted_mono REAL")
    if "run_id" not in columns:
        db.execute("ALTER TABLE accepted ADD COLUMN run_id TEXT")


def _lag_history(db: sqlite3.Connection) -> None:
    """2: the lags of live beats and the marks (lost beats, incidents) the history shows.
    They were created before without a version: a file at version 1 may have them already."""
    # One statement at a time: executescript would commit the migration's transaction.
    db.execute(
        "CREATE TABLE IF NOT EXISTS lags (uuid TEXT PRIMARY KEY, beat_time REAL NOT NULL, "
        "lag REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS marks (uuid TEXT, kind TEXT NOT NULL, at REAL NOT NULL, "
        "until REAL)"
    )


# In order; each runs once on a file whose user_version is below its number.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (1, _monotonic_acceptance),
    (2, _lag_history),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(db: sqlite3.Connection) -> int:
    """Bring the file up to this release's schema, keeping every row; its version after."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version >= SCHEMA_VERSION:
        return int(version)
    db.execute("BEGIN IMMEDIATE")
    try:
        for number, step in MIGRATIONS:
            if version < number:
                step(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def create_schema(db: sqlite3.Connection) -> None:
    """The whole schema on a connection (a file, or memory when no file can be used)."""
    db.executescript(BASE_SCHEMA)
    migrate(db)


def open_for_writing(path: Path) -> sqlite3.Connection:
    """A connection that survives kill -9 and power loss (WAL, full sync), schema up to date.
    Raises sqlite3.Error when the file cannot be opened so (locked, damaged, read-only)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        create_schema(db)
        db.execute("SELECT count(*) FROM beats").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def in_memory() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    create_schema(db)
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """For ``status`` and ``history``: nothing created, locked for writing or migrated."""
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)


class Meta(enum.Enum):
    """The meta rows: small facts kept as JSON, one row each."""

    SEQUENCE = "sequence"  # the last beat's sequence number
    MISSED = "missed"
    SENT_TODAY = "sent_today"  # [local date, count]
    LAST_OUTCOME = "last_outcome"
    LAST_ACCEPTED = "last_accepted"
    HOLD_UNTIL = "hold_until"  # Retry-After in force until then
    INGESTION_STATUS = "ingestion_status"
    INGESTION_LOST = "ingestion_lost"
    INGESTION_PROJECT = "ingestion_project"  # the project found for a host and key
    NOT_INGESTED_INCIDENT = "ingestion_incident"
    SLOW_INCIDENT = "slow_incident"


def read_meta(db: sqlite3.Connection, key: Meta) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key.value,)).fetchone()
    return json.loads(row[0]) if row else None


def write_meta(db: sqlite3.Connection, facts: Mapping[Meta, Any]) -> None:
    """Inside the caller's transaction."""
    db.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [(key.value, json.dumps(value)) for key, value in facts.items()],
    )


def all_meta(db: sqlite3.Connection) -> dict[Meta, Any]:
    """Every meta row this release knows (a newer release's rows are left out)."""
    known = {key.value: key for key in Meta}
    return {
        known[k]: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta") if k in known
    }
