"""When to tell the user: on a change of state only, never per beat. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from heartbeat_tray.core.app_state import Health, Snapshot

NOTIFY_AFTER_FAILURES = 3


@dataclass(frozen=True)
class Alert:
    title: str
    message: str


def delivery_alert(before: Snapshot, after: Snapshot) -> Alert | None:
    """Failing after 3 in a row, recovered, key rejected, wrong host, disk full."""
    if after.health is Health.KEY_REJECTED and before.health is not Health.KEY_REJECTED:
        return Alert(
            "PostHog rejected the API key", f"{after.last_failure}. Open Settings to fix it."
        )
    if after.health is Health.WRONG_HOST and before.health is not Health.WRONG_HOST:
        return Alert("Heartbeat failing: wrong host", after.status_line)
    if after.storage_problem and not before.storage_problem:
        return Alert("Heartbeat beats are not being kept", after.storage_problem)
    if before.consecutive_failures < NOTIFY_AFTER_FAILURES <= after.consecutive_failures:
        return Alert("Heartbeat failing", after.status_line)
    told = before.consecutive_failures >= NOTIFY_AFTER_FAILURES or (
        before.health is Health.WRONG_HOST and after.health is not Health.WRONG_HOST
    )
    if told and after.consecutive_failures == 0:
        return Alert("Heartbeat recovered", "PostHog accepts the heartbeat again.")
    return None
