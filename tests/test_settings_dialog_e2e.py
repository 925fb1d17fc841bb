"""The settings dialog for real: xdotool types into it on Xvfb, the key goes to gnome-keyring."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from datetime import datetime

import pytest

from heartbeat_tray.system.settings_file import load_settings
from testkit.desktop import Desktop, start_desktop
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, secret_tool_lookup, wait_until

pytestmark = pytest.mark.desktop

DIALOG_CLASS = "heartbeat-tray-settings"
# Tab stops after the key field: Show, Event, Distinct id, Interval, Properties, then the
# ingestion check's Personal key, Show, Project id, Alert after, Webhook URL, then Backfill,
# Notify, Launch at login, Test connection.
TABS_TO_INTERVAL = 4
TABS_TO_PERSONAL_KEY = 6
TABS_TO_TEST = 14


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    d = start_desktop()
    yield d
    d.stop()


def log_lines(app: App) -> str:
    return app.log_file.read_text() if app.log_file.exists() else ""


def open_dialog(app: App, desktop: Desktop) -> subprocess.Popen[str]:
    shown = log_lines(app).count("Settings dialog shown")
    proc = app.start("settings", env=desktop.env)
    wait_for_dialog(app, desktop, shown)
    return proc


def wait_for_dialog(app: App, desktop: Desktop, shown_before: int) -> int:
    wait_until(
        lambda: log_lines(app).count("Settings dialog shown") > shown_before,
        what="the dialog to take the keyboard",
    )
    return int(
        wait_until(
            lambda: desktop.xdotool("search", "--onlyvisible", "--classname", DIALOG_CLASS),
            what="the dialog window",
        ).split()[0]
    )


def keys(desktop: Desktop, *names: str) -> None:
    desktop.xdotool("key", "--delay", "30", *names)


def type_text(desktop: Desktop, text: str) -> None:
    desktop.xdotool("type", "--delay", "10", text)


def test_a_valid_form_saves_the_file_and_the_key(
    app: App, keyring_session: dict[str, str], desktop: Desktop
) -> None:
    proc = open_dialog(app, desktop)
    desktop.screenshot("dialog-empty", None)
    type_text(desktop, KEY)
    desktop.screenshot("dialog-filled", None)
    keys(desktop, "Return")
    assert proc.wait(timeout=10) == 0
    assert secret_tool_lookup(app.env) == KEY
    saved = load_settings(app.config_file).settings
    assert saved.interval_seconds == 60 and saved.host == "https://us.i.posthog.com"
    assert KEY not in app.config_file.read_text()


@pytest.mark.parametrize(
    ("typing", "field"),
    [
        ([("type", "phx_" + "p" * 40)], "api_key: This looks like a personal API key"),
        (
            [("type", KEY), *[("key", "Tab")] * TABS_TO_INTERVAL, ("type", "abc")],
            "interval_seconds: Interval must be a whole number of seconds between 1 and 86400.",
        ),
        (
            [("type", KEY), *[("key", "Tab")] * 2, ("key", "ctrl+a"), ("key", "ctrl+k")],
            "event: Event name must not be empty",
        ),
    ],
    ids=["personal-key", "interval", "empty-event"],
)
def test_an_invalid_field_blocks_save_and_changes_nothing(
    app: App,
    keyring_session: dict[str, str],
    desktop: Desktop,
    typing: list[tuple[str, str]],
    field: str,
) -> None:
    app.write_config("interval_seconds = 120\n")
    before = app.config_file.read_bytes()
    proc = open_dialog(app, desktop)
    for kind, text in typing:
        if kind == "type":
            type_text(desktop, text)
        else:
            keys(desktop, text)
    keys(desktop, "Return")
    wait_until(lambda: f"Save refused: {field}" in log_lines(app), what=f"refusal for {field}")
    desktop.screenshot(f"dialog-error-{field.split(':')[0]}", None)
    assert proc.poll() is None  # still open, for the user to fix
    assert app.config_file.read_bytes() == before
    assert secret_tool_lookup(app.env) == ""
    keys(desktop, "Escape")
    assert proc.wait(timeout=10) == 0  # cancelling is not a failure


def test_cancel_changes_nothing(
    app: App, keyring_session: dict[str, str], desktop: Desktop
) -> None:
    app.write_config('event = "kept"\n')
    before = app.config_file.read_bytes()
    proc = open_dialog(app, desktop)
    type_text(desktop, KEY)
    keys(desktop, *["Tab"] * TABS_TO_INTERVAL)
    type_text(desktop, "5")
    keys(desktop, "Escape")
    assert proc.wait(timeout=10) == 0  # cancelling is not a failure
    assert app.config_file.read_bytes() == before
    assert secret_tool_lookup(app.env) == ""


@pytest.mark.parametrize(
    ("key", "mode", "answer"),
    [
        (KEY, "ok", "Test connection: The API key is valid for http://127.0.0.1:"),
        ("phc_" + "w" * 43, "ok", "rejected the API key (401)"),
        (KEY, "refuse", "is unreachable (connection refused)"),
    ],
    ids=["valid", "401", "refused"],
)
def test_test_connection_answers_inline_for_the_form_values(
    app: App,
    keyring_session: dict[str, str],
    desktop: Desktop,
    server: CaptureServer,
    key: str,
    mode: str,
    answer: str,
) -> None:
    app.write_config(f'host = "{server.url}"\n')
    server.set_mode(mode)
    proc = open_dialog(app, desktop)
    type_text(desktop, key)
    keys(desktop, *["Tab"] * TABS_TO_TEST, "space")
    wait_until(lambda: answer in log_lines(app), what=answer)
    desktop.screenshot(f"dialog-test-{mode}-{'valid' if key == KEY else 'wrong'}", None)
    assert server.capture_requests() == []  # checking sends no event
    assert secret_tool_lookup(app.env) == ""  # and saves nothing
    keys(desktop, "Escape")
    proc.wait(timeout=10)


def test_a_saved_interval_reaches_the_running_tray_within_a_second(
    app: App, keyring_session: dict[str, str], desktop: Desktop, server: CaptureServer
) -> None:
    app.write_config(f'host = "{server.url}"\ninterval_seconds = 3\n')
    assert app.run("key", "set", input=KEY).returncode == 0
    tray = app.start("tray", env=desktop.env)
    server.wait_for_events(2)
    # a second launch asks the running tray to open its settings dialog
    shown = log_lines(app).count("Settings dialog shown")
    second = app.run("tray", env=desktop.env)
    assert second.returncode == 0 and "asked to open its settings" in second.stdout
    wait_for_dialog(app, desktop, shown)
    keys(desktop, *["Tab"] * TABS_TO_INTERVAL)
    type_text(desktop, "1")
    keys(desktop, "Return")
    wait_until(lambda: "Settings reloaded" in log_lines(app), what="the tray to reload")
    count = len(server.events)
    events = server.wait_for_events(count + 4)
    stamps = [
        datetime.fromisoformat(e["timestamp"]).timestamp()
        for e in sorted(events, key=lambda e: e["properties"]["sequence"])
    ]
    early = [b - a for a, b in itertools.pairwise(stamps[:2])]
    late = [b - a for a, b in itertools.pairwise(stamps[-3:])]
    assert all(2.7 <= gap <= 3.3 for gap in early), early
    assert all(0.7 <= gap <= 1.3 for gap in late), late
    assert load_settings(app.config_file).settings.interval_seconds == 1
    tray.terminate()
    assert tray.wait(timeout=5) == 0


def test_enter_in_extra_properties_is_a_new_line_not_save(
    app: App, keyring_session: dict[str, str], desktop: Desktop
) -> None:
    proc = open_dialog(app, desktop)
    type_text(desktop, KEY)
    keys(desktop, *["Tab"] * (TABS_TO_INTERVAL + 1))  # into Extra properties
    type_text(desktop, "team = infra")
    keys(desktop, "Return")  # a new line: the dialog stays open
    type_text(desktop, "tier = 2")
    desktop.screenshot("dialog-properties", None)
    assert proc.poll() is None
    keys(desktop, "Tab", "Return")  # out of the text box, then Enter saves
    assert proc.wait(timeout=10) == 0
    assert load_settings(app.config_file).settings.properties == {"team": "infra", "tier": 2}


def test_the_dialog_opens_on_a_broken_file_and_save_keeps_the_old_one(
    app: App, keyring_session: dict[str, str], desktop: Desktop
) -> None:
    broken = 'host = "https://eu.i.posthog.com"\ninterval_seconds = 0\n'
    app.write_config(broken)
    proc = open_dialog(app, desktop)
    desktop.screenshot("dialog-broken-file", None)
    assert app.config_file.read_text() == broken  # opening it changed nothing
    type_text(desktop, KEY)
    keys(desktop, *["Tab"] * TABS_TO_INTERVAL, "End", *["BackSpace"] * 6)
    type_text(desktop, "30")
    keys(desktop, "Return")
    assert proc.wait(timeout=10) == 0
    saved = load_settings(app.config_file)
    assert saved.usable and saved.settings.host == "https://eu.i.posthog.com"  # as read
    assert saved.settings.interval_seconds == 30
    (backup,) = app.config_file.parent.glob("config.toml.bak-*")
    assert backup.read_text() == broken


def test_a_click_on_the_needs_setup_icon_opens_settings_and_never_disables(
    app: App, keyring_session: dict[str, str], desktop: Desktop, server: CaptureServer
) -> None:
    app.write_config(f'host = "{server.url}"\ninterval_seconds = 1\n')
    before = app.config_file.read_text()
    tray = app.start("tray", "--autostart", env=desktop.env)  # at login: no dialog by itself
    window = desktop.icon_window()
    wait_until(lambda: "No API key" in (desktop.title(window) or ""), what="needs setup")
    shown = log_lines(app).count("Settings dialog shown")
    desktop.click(window, 1)
    wait_for_dialog(app, desktop, shown)
    assert app.config_file.read_text() == before  # enabled stays as it was
    assert "Heartbeat disabled" not in log_lines(app)
    type_text(desktop, KEY)
    keys(desktop, "Return")
    server.wait_for_events(2)  # set up, and beating: not left disabled
    wait_until(lambda: "Last accepted" in (desktop.title(window) or ""), what="healthy title")
    tray.terminate()
    assert tray.wait(timeout=5) == 0


def test_the_ingestion_section_tests_the_query_and_saves_the_personal_key(
    app: App, keyring_session: dict[str, str], desktop: Desktop, server: CaptureServer
) -> None:
    personal = "phx_dialogPersonalKey0123456789abcdefghijk"
    server.personal_keys = {personal}
    app.write_config(f'host = "{server.url}"\n')
    assert app.run("key", "set", input=KEY).returncode == 0
    assert app.run("once").returncode == 0  # one beat of this installation, stored by PostHog
    server.wait_for(lambda: bool(server.stored), timeout=5)
    proc = open_dialog(app, desktop)
    keys(desktop, *["Tab"] * TABS_TO_PERSONAL_KEY)
    type_text(desktop, personal)
    keys(desktop, *["Tab"] * (TABS_TO_TEST - TABS_TO_PERSONAL_KEY), "space")
    wait_until(
        lambda: "Query works — your last beat was ingested" in log_lines(app),
        what="the query answer",
    )
    desktop.screenshot("dialog-ingestion-test", None)
    keys(desktop, "Return")
    assert proc.wait(timeout=10) == 0
    stored = subprocess.run(
        ["secret-tool", "lookup", "service", "heartbeat-tray", "username", "personal-api-key"],
        capture_output=True,
        text=True,
        env=app.env,
        timeout=30,
    )
    assert stored.stdout == personal
    assert personal not in app.config_file.read_text()


def test_the_dialog_closes_with_the_tray_unless_that_would_lose_edits(
    app: App, keyring_session: dict[str, str], desktop: Desktop, server: CaptureServer
) -> None:
    app.write_config(f'host = "{server.url}"\ninterval_seconds = 3\n')
    assert app.run("key", "set", input=KEY).returncode == 0

    def dialog_windows() -> str:
        return desktop.xdotool("search", "--onlyvisible", "--classname", DIALOG_CLASS)

    for edited in (False, True):
        beats = len(server.events)
        tray = app.start("tray", env=desktop.env)
        server.wait_for_events(beats + 1)  # this tray runs
        shown = log_lines(app).count("Settings dialog shown")
        assert app.run("tray", env=desktop.env).returncode == 0  # opens its settings
        wait_for_dialog(app, desktop, shown)
        if edited:
            keys(desktop, *["Tab"] * TABS_TO_INTERVAL)
            type_text(desktop, "7")
        tray.terminate()  # Quit, as the menu's Quit does
        assert tray.wait(timeout=5) == 0
        if not edited:
            wait_until(lambda: not dialog_windows(), what="the dialog to close with the tray")
            assert "Settings dialog closed with the tray" in log_lines(app)
            continue
        wait_until(
            lambda: "the dialog stays open for its unsaved changes" in log_lines(app),
            what="the dialog to keep its edits",
        )
        assert dialog_windows()  # still there, saying the tray has gone
        desktop.screenshot("dialog-tray-gone", None)
        keys(desktop, "Escape")
        wait_until(lambda: not dialog_windows(), what="the dialog to close on Escape")
    assert load_settings(app.config_file).settings.interval_seconds == 3  # nothing saved
