"""A state file an earlier release wrote opens in this one with every beat and fact kept."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from heartbeat_tray.core.ingestion_status import IncidentKind
from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.ports import AcceptedBeat
from heartbeat_tray.core.state_file import SCHEMA_VERSION, Meta
from heartbeat_tray.core.stats import StatsStore
from heartbeat_tray.ingestion.rules import query_window
from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore, read_history

DATA = Path(__file__).parent / "data"

# The schema of the first files (before the ledger kept monotonic acceptance times).
FIRST = """
CREATE TABLE beats (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accepted (uuid TEXT PRIMARY KEY, beat_time REAL NOT NULL,
    accepted_at REAL NOT NULL, live INTEGER NOT NULL, verdict TEXT);
CREATE TABLE webhooks (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,
    created_at REAL NOT NULL, next_try REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0);
"""


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        return int(version)
    finally:
        db.close()


def test_a_file_written_by_the_last_release_migrates_without_losing_a_beat(
    tmp_path: Path,
) -> None:
    """tests/data/state-0.1.0.sqlite3 was written by release 0.1.0 (commit 965761c) through
    its own Outbox and IngestionStore: 40 queued beats, 30 in the ledger (15 ingested, 1
    lost), 15 lags, a lost mark, an open slow incident with its webhook, the counters."""
    path = tmp_path / "outbox.sqlite3"
    shutil.copy(DATA / "state-0.1.0.sqlite3", path)
    assert user_version(path) == 1

    outbox = Outbox(path)
    assert outbox.writable
    assert [b.uuid for b in outbox.oldest(100)] == [f"queued-{n:02d}" for n in range(40)]
    assert outbox.next_sequence() == 41  # the numbering goes on
    stats = StatsStore(outbox).load()
    assert (stats.missed, stats.sent_count, stats.sent_day) == (3, 30, "2026-11-30")
    assert stats.last_outcome is not None and stats.last_outcome.reason == "200 OK"
    outbox.close()
    assert user_version(path) == SCHEMA_VERSION

    store = IngestionStore(path)
    ledger = store.ledger()
    assert sorted(b.uuid for b in ledger) == [f"acc-{n:02d}" for n in range(30)]
    assert all(b.mono is None for b in ledger)  # another run's clock: ordered by their time
    assert store.lost() == 1
    slow = store.incident(IncidentKind.SLOW)
    assert slow is not None and slow.id == "slow-incident-1" and slow.triggered_sent
    assert store.incident(IncidentKind.NOT_INGESTED) is None
    assert [h.body["status"] for h in store.pending_webhooks()] == ["slow"]
    assert store.cached_project("https://us.posthog.com|abc") == 4242
    assert len(store.lag_uuids()) == 15
    store.close()

    # New rows go in beside the old ones.
    ledger_file = AcceptedLedger(path, lambda: query_window(300))
    ledger_file.record([AcceptedBeat("new", 1796040000.0, 1796040000.2, True, 5.0, "run")])
    ledger_file.close()
    history = read_history(path, ledger[-1].accepted_at)
    assert len(history.lags) == 15 and len(history.lost) == 1
    assert [span.kind for span in history.incidents] == ["slow"]


def test_the_first_files_migrate_too(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(FIRST)
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
    assert [b.uuid for b in outbox.oldest(100)] == [f"q{n}" for n in range(50)]
    assert outbox.next_sequence() == 81
    assert outbox.read_meta(Meta.SEQUENCE) == 81
    outbox.close()
    assert user_version(path) == SCHEMA_VERSION
    ledger_file = AcceptedLedger(path, lambda: 10**9)
    ledger_file.record([AcceptedBeat("new", 2000.0, 2000.1, True, 5.0, "run")])  # new columns
    ledger_file.close()
    store = IngestionStore(path)
    ledger = store.ledger()
    assert len(ledger) == 31 and {b.uuid for b in ledger} >= {f"a{n}" for n in range(30)}
    assert store.lag_uuids() == set()  # the history's tables were added
    store.close()
    Outbox(path).close()  # opening it again changes nothing
    assert user_version(path) == SCHEMA_VERSION


def test_a_migration_that_fails_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heartbeat_tray.core import state_file

    path = tmp_path / "outbox.sqlite3"
    shutil.copy(DATA / "state-0.1.0.sqlite3", path)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(state_file, "MIGRATIONS", (*state_file.MIGRATIONS, (99, broken)))
    monkeypatch.setattr(state_file, "SCHEMA_VERSION", 99)
    with pytest.raises(sqlite3.OperationalError):
        state_file.open_for_writing(path)
    monkeypatch.undo()
    db = sqlite3.connect(path)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    (beats,) = db.execute("SELECT count(*) FROM beats").fetchone()
    db.close()
    assert "half_done" not in tables and beats == 40
    assert user_version(path) == 1
