"""GNOME Shell 43, headless on Wayland, with or without the AppIndicator extension: the tray host
of Ubuntu and of every GNOME user who enabled it, and the no-tray desktop of vanilla GNOME.

The shell needs a session bus (private: only dconf may be started on demand) and a "system" bus
(also private: without one it dies at start looking for logind). Screenshots through
``org.gnome.Shell.Screenshot``, which GNOME answers for a caller that owns the name
``org.gnome.Screenshot``; clicks through mutter's ``org.gnome.Mutter.RemoteDesktop``, one session
for the whole test (each new one shows an indicator that moves the tray icons).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from PIL import Image, ImageChops

from testkit.private_bus import start_private_bus
from testkit.sni_hosts import SniHost, name_has_owner, need
from testkit.waiting import wait_until

APPINDICATOR = "ubuntu-appindicators@ubuntu.com"
WIDTH, HEIGHT = 1280, 800
BUTTONS = {"left": 0x110, "right": 0x111, "middle": 0x112}  # evdev codes
DCONF_SERVICE = "/usr/libexec/dconf-service"
ESCAPE = 0xFF1B  # keysym
BAR = 32  # the top bar's height


class GnomeShell(SniHost):
    width = WIDTH

    def __init__(self, name: str, folder: Path, env: dict[str, str]) -> None:
        super().__init__(name, folder, env)
        self._conn: DBusConnection | None = None
        self._session = ""
        self._baseline = Image.new("RGB", (WIDTH, HEIGHT))

    @property
    def app_env(self) -> dict[str, str]:
        """A Wayland app of this session: its bus, its runtime folder and Wayland display."""
        keep = ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "WAYLAND_DISPLAY")
        return {k: v for k, v in self.env.items() if k in keep}

    def connection(self) -> DBusConnection:
        if self._conn is None:
            self._conn = open_dbus_connection(bus=self.env["DBUS_SESSION_BUS_ADDRESS"])
            self._conn.send_and_get_reply(
                message_bus.RequestName("org.gnome.Screenshot"), timeout=5
            )
        return self._conn

    def _call(self, path: str, name: str, iface: str, member: str, sig: str, body: Any) -> Any:
        address = DBusAddress(path, bus_name=name, interface=iface)
        reply = self.connection().send_and_get_reply(
            new_method_call(address, member, sig, body), timeout=10
        )
        assert reply.header.message_type == MessageType.method_return, reply.body
        return reply.body

    def screenshot(self) -> Image.Image:
        target = self.folder / "shot.png"
        ok, _used = self._call(
            "/org/gnome/Shell/Screenshot",
            "org.gnome.Shell.Screenshot",
            "org.gnome.Shell.Screenshot",
            "Screenshot",
            "bbs",
            (False, False, str(target)),
        )
        assert ok, "GNOME Shell refused the screenshot"
        with Image.open(target) as image:
            return image.convert("RGB")

    def _pointer(self, member: str, sig: str, body: Any) -> None:
        if not self._session:
            (path,) = self._call(
                "/org/gnome/Mutter/RemoteDesktop",
                "org.gnome.Mutter.RemoteDesktop",
                "org.gnome.Mutter.RemoteDesktop",
                "CreateSession",
                "",
                (),
            )
            self._session = path
            self._session_call("Start", "", ())
        self._session_call(member, sig, body)

    def _session_call(self, member: str, sig: str, body: Any) -> None:
        self._call(
            self._session,
            "org.gnome.Mutter.RemoteDesktop",
            "org.gnome.Mutter.RemoteDesktop.Session",
            member,
            sig,
            body,
        )

    def settle(self) -> None:
        """Leave the overview GNOME starts in, let the remote-desktop indicator and the first
        banner come and go, and keep the screen as it is then: what an icon or menu changes
        is told against it."""
        self.key(ESCAPE)
        self.move(WIDTH - 1, HEIGHT - 1)
        shots = [self.screenshot()]

        def still() -> bool:
            shots.append(self.screenshot())
            return shots[-1].tobytes() == shots[-2].tobytes()

        wait_until(still, timeout=30, what="GNOME Shell's screen to settle")
        self._baseline = shots[-1]

    def _changed(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """Where the screen differs from the settled one inside ``box``, or None."""
        now = self.screenshot().crop(box)
        before = self._baseline.crop(box)
        diff = ImageChops.difference(now, before).convert("L").point(lambda v: 255 if v > 40 else 0)
        found = diff.getbbox()
        if found is None:
            return None
        return found[0] + box[0], found[1] + box[1], found[2] + box[0], found[3] + box[1]

    def icon_box(self) -> tuple[int, int, int, int] | None:
        """Our icon in the top bar: what changed there, right of the clock."""
        found = self._changed((WIDTH // 2 + 100, 0, WIDTH, BAR))
        return found if found and found[2] - found[0] >= 8 else None

    def menu_box(self) -> tuple[int, int, int, int] | None:
        """The extension's menu under the bar."""
        found = self._changed((0, BAR, WIDTH, HEIGHT))
        return found if found and found[3] - found[1] > 100 else None

    def move(self, x: int, y: int) -> None:
        # park in the bottom-right corner (top-left is the activities hot corner), then go
        self._pointer("NotifyPointerMotionRelative", "dd", (float(WIDTH * 2), float(HEIGHT * 2)))
        self._pointer(
            "NotifyPointerMotionRelative", "dd", (float(x - WIDTH + 1), float(y - HEIGHT + 1))
        )

    def click(self, x: int, y: int, button: str) -> None:
        self.move(x, y)
        self._pointer("NotifyPointerButton", "ib", (BUTTONS[button], True))
        self._pointer("NotifyPointerButton", "ib", (BUTTONS[button], False))

    def key(self, keysym: int) -> None:
        self._pointer("NotifyKeyboardKeysym", "ub", (keysym, True))
        self._pointer("NotifyKeyboardKeysym", "ub", (keysym, False))

    def double_click(self, x: int, y: int) -> None:
        self.move(x, y)
        for _ in range(2):
            self._pointer("NotifyPointerButton", "ib", (BUTTONS["left"], True))
            self._pointer("NotifyPointerButton", "ib", (BUTTONS["left"], False))

    @property
    def log(self) -> str:
        path = self.folder / "shell.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        super().stop()


