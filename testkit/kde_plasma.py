"""KDE Plasma 5.27 on X11, headless: Xvfb, kwin_x11, kded5 (whose statusnotifierwatcher module
is the watcher) and plasmashell, whose system tray in the bottom panel is the
StatusNotifierItem host, on a private session bus. Its own notifications pop up there too.

Measured here: kded5 loads the watcher only in a session that says it is KDE
(``XDG_CURRENT_DESKTOP=KDE``, ``KDE_FULL_SESSION``); plasmashell aborts its load without
kactivitymanagerd, which the bus starts on demand (with the display in its environment, or it
aborts too).
"""

from __future__ import annotations

import colorsys
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from PIL import Image

from testkit import kwin_input
from testkit.desktop import start_xvfb
from testkit.sni_hosts import X11Panel, need, start_bus
from testkit.waiting import wait_until

PANEL = 44  # the default bottom panel's height, in pixels
ACTIVITY_MANAGER = "/usr/lib/x86_64-linux-gnu/libexec/kactivitymanagerd"


class KdePlasma(X11Panel):
    height = 768
    _icon: tuple[int, int, int, int] | None = None

    @property
    def log(self) -> str:
        path = self.folder / "plasmashell.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def bar_box(self) -> tuple[int, int, int, int]:
        return self.width - 300, self.height - PANEL, self.width, self.height

    def around(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        return box[0] - 20, box[1] - 20, self.width, self.height

    def _session_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, **self.base}

    def host_registered(self) -> bool:
        """The shell's system tray has registered as a StatusNotifierHost."""
        with open_dbus_connection(bus=self.env["DBUS_SESSION_BUS_ADDRESS"]) as conn:
            dbus = DBusAddress(
                "/org/freedesktop/DBus",
                bus_name="org.freedesktop.DBus",
                interface="org.freedesktop.DBus",
            )
            names = conn.send_and_get_reply(new_method_call(dbus, "ListNames"), timeout=5).body[0]
        return any(n.startswith("org.kde.StatusNotifierHost-") for n in names)

    def start_panel(self) -> None:
        self.procs["panel"] = self._start_panel()
        wait_until(self.host_registered, timeout=60, what="Plasma's system tray")

    def restart_bar(self) -> None:
        """The shell crashes and comes back (the watcher, in kded5, stays)."""
        panel = self.procs.pop("panel")
        panel.kill()
        panel.wait(timeout=5)
        wait_until(lambda: not self.host_registered(), what="the tray gone")
        self._icon = None  # to be found again, where the new tray draws it
        self.start_panel()

    def _start_panel(self) -> subprocess.Popen[bytes]:
        with (self.folder / "plasmashell.log").open("ab") as log:
            return subprocess.Popen(
                [need("plasmashell"), "--no-respawn"],
                env=self._session_env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def icon_box(self) -> tuple[int, int, int, int] | None:
        """Our icon in the tray: the one coloured thing at the panel's right end (Breeze's
        own tray icons are grey). Once found, its place is kept: a grey (disabled) heart is
        where the coloured one was."""
        shot = self.screenshot()
        panel = shot.crop(self.bar_box)
        xs, ys = [], []
        for x in range(0, panel.width - 60):
            for y in range(4, PANEL - 4):
                r, g, b = panel.getpixel((x, y))
                _h, lightness, saturation = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
                if saturation > 0.5 and 0.2 < lightness < 0.85:
                    xs.append(x)
                    ys.append(y)
        if len(xs) >= 20:
            left, top = self.bar_box[:2]
            self._icon = (left + min(xs), top + min(ys), left + max(xs) + 1, top + max(ys) + 1)
            return self._icon
        if self._icon is None:
            return None
        # Not coloured: a grey heart where it was, or nothing (the panel's own colour) there.
        background = shot.getpixel((self.width // 2, self.height - PANEL // 2))
        drawn = sum(
            1
            for x in range(self._icon[0], self._icon[2])
            for y in range(self._icon[1], self._icon[3])
            if sum(abs(a - b) for a, b in zip(shot.getpixel((x, y)), background, strict=True)) > 60
        )
        return self._icon if drawn >= 20 else None

    def menu_box(self) -> tuple[int, int, int, int] | None:
        """Plasma's menu for the item, above the panel: the large light area on the right."""
        shot = self.screenshot().convert("L")
        bottom = self.height - PANEL
        rows = [
            y
            for y in range(0, bottom)
            if sum(1 for x in range(self.width - 400, self.width, 4) if shot.getpixel((x, y)) > 225)
            > 30
        ]
        if len(rows) < 60:
            return None
        middle = (rows[0] + rows[-1]) // 2
        xs = [x for x in range(self.width - 600, self.width) if shot.getpixel((x, middle)) > 225]
        return min(xs), rows[0], max(xs) + 1, rows[-1] + 1

    base: dict[str, str]  # the session's environment, for every process of it


def _session(host: KdePlasma, folder: Path, extra: dict[str, str]) -> None:
    host.base = {
        "HOME": str(folder),
        "XDG_CONFIG_HOME": str(folder / "config"),
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CACHE_HOME": str(folder / "cache"),
        "XDG_RUNTIME_DIR": str(folder),
        "XDG_CURRENT_DESKTOP": "KDE",
        "KDE_FULL_SESSION": "true",
        "KDE_SESSION_VERSION": "5",
        "LIBGL_ALWAYS_SOFTWARE": "1",
        **extra,
    }
    bus, address = start_bus(
        folder,
        host.base,
        services={
            "org.kde.ActivityManager": ACTIVITY_MANAGER,
            "org.kde.kglobalaccel": need("kglobalaccel5"),
        },
    )
    host.procs["bus"] = bus
    host.env["DBUS_SESSION_BUS_ADDRESS"] = address


def _start(
    host: KdePlasma, name: str, argv: list[str], extra: dict[str, str] | None = None
) -> None:
    with (host.folder / f"{name}.log").open("ab") as log:
        host.procs[name] = subprocess.Popen(
            argv,
            env={**host._session_env(), **(extra or {})},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _desktop(host: KdePlasma) -> KdePlasma:
    """kded5 (the watcher), then the shell with its tray."""
    try:
        _start(host, "kded", [need("kded5")])
        wait_until(host.watcher_up, timeout=30, what="kded5's StatusNotifierWatcher")
        host.start_panel()
    except AssertionError:
        host.stop()
        raise
    return host


def start_kde_plasma() -> KdePlasma:
    """Plasma on X11: Xvfb and kwin_x11."""
    folder = Path(tempfile.mkdtemp(prefix="hb-kde-"))
    folder.chmod(0o700)
    host = KdePlasma("kde-plasma", folder, {})
    xvfb, display = start_xvfb()
    host.procs["xvfb"] = xvfb
    host.display = display
    host.env["DISPLAY"] = display
    # the bus starts kactivitymanagerd and kglobalaccel5: they need the display too
    _session(host, folder, {"DISPLAY": display, "QT_QPA_PLATFORM": "xcb"})
    _start(host, "kwin", [need("kwin_x11")])
    return _desktop(host)


class KdePlasmaWayland(KdePlasma):
    """Plasma on Wayland: a virtual kwin_wayland; the app has no X display at all."""

    def screenshot(self) -> Image.Image:
        return kwin_input.screenshot(self.env["DBUS_SESSION_BUS_ADDRESS"])

    def click(self, x: int, y: int, button: str) -> None:
        kwin_input.click(str(self.folder / WAYLAND_SOCKET), x, y, button)


WAYLAND_SOCKET = "wayland-kde"


def start_kde_plasma_wayland() -> KdePlasmaWayland:
    folder = Path(tempfile.mkdtemp(prefix="hb-kdew-"))
    folder.chmod(0o700)
    host = KdePlasmaWayland("kde-plasma-wayland", folder, {})
    _session(
        host,
        folder,
        {
            "WAYLAND_DISPLAY": WAYLAND_SOCKET,
            "XDG_SESSION_TYPE": "wayland",
            "QT_QPA_PLATFORM": "wayland",
            "KWIN_WAYLAND_NO_PERMISSION_CHECKS": "1",  # fake input for the test's clicks
            "KWIN_SCREENSHOT_NO_PERMISSION_CHECKS": "1",  # and its screenshots
        },
    )
    # The installed binary carries a file capability (cap_sys_resource) that a container may
    # refuse to exec; a copy has none. It must keep its name.
    kwin = folder / "bin" / "kwin_wayland"
    kwin.parent.mkdir()
    shutil.copy(need("kwin_wayland"), kwin)
    size = ["--width", str(host.width), "--height", str(host.height)]
    _start(
        host,
        "kwin",
        [str(kwin), "--virtual", *size, "--no-lockscreen", "--socket", WAYLAND_SOCKET],
        {"QT_QPA_PLATFORM": ""},
    )
    try:
        wait_until((folder / WAYLAND_SOCKET).exists, timeout=30, what="kwin_wayland's socket")
    except AssertionError:
        host.stop()
        raise
    return _desktop(host)


__all__ = ["KdePlasma", "KdePlasmaWayland", "start_kde_plasma", "start_kde_plasma_wayland"]
