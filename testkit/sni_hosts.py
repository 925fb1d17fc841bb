"""Real StatusNotifierItem hosts, headless: waybar on a headless sway (Wayland, no X at all)
and xfce4-panel on Xvfb (X11, where it is both an XEmbed tray and an SNI watcher). Each runs on
a private session bus that the app under test joins; each can screenshot and click.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from PIL import Image

from testkit.desktop import ARTIFACTS, start_xvfb
from testkit.private_bus import start_private_bus
from testkit.waiting import wait_until

VPOINTER = Path(__file__).with_name("wl_vpointer.py")
WATCHER = "org.kde.StatusNotifierWatcher"
BAR_HEIGHT = 30
NOBODY = 65534


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is needed by the SNI tests; run scripts/setup-tests"
    return path


def name_has_owner(env: dict[str, str], name: str) -> bool:
    result = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=10,
    )
    return "boolean true" in result.stdout


@dataclass
class SniHost:
    """A tray host on its own session bus; ``env`` is what the app needs to reach it."""

    name: str
    folder: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    extra_folders: list[Path] = field(default_factory=list)

    @property
    def folders(self) -> list[Path]:
        return [self.folder, *self.extra_folders]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                # the whole group where it has one (sway starts swaybg)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def app_env(self) -> dict[str, str]:
        """What the app under test gets: the session bus, and the display where there is one."""
        return {k: v for k, v in self.env.items() if k in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY")}

    def menu_box(self) -> tuple[int, int, int, int] | None:
        """The host's own popup menu under the bar: a large light area."""
        shot = self.screenshot().convert("L")
        width, height = shot.size
        rows = [
            y
            for y in range(BAR_HEIGHT + 2, min(height, 600))
            if sum(1 for x in range(width - 400, width, 4) if shot.getpixel((x, y)) > 200) > 30
        ]
        if len(rows) < 60:
            return None
        xs = [
            x
            for x in range(width - 600, width)
            if shot.getpixel((x, (rows[0] + rows[-1]) // 2)) > 200
        ]
        return min(xs), rows[0], max(xs) + 1, rows[-1] + 1

    def watcher_up(self) -> bool:
        return name_has_owner(self.env, WATCHER)

    def registered_items(self) -> list[str]:
        """The items the watcher holds (bus name and path of each)."""
        with open_dbus_connection(bus=self.env["DBUS_SESSION_BUS_ADDRESS"]) as conn:
            watcher = DBusAddress(
                "/StatusNotifierWatcher",
                bus_name=WATCHER,
                interface="org.freedesktop.DBus.Properties",
            )
            reply = conn.send_and_get_reply(
                new_method_call(watcher, "Get", "ss", (WATCHER, "RegisteredStatusNotifierItems")),
                timeout=5,
            )
        return [i for i in reply.body[0][1] if i]

    def menu_labels(self) -> list[str]:
        """The whole menu as a host reads it: GetLayout on the item's dbusmenu."""
        (item,) = self.registered_items()
        service = item.split("/", 1)[0].rstrip("@")  # GNOME's watcher writes ":1.32@/path"
        with open_dbus_connection(bus=self.env["DBUS_SESSION_BUS_ADDRESS"]) as conn:
            menu = DBusAddress("/MenuBar", bus_name=service, interface="com.canonical.dbusmenu")
            layout = conn.send_and_get_reply(
                new_method_call(menu, "GetLayout", "iias", (0, -1, [])), timeout=5
            )
        _revision, (_root, _props, children) = layout.body
        return [
            props["label"][1] if "label" in props else "—" for _sig, (_id, props, _k) in children
        ]

    # --- looking and clicking ---

    def screenshot(self) -> Image.Image:
        raise NotImplementedError

    def click(self, x: int, y: int, button: str) -> None:
        raise NotImplementedError

    def save(self, name: str, box: tuple[int, int, int, int] | None = None) -> Image.Image:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        image = self.screenshot()
        shot = image.crop(box) if box else image
        shot.save(ARTIFACTS / f"{name}.png")
        return image

    def icon_box(self) -> tuple[int, int, int, int] | None:
        """Where an icon is drawn in the bar: what differs from the bar's background at its
        right end (both hosts put the tray there)."""
        bar = self.screenshot().convert("RGB").crop((0, 0, self.width, BAR_HEIGHT))
        background = bar.getpixel((self.width // 2, BAR_HEIGHT - 2))
        xs, ys = [], []
        for x in range(self.width - 200, self.width):
            for y in range(2, BAR_HEIGHT - 2):
                pixel = bar.getpixel((x, y))
                if sum(abs(a - b) for a, b in zip(pixel, background, strict=True)) > 60:
                    xs.append(x)
                    ys.append(y)
        if len(xs) < 20:
            return None
        return min(xs), min(ys), max(xs) + 1, max(ys) + 1

    @property
    def bar_box(self) -> tuple[int, int, int, int]:
        """The bar's right end, where the tray is: what a screenshot of the icon shows."""
        return self.width - 220, 0, self.width, BAR_HEIGHT

    def around(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A screenshot's box for an open menu: the menu and the bar it hangs from."""
        return box[0] - 20, 0, self.width, box[3] + 20

    def icon_centre(self) -> tuple[int, int]:
        box = wait_until(self.icon_box, timeout=15, what=f"the icon drawn in {self.name}")
        return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2

    width = 1024


class WaybarOnSway(SniHost):
    def screenshot(self) -> Image.Image:
        out = subprocess.run(
            [need("grim"), "-t", "ppm", "-"], capture_output=True, env=self.wl_env, timeout=20
        )
        import io

        return Image.open(io.BytesIO(out.stdout)).convert("RGB")

    @property
    def wl_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "WAYLAND_DISPLAY": "wayland-1"}

    def click(self, x: int, y: int, button: str) -> None:
        subprocess.run(
            [sys.executable, str(VPOINTER), "click", str(x), str(y), button, "1024", "768"],
            env=self.wl_env,
            check=True,
            timeout=20,
            capture_output=True,
        )

    def restart_bar(self) -> None:
        bar = self.procs.pop("waybar")
        bar.kill()
        bar.wait(timeout=5)
        wait_until(lambda: not self.watcher_up(), what="the watcher gone")
        self.procs["waybar"] = self._start_waybar()
        wait_until(self.watcher_up, what="waybar's watcher back")

    def _start_waybar(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                need("waybar"),
                "-c",
                str(self.folder / "waybar.json"),
                "-s",
                str(self.folder / "waybar.css"),
            ],
            env=self.wl_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_bus(
    folder: Path, extra: dict[str, str] | None = None, services: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A private session bus (none of the machine's service files) at ``folder``/bus."""
    bus, address = start_private_bus(
        {**os.environ, **(extra or {})},
        address=f"unix:path={folder}/bus",
        services=services,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: (folder / "bus").exists(), what="the session bus")
    return bus, address


def xfconfd() -> str:
    """xfce4-panel's settings daemon, which the panel starts through D-Bus."""
    found = sorted(Path("/usr/lib").glob("*/xfce4/xfconf/xfconfd"))
    assert found, "xfconfd is needed by xfce4-panel; run scripts/setup-tests"
    return str(found[0])


def start_waybar_on_sway() -> WaybarOnSway:
    folder = Path(tempfile.mkdtemp(prefix="hb-sway-"))
    runtime = Path(tempfile.mkdtemp(prefix="wl-"))  # sway runs as nobody, outside any 0700 folder
    os.chown(runtime, NOBODY, NOBODY)
    runtime.chmod(0o700)
    (runtime / "sway.conf").write_text(
        "xwayland disable\n"
        "output HEADLESS-1 mode 1024x768 position 0 0 bg #336699 solid_color\n"
        "default_border none\n"
    )
    os.chown(runtime / "sway.conf", NOBODY, NOBODY)
    (folder / "waybar.json").write_text(
        '{"layer":"top","position":"top","height":30,"modules-right":["tray"],'
        '"tray":{"icon-size":24,"spacing":4}}'
    )
    (folder / "waybar.css").write_text("window#waybar { background: #202020; }\n")
    bus, address = start_bus(folder)
    host = WaybarOnSway(
        "waybar", folder, {"DBUS_SESSION_BUS_ADDRESS": address, "XDG_RUNTIME_DIR": str(runtime)}
    )
    host.procs["bus"] = bus
    host.extra_folders.append(runtime)
    sway_env = {
        k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY")
    }
    sway_env.update(
        XDG_RUNTIME_DIR=str(runtime),
        HOME=str(runtime),
        WLR_BACKENDS="headless",
        WLR_LIBINPUT_NO_DEVICES="1",
        WLR_RENDERER="pixman",
    )
    host.procs["sway"] = subprocess.Popen(
        [
            need("setpriv"),
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            need("sway"),
            "-c",
            str(runtime / "sway.conf"),
        ],
        env=sway_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: (runtime / "wayland-1").exists(), what="sway's Wayland socket")
    # headless sway has no pointer until a client makes one
    host.procs["pointer"] = subprocess.Popen(
        [sys.executable, str(VPOINTER), "hold"],
        env=host.wl_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    host.procs["waybar"] = host._start_waybar()
    wait_until(host.watcher_up, timeout=20, what="waybar's StatusNotifierWatcher")
    return host


class X11Panel(SniHost):
    """A panel on Xvfb: screenshots with ImageMagick, clicks with xdotool."""

    display = ""

    def screenshot(self) -> Image.Image:
        out = subprocess.run(
            [need("import"), "-window", "root", "-depth", "8", "ppm:-"],
            capture_output=True,
            env={**os.environ, "DISPLAY": self.display},
            timeout=20,
        )
        import io

        return Image.open(io.BytesIO(out.stdout)).convert("RGB")

    def click(self, x: int, y: int, button: str) -> None:
        number = {"left": "1", "middle": "2", "right": "3"}[button]
        subprocess.run(
            [need("xdotool"), "mousemove", str(x), str(y), "click", number],
            env={**os.environ, "DISPLAY": self.display},
            check=True,
            timeout=20,
        )

    def start_panel(self) -> None:
        self.procs["panel"] = self._start_panel()
        wait_until(self.watcher_up, timeout=30, what=f"{self.name}'s StatusNotifierWatcher")

    def restart_bar(self) -> None:
        panel = self.procs.pop("panel")
        panel.kill()
        panel.wait(timeout=5)
        wait_until(lambda: not self.watcher_up(), what="the watcher gone")
        self.start_panel()

    def _start_panel(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError


class XfcePanel(X11Panel):
    def _start_panel(self) -> subprocess.Popen[bytes]:
        self._lay_config()
        return subprocess.Popen(
            [need("xfce4-panel"), "--disable-wm-check"],
            env={
                **os.environ,
                **self.env,
                "DISPLAY": self.display,
                "GDK_BACKEND": "x11",
                "NO_AT_BRIDGE": "1",
                "HOME": str(self.folder),
                "XDG_CONFIG_HOME": str(self.folder / "config"),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _lay_config(self) -> None:
        """One panel at the top, a separator that expands and the systray; laid afresh for
        every start (xfconfd writes known-items back into it)."""
        xml = self.folder / "config" / "xfce4" / "xfconf" / "xfce-perchannel-xml"
        xml.mkdir(parents=True, exist_ok=True)
        (xml / "xfce4-panel.xml").write_text(PANEL_XML)


PANEL_XML = """<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="30"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
        <value type="int" value="2"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="separator">
      <property name="expand" type="bool" value="true"/>
      <property name="style" type="uint" value="0"/>
    </property>
    <property name="plugin-2" type="string" value="systray">
      <property name="square-icons" type="bool" value="true"/>
    </property>
  </property>
</channel>
"""


def start_xfce_panel(with_panel: bool = True) -> XfcePanel:
    """xfce4-panel on Xvfb; ``with_panel=False``: the display and bus only, the panel started
    later with ``start_panel()`` (a panel that comes after the app, as at a racy login)."""
    folder = Path(tempfile.mkdtemp(prefix="hb-xfce-"))
    # xfconfd is started by D-Bus activation and takes the bus daemon's environment
    base = {"HOME": str(folder), "XDG_CONFIG_HOME": str(folder / "config")}
    host = XfcePanel("xfce4-panel", folder, {})
    host._lay_config()
    bus, address = start_bus(folder, base, services={"org.xfce.Xfconf": xfconfd()})
    host.env = {"DBUS_SESSION_BUS_ADDRESS": address}
    host.procs["bus"] = bus
    xvfb, display = start_xvfb()
    host.procs["xvfb"] = xvfb
    host.display = display
    host.env["DISPLAY"] = display
    if with_panel:
        host.start_panel()
    return host


class LxqtPanel(X11Panel):
    """LXQt's panel with its statusnotifier plugin (watcher and host in one). No theme is
    installed, so the bar is black; its menus are drawn light. It writes what it dislikes about
    an item (a missing property, say) to its stderr, kept in ``panel.log``."""

    @property
    def log(self) -> str:
        path = self.folder / "panel.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start_panel(self) -> subprocess.Popen[bytes]:
        config = self.folder / "config" / "lxqt"
        config.mkdir(parents=True, exist_ok=True)
        (config / "panel.conf").write_text(LXQT_PANEL_CONF)
        with (self.folder / "panel.log").open("ab") as log:
            return subprocess.Popen(
                [need("lxqt-panel")],
                env={
                    **os.environ,
                    **self.env,
                    "DISPLAY": self.display,
                    "QT_QPA_PLATFORM": "xcb",
                    "HOME": str(self.folder),
                    "XDG_CONFIG_HOME": str(self.folder / "config"),
                    "XDG_RUNTIME_DIR": str(self.folder),
                },
                stdout=log,
                stderr=log,
                start_new_session=True,
            )


LXQT_PANEL_CONF = """[General]
__userfile__=true

[panel1]
alignment=-1
height=30
lineCount=1
position=Top
plugins=spacer, statusnotifier
width=100
width-percent=true

[spacer]
type=spacer
expandable=true

[statusnotifier]
type=statusnotifier
"""


def start_lxqt_panel() -> LxqtPanel:
    folder = Path(tempfile.mkdtemp(prefix="hb-lxqt-"))
    folder.chmod(0o700)
    host = LxqtPanel("lxqt-panel", folder, {})
    bus, address = start_bus(folder)
    host.env = {"DBUS_SESSION_BUS_ADDRESS": address}
    host.procs["bus"] = bus
    xvfb, display = start_xvfb()
    host.procs["xvfb"] = xvfb
    host.display = display
    host.env["DISPLAY"] = display
    host.start_panel()
    return host
