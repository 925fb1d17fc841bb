"""Cinnamon's StatusNotifierItem bridge for real: xapp-sn-watcher on Xvfb turns our item into
the XApp status icon Cinnamon's panel shows; the test sends it the panel applet's clicks, and
clicks the GTK menu the bridge pops up with xdotool. Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from heartbeat_tray.tray.icon_art import GREY, RED
from testkit.cinnamon_bridge import CinnamonBridge, start_cinnamon_bridge
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.desktop


@pytest.fixture
def bridge() -> Iterator[CinnamonBridge]:
    started = start_cinnamon_bridge()
    yield started
    started.stop()


def share(image: Image.Image, colour: tuple[int, ...], tolerance: int = 40) -> float:
    """The share of the icon's opaque pixels near ``colour``."""
    raw = image.convert("RGBA").tobytes()
    pixels = [raw[i : i + 4] for i in range(0, len(raw), 4) if raw[i + 3] > 128]
    near = sum(
        1
        for p in pixels
        if all(abs(a - b) <= tolerance for a, b in zip(p, colour[:3], strict=False))
    )
    return near / max(1, len(pixels))


def log(app: App) -> str:
    return app.log_file.read_text() if app.log_file.exists() else ""


def start(app: App, bridge: CinnamonBridge, server: CaptureServer) -> Any:
    proc = app.start(
        "tray",
        "--autostart",
        "--interval",
        "1",
        "--host",
        server.url,
        env={"POSTHOG_PROJECT_API_KEY": KEY, **bridge.app_env, "PYSTRAY_BACKEND": ""},
    )
    wait_until(lambda: bridge.icons(), what="the bridge's status icon for our item")
    return proc


def test_the_bridge_shows_the_icon_a_click_toggles_and_the_menu_lives_across_beats(
    app: App, bridge: CinnamonBridge, server: CaptureServer
) -> None:
    proc = start(app, bridge, server)
    assert "Tray starting with the sni backend" in log(app)
    server.wait_for_events(2)
    wait_until(lambda: share(bridge.icon_image(), RED) > 0.3, what="the red heart")
    props = bridge.properties()
    assert props["Visible"] and props["TooltipText"].startswith("Heartbeat Tray\nHeartbeat — ")

    bridge.click("left")  # the bridge sends Activate: pause
    wait_until(lambda: "Heartbeat disabled" in log(app), what="paused by a left click")
    wait_until(lambda: share(bridge.icon_image(), GREY) > 0.3, what="the grey, hollow heart")
    server.wait_for(lambda: False, timeout=0.5)  # a request already on the wire lands
    count = len(server.events)
    assert not server.wait_for(lambda: len(server.events) > count, timeout=2.0)
    bridge.click("middle")  # SecondaryActivate: one beat now, even while paused
    server.wait_for_events(count + 1)
    assert not server.wait_for(lambda: len(server.events) > count + 1, timeout=2.0)
    bridge.click("left")
    wait_until(lambda: "Heartbeat enabled" in log(app), what="resumed by a second click")
    server.wait_for_events(count + 3)

    bridge.click("right")  # the bridge pops up our menu itself
    box = wait_until(bridge.menu_box, what="the bridge's menu")
    first = bridge.screenshot("cinnamon-bridge-menu", box).crop(box)
    count = len(server.events)
    server.wait_for_events(count + 3)  # three beats while it is open
    assert bridge.menu_box() == box, "the menu closed (or moved) at a beat"
    wait_until(lambda: bridge.screenshot().crop(box) != first, what="the labels updated in place")
    started = time.monotonic()
    bridge.click_at((box[0] + box[2]) // 2, box[3] - 14)  # the last entry: Quit
    assert proc.wait(timeout=5) == 0 and time.monotonic() - started < 3.0
    wait_until(lambda: not bridge.icons(), what="the icon removed")
    assert "Traceback" not in log(app)
    # it logs what it cannot read of an item (a property, dbusmenu's item 0) as warnings
    assert "WARNING" not in bridge.log and "CRITICAL" not in bridge.log, bridge.log
