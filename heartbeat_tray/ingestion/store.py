"""What the ingestion check keeps across restarts, beside the beats (same SQLite file, its own
connection): the ledger of accepted beats, the open incident, the lost total, the last status,
the project id found, and the webhooks still to deliver.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heartbeat_tray.core.clock import RUN_ID
from heartbeat_tray.core.ingestion_status import (
    LAG_WINDOWS,
    IncidentKind,
    IngestionState,
    IngestionStatus,
    LagWindow,
)
from heartbeat_tray.core.outbox import MAX_BEATS
from heartbeat_tray.core.ports import AcceptedBeat
from heartbeat_tray.core.state_file import (
    Meta,
    in_memory,
    open_for_writing,
    open_read_only,
    read_meta,
    write_meta,
)
from heartbeat_tray.core.timefmt import iso_utc, parse_iso_or_none
from heartbeat_tray.ingestion.history import History, Span
from heartbeat_tray.ingestion.rules import Judgement, LedgerBeat

log = logging.getLogger(__name__)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_INCIDENT_KEYS = {
    IncidentKind.NOT_INGESTED: Meta.NOT_INGESTED_INCIDENT,
    IncidentKind.SLOW: Meta.SLOW_INCIDENT,
}


@dataclass(frozen=True)
class Incident:
    since: datetime
    triggered_sent: bool = False  # the "triggered" alerts went out (exactly once)
    id: str = ""  # in every webhook body of this incident: receivers deduplicate on it
    since_mono: float | None = None  # its start on the monotonic clock of run ``run_id``
    run_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "since": iso_utc(self.since),
            "triggered_sent": self.triggered_sent,
            "id": self.id,
            "since_mono": self.since_mono,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class PendingWebhook:
    id: int
    body: dict[str, Any]
    created_at: float
    next_try: float
    tries: int

    @property
    def kind(self) -> str:
        """``triggered``, ``slow`` or ``resolved``, for the log."""
        return str(self.body.get("status", "?"))


def status_to_json(status: IngestionStatus) -> dict[str, Any]:
    def when(moment: datetime | None) -> str | None:
        return iso_utc(moment) if moment else None

    return {
        "state": status.state.value,
        "sentence": status.sentence,
        "lag_seconds": None if status.lag_seconds is None else round(status.lag_seconds, 1),
        "lag_median_seconds": None
        if status.lag_median_seconds is None
        else round(status.lag_median_seconds, 1),
        "last_ingested": when(status.last_ingested),
        "last_check": when(status.last_check),
        "lost": status.lost,
        "incident_since": when(status.incident_since),
        "project_id": status.project_id,
        "lag": {
            w.name: {
                "p50": round(w.p50, 1),
                "p95": round(w.p95, 1),
                "max": round(w.max, 1),
                "n": w.n,
            }
            for w in status.lag_windows
        },
    }


def status_from_json(data: Any) -> IngestionStatus | None:
    try:
        return IngestionStatus(
            state=IngestionState(data["state"]),
            sentence=str(data["sentence"]),
            lag_seconds=data.get("lag_seconds"),
            lag_median_seconds=data.get("lag_median_seconds"),
            last_ingested=parse_iso_or_none(data.get("last_ingested")),
            last_check=parse_iso_or_none(data.get("last_check")),
            lost=int(data.get("lost") or 0),
            incident_since=parse_iso_or_none(data.get("incident_since")),
            project_id=data.get("project_id"),
            lag_windows=tuple(
                LagWindow(name, float(w["p50"]), float(w["p95"]), float(w["max"]), int(w["n"]))
                for name, w in (data.get("lag") or {}).items()
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class IngestionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.degraded: str | None = None  # why the file cannot be used; None when it can
        try:
            self._db: sqlite3.Connection = open_for_writing(path)
        except sqlite3.Error as exc:
            # Locked, full or read-only at start: the check runs on memory meanwhile (it sees
            # no ledger there) and reopen() goes back to the file as soon as it can.
            log.warning("The ingestion check keeps nothing on disk for now (%s)", exc)
            self.degraded = f"the state file cannot be opened ({exc})"
            self._db = in_memory()

    def reopen(self) -> bool:
        """Back to the state file after a failed start; True when on the file now."""
        if self.degraded is None:
            return True
        try:
            db = open_for_writing(self.path)
        except sqlite3.Error:
            return False
        self._db.close()
        self._db = db
        self.degraded = None
        log.info("The ingestion check keeps its state on disk again")
        return True

    def close(self) -> None:
        self._db.close()

    # --- the ledger ---

    def ledger(self) -> list[LedgerBeat]:
        rows = self._db.execute(
            "SELECT uuid, beat_time, accepted_at, live, accepted_mono, run_id FROM accepted "
            "ORDER BY accepted_at"
        ).fetchall()
        return [
            LedgerBeat(u, _utc(b), _utc(a), bool(live), mono if run == RUN_ID else None)
            for u, b, a, live, mono, run in rows
        ]

    def apply(self, judgement: Judgement) -> int:
        """Record the verdicts; returns the running total of lost beats (a beat counted lost
        that shows up stored after all was late: it is taken off the total again)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            late = self._db.executemany(
                "UPDATE accepted SET verdict = 'ingested' WHERE uuid = ? AND verdict = 'lost'",
                [(u,) for u in judgement.ingested],
            ).rowcount
            self._db.executemany(  # a late beat is not marked lost in the history any more
                "DELETE FROM marks WHERE uuid = ? AND kind = 'lost'",
                [(u,) for u in judgement.ingested],
            )
            self._db.executemany(  # the history marks each lost beat at its own time
                "INSERT INTO marks (uuid, kind, at) SELECT uuid, 'lost', beat_time FROM accepted "
                "WHERE uuid = ? AND verdict IS NULL",
                [(u,) for u in judgement.lost],
            )
            self._db.executemany(
                "UPDATE accepted SET verdict = 'ingested' WHERE uuid = ?",
                [(u,) for u in judgement.ingested],
            )
            fresh = self._db.executemany(
                "UPDATE accepted SET verdict = 'lost' WHERE uuid = ? AND verdict IS NULL",
                [(u,) for u in judgement.lost],
            ).rowcount
            self._db.executemany(
                "DELETE FROM accepted WHERE uuid = ?", [(u,) for u in judgement.expired]
            )
            lost = max(0, int(self._read(Meta.INGESTION_LOST) or 0) + max(0, fresh) - max(0, late))
            self._write(Meta.INGESTION_LOST, lost)
        return lost

    def lost(self) -> int:
        return int(self._read(Meta.INGESTION_LOST) or 0)

    def record_lags(
        self, lags: Mapping[str, tuple[datetime, float]], now: datetime
    ) -> list[tuple[datetime, float]]:
        """Keep each live beat's lag for the longest percentile window (24 h, by the beat's
        own time, as PostHog stamped it); returns what the window holds now."""
        oldest = now.timestamp() - max(seconds for _name, seconds in LAG_WINDOWS)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO lags (uuid, beat_time, lag) VALUES (?, ?, ?)",
                [(u, when.timestamp(), lag) for u, (when, lag) in lags.items()],
            )
            self._db.execute("DELETE FROM lags WHERE beat_time <= ?", (oldest,))
            self._db.execute("DELETE FROM marks WHERE coalesce(until, at) <= ?", (oldest,))
        rows = self._db.execute("SELECT beat_time, lag FROM lags").fetchall()
        return [(_utc(when), lag) for when, lag in rows]

    def lag_uuids(self) -> set[str]:
        """The beats whose lag is kept: already counted in this run's metrics, or before."""
        return {u for (u,) in self._db.execute("SELECT uuid FROM lags")}

    # --- the incident, the status, the project ---

    def incident(self, kind: IncidentKind = IncidentKind.NOT_INGESTED) -> Incident | None:
        data = self._read(_INCIDENT_KEYS[kind])
        since = parse_iso_or_none(data.get("since")) if isinstance(data, dict) else None
        if not since or not isinstance(data, dict):
            return None
        mono = data.get("since_mono")
        return Incident(
            since,
            bool(data.get("triggered_sent")),
            str(data.get("id") or ""),
            float(mono) if isinstance(mono, int | float) else None,
            str(data.get("run_id") or ""),
        )

    def set_incident(
        self, incident: Incident | None, kind: IncidentKind = IncidentKind.NOT_INGESTED
    ) -> None:
        self._write_now(_INCIDENT_KEYS[kind], incident.as_json() if incident else None)

    def save_status(self, status: IngestionStatus) -> None:
        self._write_now(Meta.INGESTION_STATUS, status_to_json(status))

    def cached_project(self, scope: str) -> int | None:
        data = self._read(Meta.INGESTION_PROJECT)
        if isinstance(data, dict) and data.get("scope") == scope:
            return int(data["id"])
        return None

    def cache_project(self, scope: str, project_id: int) -> None:
        self._write_now(Meta.INGESTION_PROJECT, {"scope": scope, "id": project_id})

    def record_alert(
        self,
        incident: Incident | None,
        body: dict[str, Any] | None,
        now: float,
        kind: IncidentKind = IncidentKind.NOT_INGESTED,
    ) -> None:
        """The incident's new state and its webhook, in one transaction: a restart between the
        two can neither lose the alert nor send it twice."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self.incident(kind)
            if incident is None and before is not None and before.triggered_sent:
                # It resolved: the history shades it from its start to now.
                self._db.execute(
                    "INSERT INTO marks (kind, at, until) VALUES (?, ?, ?)",
                    (kind.value, before.since.timestamp(), now),
                )
            self._write(_INCIDENT_KEYS[kind], incident.as_json() if incident else None)
            if body is not None:
                self._db.execute(
                    "INSERT INTO webhooks (body, created_at, next_try) VALUES (?, ?, ?)",
                    (json.dumps(body), now, now),
                )

    # --- webhooks still to deliver ---

    def queue_webhook(self, body: dict[str, Any], now: float) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO webhooks (body, created_at, next_try) VALUES (?, ?, ?)",
                (json.dumps(body), now, now),
            )

    def pending_webhooks(self) -> list[PendingWebhook]:
        rows = self._db.execute(
            "SELECT id, body, created_at, next_try, tries FROM webhooks ORDER BY id"
        ).fetchall()
        return [PendingWebhook(i, json.loads(b), c, n, t) for i, b, c, n, t in rows]

    def webhook_done(self, webhook_id: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))

    def webhook_retry(self, webhook_id: int, next_try: float) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE webhooks SET next_try = ?, tries = tries + 1 WHERE id = ?",
                (next_try, webhook_id),
            )

    # --- meta rows ---

    def _read(self, key: Meta) -> Any:
        return read_meta(self._db, key)

    def _write(self, key: Meta, value: Any) -> None:
        write_meta(self._db, {key: value})

    def _write_now(self, key: Meta, value: Any) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._write(key, value)


class AcceptedLedger:
    """Records the beats the ticker announces as accepted, for the check to look for.

    Its own connection, on the announcing thread: the ticker never shares one with the check.
    ``synchronous=NORMAL`` (WAL): no fsync of its own; the outbox's next commit carries it to
    the disk, and a row lost to a power cut only leaves one beat unjudged. Rows older than the
    query window the check judges are forgotten; a full disk keeps the newest ``MAX_BEATS`` in
    memory until the next announcement can write them.
    """

    def __init__(self, path: Path, window_seconds: Callable[[], int]) -> None:
        self.path = path
        self._window = window_seconds
        self._db: sqlite3.Connection | None = None
        self._unrecorded: list[AcceptedBeat] = []

    def record(self, beats: Sequence[AcceptedBeat]) -> None:
        pending = [*self._unrecorded, *beats]
        if not pending:
            return
        oldest = max(b.accepted_at for b in pending) - self._window()
        try:
            db = self._connection()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT OR IGNORE INTO accepted "
                    "(uuid, beat_time, accepted_at, live, accepted_mono, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (b.uuid, b.beat_time, b.accepted_at, int(b.live), b.accepted_mono, b.run_id)
                        for b in pending
                    ],
                )
                # No cap on their number: the check must see every beat it judges (172,800
                # rows at one beat a second and a 48-hour window; about 60 bytes each).
                db.execute("DELETE FROM accepted WHERE beat_time < ?", (oldest,))
        except sqlite3.Error as exc:
            if not self._unrecorded:
                log.warning("Could not record accepted beats for the ingestion check: %s", exc)
            self._unrecorded = pending[-MAX_BEATS:]
            return
        if self._unrecorded:
            log.info("Recorded %d accepted beat(s) kept while the disk was full", len(pending))
        self._unrecorded = []

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = open_for_writing(self.path)
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def read_history(
    path: Path, now: datetime, *, slow_after_seconds: int = 0, host: str = ""
) -> History:
    """The last 24 h from the state file, read-only (``history`` and its window): nothing is
    created, locked for writing or moved. Raises sqlite3.Error when the file cannot be read."""
    if not path.exists():
        return History(now, slow_after_seconds=slow_after_seconds, host=host)
    db = open_read_only(path)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        lags = (
            [(_utc(w), lag) for w, lag in db.execute("SELECT beat_time, lag FROM lags")]
            if "lags" in tables
            else []
        )
        marks = (
            db.execute("SELECT kind, at, until FROM marks ORDER BY at").fetchall()
            if "marks" in tables
            else []
        )
        meta = {key: read_meta(db, key) for key in _INCIDENT_KEYS.values()}
    finally:
        db.close()
    incidents = [Span(kind, _utc(at), _utc(until)) for kind, at, until in marks if until]
    for kind, key in _INCIDENT_KEYS.items():
        data = meta.get(key)
        since = parse_iso_or_none(data.get("since")) if isinstance(data, dict) else None
        if since is not None and isinstance(data, dict) and data.get("triggered_sent"):
            incidents.append(Span(kind.value, since, None))
    return History(
        now,
        lags=sorted(lags),
        lost=[_utc(at) for kind, at, _until in marks if kind == "lost"],
        incidents=incidents,
        slow_after_seconds=slow_after_seconds,
        host=host,
    )