def start_gnome_shell(appindicator: bool = True) -> GnomeShell:
    """GNOME Shell with the AppIndicator extension, or vanilla (no tray of any kind)."""
    need("gnome-shell")
    folder = Path(tempfile.mkdtemp(prefix="hb-gnome-"))
    runtime = folder / "run"
    home = folder / "home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    base = {
        **os.environ,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    for gone in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        base.pop(gone, None)
    host = GnomeShell("gnome-shell" if appindicator else "vanilla-gnome", folder, {})
    session, address = start_private_bus(
        base,
        address=f"unix:path={runtime}/bus",
        services={"ca.desrt.dconf": DCONF_SERVICE},
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    host.procs["bus"] = session
    system, system_address = start_private_bus(
        base, stderr=subprocess.DEVNULL, start_new_session=True
    )
    host.procs["system-bus"] = system
    env = {**base, "DBUS_SESSION_BUS_ADDRESS": address, "DBUS_SYSTEM_BUS_ADDRESS": system_address}
    extensions = f"['{APPINDICATOR}']" if appindicator else "[]"
    for schema, key, value in (
        ("org.gnome.shell", "enabled-extensions", extensions),
        ("org.gnome.desktop.interface", "enable-animations", "false"),
        ("org.gnome.shell", "welcome-dialog-last-shown-version", "'999'"),
        # no banners over the screen that is compared: GNOME shows "Screen Lock disabled" at
        # start (no display manager here) and hides it whenever it likes
        ("org.gnome.desktop.screensaver", "lock-enabled", "false"),
        ("org.gnome.desktop.notifications", "show-banners", "false"),
    ):
        subprocess.run(
            [need("gsettings"), "set", schema, key, value], env=env, check=True, timeout=20
        )
    with (folder / "shell.log").open("wb") as log:
        host.procs["shell"] = subprocess.Popen(
            [
                need("gnome-shell"),
                "--headless",
                "--wayland",
                "--virtual-monitor",
                f"{WIDTH}x{HEIGHT}",
            ],
            env={
                **env,
                "XDG_SESSION_TYPE": "wayland",
                "XDG_CURRENT_DESKTOP": "GNOME",
                "LIBGL_ALWAYS_SOFTWARE": "1",
                "NO_AT_BRIDGE": "1",
                "GTK_A11Y": "none",
            },
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    host.env = {
        "DBUS_SESSION_BUS_ADDRESS": address,
        "XDG_RUNTIME_DIR": str(runtime),
        "WAYLAND_DISPLAY": "wayland-0",
    }
    for name in ("org.gnome.Shell.Screenshot", "org.gnome.Mutter.RemoteDesktop"):
        wait_until(lambda n=name: name_has_owner(host.env, n), timeout=60, what=f"{name} up")
    if appindicator:
        wait_until(host.watcher_up, timeout=30, what="the AppIndicator extension's watcher")
    host.settle()
    return host
