"""When the user is told (alert rules), and what the tray shows (presenter): pure, no display."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from heartbeat_tray.core.alert_rules import Alert, delivery_alert
from heartbeat_tray.core.app_state import Health, Snapshot
from heartbeat_tray.system.log_setup import RedactingFormatter, never_log
from heartbeat_tray.tray.presenter import (
    MENU,
    IconState,
    Item,
    default_action,
    present,
    pulses,
)

OK = Snapshot(health=Health.HEALTHY, host="https://eu.i.posthog.com")


def failing(n: int) -> Snapshot:
    return replace(OK, health=Health.FAILING, consecutive_failures=n, last_failure="503 Nope")


@pytest.mark.parametrize(
    ("before", "after", "title"),
    [
        (failing(2), failing(3), "Heartbeat failing"),
        (failing(3), OK, "Heartbeat recovered"),
        (replace(OK, health=Health.WRONG_HOST, last_failure="404"), OK, "Heartbeat recovered"),
        (OK, replace(OK, health=Health.KEY_REJECTED, last_failure="401"), "PostHog rejected"),
        (OK, replace(OK, health=Health.WRONG_HOST, last_failure="404 Not Found"), "wrong host"),
        (OK, replace(OK, storage_problem="Disk full — beats are not being kept"), "not being kept"),
    ],
)
def test_each_change_of_state_alerts_once(before: Snapshot, after: Snapshot, title: str) -> None:
    alert = delivery_alert(before, after)
    assert alert is not None and title in alert.title
    assert delivery_alert(after, after) is None  # the same state again: silence


@pytest.mark.parametrize(
    ("before", "after"),
    [(OK, failing(1)), (failing(1), failing(2)), (failing(3), failing(4)), (failing(2), OK)],
)
def test_no_alert_per_beat_or_before_three_failures(before: Snapshot, after: Snapshot) -> None:
    assert delivery_alert(before, after) is None


def test_the_wrong_host_alert_names_the_host_and_what_to_do() -> None:
    after = replace(OK, health=Health.WRONG_HOST, last_failure="404 Not Found")
    assert delivery_alert(OK, after) == Alert(
        "Heartbeat failing: wrong host",
        "PostHog at https://eu.i.posthog.com answered 404 Not Found — check the host",
    )


@pytest.mark.parametrize(
    ("health", "icon"),
    [
        (Health.HEALTHY, IconState.HEALTHY),
        (Health.FAILING, IconState.FAILING),
        (Health.KEY_REJECTED, IconState.FAILING),
        (Health.WRONG_HOST, IconState.FAILING),
        (Health.DISABLED, IconState.DISABLED),
        (Health.NEEDS_SETUP, IconState.NEEDS_SETUP),
    ],
)
def test_every_health_has_an_icon(health: Health, icon: IconState) -> None:
    view = present(replace(OK, health=health), launch_at_login=False)
    assert view.icon is icon
    assert view.title.startswith("Heartbeat — ")


def test_the_menu_has_every_entry_by_name_with_live_text_and_checks() -> None:
    snap = replace(OK, sent_today=7, queued=2, enabled=False, health=Health.DISABLED)
    view = present(snap, launch_at_login=True)
    assert [line.item if line else None for line in view.menu] == list(MENU)
    assert view.line(Item.ENABLED).checked is False
    assert view.line(Item.LAUNCH_AT_LOGIN).checked is True
    assert view.line(Item.STATUS).label == "Disabled" and not view.line(Item.STATUS).clickable
    assert view.line(Item.COUNTERS).label == "Sent today: 7 · Queued: 2"
    assert view.line(Item.SEND_NOW).label == "Send heartbeat now"


def test_a_click_while_setup_is_needed_opens_settings_instead_of_pausing() -> None:
    assert default_action(replace(OK, health=Health.NEEDS_SETUP)) is Item.SETTINGS
    assert default_action(OK) is Item.ENABLED
    assert default_action(replace(OK, health=Health.DISABLED)) is Item.ENABLED


def test_the_title_fits_a_windows_tooltip() -> None:
    long = replace(OK, health=Health.FAILING, last_failure="x" * 300, consecutive_failures=4)
    assert len(present(long, launch_at_login=False).title) <= 127


def test_an_accepted_live_beat_pulses_once() -> None:
    after = replace(OK, accepted_live=1)
    assert pulses(OK, after) and not pulses(after, after) and not pulses(None, after)


def test_status_line_shows_a_rate_limit_hold_until_when() -> None:
    until = datetime(2026, 11, 26, 14, 2, 3, tzinfo=UTC)
    snap = replace(failing(1), hold_until=until)
    assert snap.status_line == f"Rate limited: waiting until {until.astimezone():%H:%M:%S}"


def test_secrets_can_be_registered_while_other_threads_format_log_lines() -> None:
    formatter = RedactingFormatter("%(message)s")
    record = logging.LogRecord("t", logging.INFO, "", 0, "line", (), None)
    errors: list[BaseException] = []
    stop = threading.Event()

    def format_forever() -> None:
        try:
            while not stop.is_set():
                formatter.format(record)
        except BaseException as exc:  # "set changed size during iteration" before the fix
            errors.append(exc)

    threads = [threading.Thread(target=format_forever) for _ in range(3)]
    for thread in threads:
        thread.start()
    for n in range(3000):
        never_log(f"legacy-secret-{n:06d}")
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []


def test_slow_ingestion_asks_for_attention_and_is_the_tooltip_line() -> None:
    from heartbeat_tray.core.ingestion_status import IngestionState, IngestionStatus

    sentence = "Ingestion slow: p95 412 s over 15 min (over 300 s)"
    snap = Snapshot(ingestion=IngestionStatus(state=IngestionState.SLOW, sentence=sentence))
    view = present(snap, launch_at_login=False)
    assert view.needs_attention and view.title == f"Heartbeat — {sentence}"
    assert view.icon is IconState.HEALTHY  # beats are stored: the heart still beats
    calm = present(replace(snap, ingestion=IngestionStatus(state=IngestionState.OK)), False)
    assert not calm.needs_attention
