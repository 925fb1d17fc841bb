"""The StatusNotifierItem for real: waybar on a headless sway (Wayland; the app has no X
display at all) and xfce4-panel on Xvfb (X11, where the app must choose SNI over XEmbed).
Real clicks: a virtual Wayland pointer, xdotool. Screenshots: test-artifacts/screenshots/."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from heartbeat_tray.tray.icon_art import GREY, RED
from heartbeat_tray.tray.presenter import MENU
from testkit.kde_plasma import KdePlasma, start_kde_plasma, start_kde_plasma_wayland
from testkit.posthog_server import CaptureServer
from testkit.sni_hosts import (
    LxqtPanel,
    SniHost,
    start_lxqt_panel,
    start_waybar_on_sway,
    start_xfce_panel,
)
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.desktop

ENV = {"POSTHOG_PROJECT_API_KEY": KEY}


HOSTS = {
    "kde-plasma": start_kde_plasma,
    "kde-plasma-wayland": start_kde_plasma_wayland,
    "waybar": start_waybar_on_sway,
    "xfce4-panel": start_xfce_panel,
    "lxqt-panel": start_lxqt_panel,
}


@pytest.fixture(params=sorted(HOSTS))
def host(request: pytest.FixtureRequest) -> Iterator[SniHost]:
    started = HOSTS[request.param]()
    yield started
    started.stop()
    if isinstance(started, LxqtPanel):  # it names each D-Bus error about an item it reads
        assert "Error on DBus request" not in started.log
    if isinstance(started, KdePlasma):  # its tray logs what it cannot read of an item
        assert not [line for line in started.log.splitlines() if "StatusNotifier" in line]


def start(app: App, host: SniHost, server: CaptureServer, interval: str = "1") -> Any:
    proc = app.start(
        "tray",
        "--autostart",
        "--interval",
        interval,
        "--host",
        server.url,
        env={**ENV, **host.app_env, "PYSTRAY_BACKEND": ""},  # let the app choose
    )
    wait_until(lambda: "Registered the tray icon" in log(app), what="the item registered")
    return proc


def log(app: App) -> str:
    return app.log_file.read_text() if app.log_file.exists() else ""


def share(image: Image.Image, colour: tuple[int, ...], tolerance: int = 40) -> float:
    raw = image.convert("RGB").tobytes()
    pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    near = sum(
        1
        for p in pixels
        if all(abs(a - b) <= tolerance for a, b in zip(p, colour[:3], strict=True))
    )
    return near / max(1, len(pixels))


def icon(host: SniHost) -> Image.Image:
    box = wait_until(host.icon_box, what="the icon")
    return host.screenshot().crop(box)


def test_the_item_shows_toggles_on_a_left_click_and_quits_from_the_hosts_menu(
    app: App, host: SniHost, server: CaptureServer
) -> None:
    proc = start(app, host, server)
    assert "Tray starting with the sni backend" in log(app)
    if host.name == "waybar":
        assert "DISPLAY" not in host.app_env  # Wayland only: no X display at all
    server.wait_for_events(2)
    wait_until(lambda: share(icon(host), RED) > 0.1, what="the red heart")
    host.save(f"sni-{host.name}-healthy", host.bar_box)
    x, y = host.icon_centre()

    host.click(x, y, "left")
    wait_until(lambda: "Heartbeat disabled" in log(app), what="paused by a left click")
    wait_until(lambda: share(icon(host), GREY) > 0.1, what="the grey, hollow heart")
    host.save(f"sni-{host.name}-disabled", host.bar_box)
    server.wait_for(lambda: False, timeout=0.5)  # a request already on the wire lands
    count = len(server.events)
    assert not server.wait_for(lambda: len(server.events) > count, timeout=3.0)

    host.click(x, y, "left")
    server.wait_for_events(count + 2)  # resumed by a second left click

    labels = host.menu_labels()
    assert len(labels) == len(MENU)
    assert labels[0] == "Enabled" and labels[-1] == "Quit" and "Send heartbeat now" in labels
    assert any(label.startswith("Sent today:") for label in labels)

    host.click(x, y, "right")
    box = wait_until(host.menu_box, what="the host's own menu")
    host.save(f"sni-{host.name}-menu", host.around(box))
    started = time.monotonic()
    host.click((box[0] + box[2]) // 2, box[3] - 14, "left")  # the last entry: Quit
    proc.wait(timeout=5)
    assert time.monotonic() - started < 3.0 and proc.returncode == 0
    wait_until(lambda: host.icon_box() is None, what="the icon removed")


def test_attention_while_failing_a_pulse_per_beat_and_back_after_a_panel_restart(
    app: App, host: SniHost, server: CaptureServer
) -> None:
    monitor = subprocess.Popen(
        ["dbus-monitor", "--session", "type='signal',interface='org.kde.StatusNotifierItem'"],
        env={**os.environ, **host.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        proc = start(app, host, server, interval="2")
        server.wait_for_events(3)
        server.set_mode(503)
        wait_until(lambda: "Failing" in log(app) or "failed" in log(app), what="failing")
        wait_until(lambda: host.icon_box() is not None, what="the icon drawn")
        host.save(f"sni-{host.name}-failing", host.bar_box)
        server.set_mode("ok")
        count = len(server.events)
        server.wait_for_events(count + 2)
        host.restart_bar()  # the panel crashes and comes back: the item registers again
        wait_until(lambda: host.icon_box() is not None, timeout=10, what="the icon back")
        proc.terminate()
        proc.wait(timeout=5)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=5)
    signals = [line for line in out.splitlines() if "member=" in line]
    new_icons = sum("member=NewIcon" in line for line in signals)
    assert new_icons >= 4 * 3  # the pulse: a few NewIcon frames per accepted beat
    statuses = [
        line for line in out.splitlines() if '"NeedsAttention"' in line or '"Active"' in line
    ]
    assert any("NeedsAttention" in line for line in statuses)  # while delivery failed
    assert '"Active"' in statuses[-1]  # and back once it recovered


def test_a_panel_that_starts_after_the_app_gets_the_item_not_an_xembed_square(
    app: App, server: CaptureServer
) -> None:
    """Login races the panel: the app starts on X with no tray at all, then xfce4-panel comes
    (an XEmbed tray and a StatusNotifierWatcher both). The icon moves to the watcher."""
    host = start_xfce_panel(with_panel=False)
    try:
        proc = app.start(
            "tray",
            "--autostart",
            "--interval",
            "1",
            "--host",
            server.url,
            env={**ENV, **host.app_env, "PYSTRAY_BACKEND": ""},
        )
        server.wait_for_events(2)
        assert "Tray starting with the xorg backend" in log(app)  # nothing to register with yet
        host.start_panel()
        wait_until(lambda: "Registered the tray icon" in log(app), what="the item registered")
        assert len(host.registered_items()) == 1
        wait_until(lambda: host.icon_box() is not None, what="the icon in the panel")
        wait_until(lambda: share(icon(host), RED) > 0.1, what="the red heart")
        host.save("sni-late-panel", host.bar_box)
        count = len(server.events)
        server.wait_for_events(count + 2)  # beats go on
        proc.terminate()
        assert proc.wait(timeout=5) == 0
        assert "Traceback" not in log(app)
    finally:
        host.stop()


def test_the_hosts_menu_stays_open_across_beats_and_its_labels_follow(
    app: App, host: SniHost, server: CaptureServer
) -> None:
    """A label change is ItemsPropertiesUpdated: LXQt closed its open menu at every beat when
    the item sent LayoutUpdated instead."""
    proc = start(app, host, server)
    server.wait_for_events(2)
    x, y = host.icon_centre()
    host.click(x, y, "right")
    box = wait_until(host.menu_box, what="the host's own menu")
    first = host.screenshot().crop(box)
    host.save(f"sni-{host.name}-menu-open", host.around(box))
    count = len(server.events)
    server.wait_for_events(count + 3)  # three beats while it is open
    assert host.menu_box() == box, "the menu closed (or moved) at a beat"
    # the status and counter lines changed in place: the same menu, other pixels
    wait_until(lambda: host.screenshot().crop(box) != first, what="the labels updated")
    host.save(f"sni-{host.name}-menu-after-beats", host.around(box))
    host.click((box[0] + box[2]) // 2, box[3] - 14, "left")  # Quit still works
    assert proc.wait(timeout=5) == 0
