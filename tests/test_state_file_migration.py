"""A state file written by the previous release opens in this one with every beat kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from heartbeat_tray.core.outbox import SCHEMA_VERSION, Outbox
from heartbeat_tray.ingestion.store import IngestionStore

# The schema of release 0.1.0 (before the ledger kept monotonic acceptance times).
PREVIOUS = """
CREATE TABLE beats (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accepted (uuid TEXT PRIMARY KEY, beat_time REAL NOT NULL,
    accepted_at REAL NOT NULL, live INTEGER NOT NULL, verdict TEXT);
CREATE TABLE webhooks (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,
    created_at REAL NOT NULL, next_try REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0);
"""


def test_a_file_of_the_previous_release_migrates_without_losing_a_beat(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(PREVIOUS)
    old.executemany(
        "INSERT INTO beats (uuid, created_at, payload) VALUES (?, ?, ?)",
        [(f"q{n}", 1000.0 + n, '{"event": "heartbeat"}') for n in range(50)],
    )
    old.executemany(
        "INSERT INTO accepted (uuid, beat_time, accepted_at, live, verdict) VALUES (?,?,?,?,?)",
        [(f"a{n}", 900.0 + n, 900.5 + n, 1, "ingested" if n % 2 else None) for n in range(30)],
    )
    old.execute("INSERT INTO meta (key, value) VALUES ('sequence', '80')")
    old.commit()
    old.close()

    outbox = Outbox(path)
    assert outbox.count() == 50  # every queued beat
    assert [b.uuid for b in outbox.oldest(100)] == [f"q{n}" for n in range(50)]
    assert outbox.next_sequence() == 81
    outbox.settle([], {}, [("new", 2000.0, 2000.1, True, 5.0, "run")])  # the new columns work
    (version,) = outbox._db.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
    outbox.close()
    store = IngestionStore(path)
    ledger = store.ledger()
    assert len(ledger) == 31 and {b.uuid for b in ledger} >= {f"a{n}" for n in range(30)}
    assert all(b.mono is None for b in ledger)  # none of this run: ordered by their own time
    store.close()
    Outbox(path).close()  # opening it again changes nothing
