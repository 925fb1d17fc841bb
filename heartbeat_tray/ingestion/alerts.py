"""What an incident says: the notification's title and text, and the webhook's body. Pure
functions of the incident and the check's judgement; the poller decides when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.ingestion_status import IncidentKind
from heartbeat_tray.core.timefmt import iso_utc
from heartbeat_tray.ingestion.rules import Judgement, Slowness, duration_words

TRIGGERED = "triggered"  # a not-ingested incident opened
SLOW = "slow"  # a slow incident opened
RESOLVED = "resolved"  # either one ended


@dataclass(frozen=True)
class Whose:
    """Whose beats the alert is about: named in every alert and webhook."""

    event: str
    distinct_id: str
    host: str
    project_id: int | None


def not_ingested_alert(opened: bool, since: datetime, judgement: Judgement, who: Whose) -> Alert:
    where = f"PostHog at {who.host}"
    beats = f"the '{who.event}' events from {who.distinct_id}"
    if not opened:
        lag = judgement.lag_seconds
        lagging = f", {lag:.0f} s behind" if lag is not None else ""
        return Alert("Heartbeat ingested again", f"{where} stores {beats} again{lagging}.")
    newest, behind = judgement.newest_stored, judgement.behind_seconds
    if newest is None or behind is None:
        what = f"has stored none of them since {iso_utc(since)}"
    else:
        what = f"ingestion is {max(0.0, behind):.0f} s behind; newest stored beat {iso_utc(newest)}"
    return Alert(
        "Heartbeat not ingested",
        f"{where} accepts {beats}, but {what}: ingestion may be slow or broken downstream of "
        "capture.",
    )


def slow_alert(opened: bool, slow: Slowness | None, who: Whose) -> Alert:
    where = f"PostHog at {who.host}"
    beats = f"the '{who.event}' events from {who.distinct_id}"
    over = ""
    if slow is not None:
        over = (
            f"p95 lag {slow.p95:.0f} s over the last {duration_words(slow.window_seconds)} "
            f"({slow.n} beats)"
        )
    if opened and slow is not None:
        return Alert(
            "Heartbeat ingestion slow",
            f"{where} stores {beats}, but slowly: {over}, above the {slow.threshold:.0f} s "
            "threshold.",
        )
    return Alert(
        "Heartbeat ingestion back to speed",
        f"{where} stores {beats} in time again" + (f": {over}." if over else "."),
    )


def slow_fields(slow: Slowness | None, threshold_seconds: int) -> dict[str, Any]:
    """What a slow incident's webhook adds to the body."""
    return {
        "p95_seconds": None if slow is None else round(slow.p95, 1),
        "threshold_seconds": threshold_seconds,
        "window_seconds": None if slow is None else slow.window_seconds,
    }


def webhook_body(
    kind: IncidentKind,
    status: str,
    incident_id: str,
    alert: Alert,
    since: datetime,
    judgement: Judgement,
    who: Whose,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    lag = judgement.lag_seconds
    return {
        "status": status,
        "kind": kind.value,
        "incident": incident_id,
        "text": alert.message,
        "event": who.event,
        "distinct_id": who.distinct_id,
        "host": who.host,
        "project_id": who.project_id,
        "since": iso_utc(since),
        "last_ingested": iso_utc(judgement.last_ingested) if judgement.last_ingested else None,
        "lag_seconds": None if lag is None else round(lag, 1),
        **(extra or {}),
    }
