"""Clicks and screenshots on a headless KWin Wayland session, as a test needs them.

Clicks: KWin's fake-input protocol (``org_kde_kwin_fake_input``, open to any client with
``KWIN_WAYLAND_NO_PERMISSION_CHECKS=1``), spoken on the raw Wayland wire like
``wl_vpointer.py`` does for wlroots. Screenshots: KWin's ``org.kde.KWin.ScreenShot2`` D-Bus API
(``KWIN_SCREENSHOT_NO_PERMISSION_CHECKS=1``), which writes raw pixels into a pipe we pass.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from PIL import Image

from testkit.wl_vpointer import BTN, Wl

FAKE_INPUT = "org_kde_kwin_fake_input"
AUTHENTICATE, BUTTON, MOTION_ABSOLUTE = 0, 2, 9  # its requests' opcodes (version 4)


class FakeInput(Wl):
    def __init__(self, socket_path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(socket_path)
        self.next_id = 2
        self.buf = b""
        self.globals = {}

    def setup(self) -> None:
        registry = self.new_id()
        self.send(1, 1, struct.pack("<I", registry))  # wl_display.get_registry
        self.roundtrip(registry)
        assert FAKE_INPUT in self.globals, "this compositor has no fake input"
        name, version = self.globals[FAKE_INPUT]
        self.device = self.new_id()
        self.send(
            registry,
            0,
            struct.pack("<I", name)
            + self._str(FAKE_INPUT)
            + struct.pack("<II", min(version, 4), self.device),
        )
        self.send(
            self.device, AUTHENTICATE, self._str("heartbeat-tray tests") + self._str("clicks")
        )
        self.roundtrip()

    def click_at(self, x: int, y: int, button: str) -> None:
        fixed = struct.pack("<ii", x * 256, y * 256)  # wl_fixed: 24.8
        self.send(self.device, MOTION_ABSOLUTE, fixed)
        self.roundtrip()
        time.sleep(0.05)
        for pressed in (1, 0):
            self.send(self.device, BUTTON, struct.pack("<II", BTN[button], pressed))
            self.roundtrip()
            time.sleep(0.05)


def click(socket_path: str, x: int, y: int, button: str) -> None:
    """One click at (x, y) on the compositor listening at ``socket_path``."""
    device = FakeInput(socket_path)
    try:
        device.setup()
        device.click_at(x, y, button)
    finally:
        device.s.close()


def screenshot(bus_address: str) -> Image.Image:
    """The whole workspace, as KWin composites it."""
    read, write = os.pipe()
    data: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read, "rb") as pipe:
            data.append(pipe.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with open_dbus_connection(bus=bus_address, enable_fds=True) as conn:
            api = DBusAddress(
                "/org/kde/KWin/ScreenShot2",
                bus_name="org.kde.KWin",
                interface="org.kde.KWin.ScreenShot2",
            )
            reply = conn.send_and_get_reply(
                new_method_call(api, "CaptureWorkspace", "a{sv}h", ({}, write)), timeout=10
            )
    finally:
        os.close(write)
    reader.join(10)
    meta = {key: value for key, (_sig, value) in reply.body[0].items()}
    assert meta["type"] == "raw" and data, meta
    size = (int(meta["width"]), int(meta["height"]))
    # QImage's 32-bit formats are 0xAARRGGBB words: B, G, R, A in memory here
    return Image.frombuffer("RGBA", size, data[0], "raw", "BGRA", int(meta["stride"]), 1).convert(
        "RGB"
    )
