"""Cinnamon's StatusNotifierItem bridge, headless: ``xapp-sn-watcher`` on Xvfb and a private
session bus. Cinnamon's panel does not speak StatusNotifierItem; this bridge is the watcher
there, and turns each item into an XApp status icon (``org.x.StatusIcon``) that the panel's
applet draws and sends its clicks to. The test plays that applet's part: it owns an
``org.x.StatusIconMonitor`` name (without one the bridge does not start), reads the icon the
bridge publishes and sends it the applet's ButtonPress/ButtonRelease. The bridge itself pops up
the item's menu (GTK, from our dbusmenu) on the X display, where xdotool clicks it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from PIL import Image

from testkit.desktop import ARTIFACTS, start_xvfb
from testkit.sni_hosts import WATCHER, name_has_owner, start_bus
from testkit.waiting import wait_until

BRIDGE = Path("/usr/libexec/xapps/sn-watcher/xapp-sn-watcher")
MONITOR = "org.x.StatusIconMonitor.cinnamon_0"  # the name Cinnamon's applet takes
ICON_PREFIX = "org.x.StatusIcon."
BUTTONS = {"left": 1, "middle": 2, "right": 3}
PANEL_BOTTOM = 1  # XAppStatusIcon's panel position: where the menu opens from


@dataclass
class CinnamonBridge:
    folder: Path
    display: str
    env: dict[str, str]
    monitor: DBusConnection
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    @property
    def app_env(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def log(self) -> str:
        path = self.folder / "bridge.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _call(
        self, address: DBusAddress, method: str, signature: str = "", body: tuple = ()
    ) -> Any:
        reply = self.monitor.send_and_get_reply(
            new_method_call(address, method, signature, body), timeout=5
        )
        return reply.body

    def icons(self) -> list[tuple[str, str]]:
        """(bus name, object path) of every XApp status icon on the bus."""
        dbus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        found = []
        for name in self._call(dbus, "ListNames")[0]:
            if name.startswith(ICON_PREFIX):
                manager = DBusAddress(
                    "/org/x/StatusIcon",
                    bus_name=name,
                    interface="org.freedesktop.DBus.ObjectManager",
                )
                with contextlib.suppress(Exception):
                    found += [(name, path) for path in self._call(manager, "GetManagedObjects")[0]]
        return found

    def properties(self) -> dict[str, Any]:
        """The one icon's org.x.StatusIcon properties, as the applet reads them."""
        ((name, path),) = self.icons()
        props = DBusAddress(path, bus_name=name, interface="org.freedesktop.DBus.Properties")
        return {
            k: v
            for k, (_sig, v) in self._call(props, "GetAll", "s", ("org.x.StatusIcon",))[0].items()
        }

    def icon_image(self) -> Image.Image:
        """The picture the applet would draw: the bridge writes each icon to a PNG file."""
        return Image.open(self.properties()["IconName"]).convert("RGBA")

    def click(self, button: str, x: int = 600, y: int = 740) -> None:
        """The applet's click on the icon at (x, y): a press, then a release."""
        ((name, path),) = self.icons()
        icon = DBusAddress(path, bus_name=name, interface="org.x.StatusIcon")
        for method in ("ButtonPress", "ButtonRelease"):
            self._call(icon, method, "iiuui", (x, y, BUTTONS[button], 0, PANEL_BOTTOM))

    def xdotool(self, *args: str) -> str:
        return subprocess.run(
            [shutil.which("xdotool") or "xdotool", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "DISPLAY": self.display},
            timeout=20,
        ).stdout.strip()

    def menu_box(self) -> tuple[int, int, int, int] | None:
        """The bridge's GTK menu on the display: its one large visible window."""
        for window in self.xdotool("search", "--onlyvisible", "--class", "xapp-sn-watcher").split():
            values = dict(
                line.split("=", 1)
                for line in self.xdotool("getwindowgeometry", "--shell", window).splitlines()
                if "=" in line
            )
            x, y = int(values["X"]), int(values["Y"])
            width, height = int(values["WIDTH"]), int(values["HEIGHT"])
            if width > 100 and height > 100:
                return x, y, x + width, y + height
        return None

    def screenshot(
        self, name: str | None = None, box: tuple[int, int, int, int] | None = None
    ) -> Image.Image:
        """The whole display; with ``name``, also saved (cropped to ``box``) as an artifact."""
        out = subprocess.run(
            [shutil.which("import") or "import", "-window", "root", "-depth", "8", "ppm:-"],
            capture_output=True,
            env={**os.environ, "DISPLAY": self.display},
            check=True,
            timeout=20,
        )
        image = Image.open(io.BytesIO(out.stdout)).convert("RGB")
        if name:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (image.crop(box) if box else image).save(ARTIFACTS / f"{name}.png")
        return image

    def click_at(self, x: int, y: int) -> None:
        self.xdotool("mousemove", str(x), str(y), "click", "1")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            self.monitor.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cinnamon_bridge() -> CinnamonBridge:
    assert BRIDGE.exists(), "xapp-sn-watcher is needed by this test; run scripts/setup-tests"
    folder = Path(tempfile.mkdtemp(prefix="hb-xapp-"))
    folder.chmod(0o700)
    bus, address = start_bus(folder)
    xvfb, display = start_xvfb()
    env = {"DBUS_SESSION_BUS_ADDRESS": address, "DISPLAY": display}
    monitor = open_dbus_connection(bus=address)
    bridge = CinnamonBridge(folder, display, env, monitor, {"bus": bus, "xvfb": xvfb})
    dbus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    assert bridge._call(dbus, "RequestName", "su", (MONITOR, 4)) == (1,)  # the applet is here
    with (folder / "bridge.log").open("ab") as log:
        bridge.procs["bridge"] = subprocess.Popen(
            [str(BRIDGE)],
            env={
                **os.environ,
                **env,
                "XDG_CURRENT_DESKTOP": "X-Cinnamon",  # it runs only where it is Cinnamon's part
                "GSETTINGS_BACKEND": "memory",  # its settings' defaults
                "HOME": str(folder),
                "XDG_RUNTIME_DIR": str(folder),
                "NO_AT_BRIDGE": "1",
            },
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: name_has_owner(env, WATCHER), timeout=20, what="the bridge's watcher")
    except AssertionError:
        bridge.stop()
        raise
    return bridge
