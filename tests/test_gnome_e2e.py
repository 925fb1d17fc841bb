"""GNOME Shell 43 for real, headless on Wayland: with the AppIndicator extension (Ubuntu's
default, and what GNOME users install), and vanilla (Fedora's default: no tray at all).
Real clicks through mutter's RemoteDesktop, screenshots through GNOME Shell's own API; the app
gets no X display, as a Wayland app of the session. Screenshots: test-artifacts/screenshots/."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from heartbeat_tray.tray.app import NO_TRAY_HOST
from heartbeat_tray.tray.icon_art import RED
from heartbeat_tray.tray.presenter import MENU, Item
from testkit.desktop import ARTIFACTS
from testkit.gnome_shell import ESCAPE, GnomeShell, start_gnome_shell
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until
from tests.test_sni_e2e import log, share

pytestmark = pytest.mark.desktop


@pytest.fixture
def gnome() -> Iterator[GnomeShell]:
    host = start_gnome_shell()
    yield host
    host.stop()


@pytest.fixture
def vanilla_gnome() -> Iterator[GnomeShell]:
    host = start_gnome_shell(appindicator=False)
    yield host
    host.stop()


def start(
    app: App, host: GnomeShell, server: CaptureServer, interval: str
) -> subprocess.Popen[str]:
    return app.start(
        "tray",
        "--autostart",
        "--interval",
        interval,
        "--host",
        server.url,
        # a Wayland app of the session: no X display; the key from the environment
        env={"POSTHOG_PROJECT_API_KEY": KEY, **host.app_env, "DISPLAY": "", "PYSTRAY_BACKEND": ""},
    )


def save(host: GnomeShell, name: str, box: tuple[int, int, int, int] | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = host.screenshot()
    (shot.crop(box) if box else shot).save(ARTIFACTS / f"{name}.png")


def gnome_shows(label: str) -> str:
    """What the extension draws for a dbusmenu label (its dbusMenu.js)."""
    return re.sub(r"_([^_])", r"\1", label, count=1)


def test_gnome_with_appindicator_menu_on_a_click_activate_on_a_double_click_labels_as_written(
    app: App, gnome: GnomeShell, server: CaptureServer
) -> None:
    proc = start(app, gnome, server, "1")
    wait_until(lambda: "Registered the tray icon" in log(app), what="the item registered")
    assert "Tray starting with the sni backend" in log(app)
    server.wait_for_events(2)
    box = wait_until(gnome.icon_box, what="the icon in GNOME's top bar")
    wait_until(lambda: share(gnome.screenshot().crop(box), RED) > 0.1, what="the red heart")
    x, y = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    save(gnome, "gnome-appindicator-healthy", (x - 150, 0, x + 150, 32))

    # A single click opens the menu (the extension's choice); it does not toggle.
    gnome.click(x, y, "left")
    menu = wait_until(gnome.menu_box, what="the extension's menu")
    save(gnome, "gnome-appindicator-menu")
    count = len(server.events)
    server.wait_for_events(count + 2)  # beats while it is open: it stays, labels follow
    assert gnome.menu_box() == menu, "the menu closed (or moved) at a beat"
    assert "Heartbeat disabled" not in log(app)

    # Every label reads as written: the no-keyring line names POSTHOG_PERSONAL_API_KEY.
    labels = [gnome_shows(label) for label in gnome.menu_labels()]
    assert len(labels) == len(MENU)
    ingestion = labels[[e for e in MENU if e is not None].index(Item.INGESTION)]
    assert "POSTHOG_PERSONAL_API_KEY" in ingestion, ingestion

    gnome.key(ESCAPE)
    wait_until(lambda: gnome.menu_box() is None, what="Escape to close the menu")

    # A double click is Activate: the default action, pause.
    gnome.double_click(x, y)
    wait_until(lambda: "Heartbeat disabled" in log(app), what="paused by a double click")

    # Quit from the menu: its last entry.
    gnome.click(x, y, "left")
    menu = wait_until(gnome.menu_box, what="the menu again")
    gnome.click((menu[0] + menu[2]) // 2, menu[3] - 8, "left")
    assert proc.wait(timeout=5) == 0
    assert "Traceback" not in log(app)
    # the extension reads every property it knows of: none may be missing
    shell_errors = [
        line for line in gnome.log.splitlines() if "UnknownProperty" in line or "heartbeat" in line
    ]
    assert shell_errors == []


def test_vanilla_gnome_says_once_that_there_is_no_tray_and_keeps_beating(
    app: App, vanilla_gnome: GnomeShell, server: CaptureServer
) -> None:
    # what the app asks GNOME Shell's notification service to show
    monitor = subprocess.Popen(
        [
            "dbus-monitor",
            "--address",
            vanilla_gnome.env["DBUS_SESSION_BUS_ADDRESS"],
            "interface='org.freedesktop.Notifications',member='Notify'",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        proc = start(app, vanilla_gnome, server, "1")
        wait_until(
            lambda: "No tray to show the icon in" in log(app), timeout=30, what="the no-tray line"
        )
        assert "Tray starting with the sni backend" in log(app)  # Wayland: waits for a watcher
        assert app.status()["tray_problem"] == NO_TRAY_HOST
        save(vanilla_gnome, "gnome-vanilla-no-tray")
        count = len(server.events)
        server.wait_for_events(count + 5)  # it keeps beating
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        monitor.terminate()
        shown, _ = monitor.communicate(timeout=5)
    assert shown.count('string "Heartbeat Tray has no tray"') == 1
    text = log(app)
    assert text.count("No tray to show the icon in") == 1
    assert "Traceback" not in text
