"""A real X desktop for tests: Xvfb, a tray host (trayer), xdotool clicks, screenshots."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from testkit.waiting import wait_until

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
ICON_CLASS = "heartbeat-traySystemTrayIcon"


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is needed by the desktop tests; run scripts/setup-tests"
    return path


@dataclass
class Desktop:
    display: str
    xvfb: subprocess.Popen[bytes]
    tray_host: subprocess.Popen[bytes] | None  # None: a desktop without a tray (vanilla GNOME)

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display}

    def _x(self) -> Any:
        import Xlib.display

        return Xlib.display.Display(self.display)

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(
            [need("xdotool"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=20,
        )
        return result.stdout.strip()

    def find_windows(self, class_name: str) -> list[int]:
        out = self.xdotool("search", "--classname", class_name)
        return [int(w) for w in out.split()]

    def icon_window(self, backend: str = "xorg", timeout: float = 20.0) -> int:
        """The icon's own window: pystray's xorg window, or GTK's status icon once docked."""

        def windows() -> list[int]:
            if backend == "xorg":
                return self.find_windows(ICON_CLASS)
            # GTK names its windows after the program; only the status icon docks
            return [w for w in self.find_windows("heartbeat-tray") if self.is_docked(w)]

        found = wait_until(windows, timeout, what=f"the {backend} tray icon window")
        return int(found[0])

    def parent_of(self, window: int) -> tuple[int, int]:
        """(parent, root) of a window, from the X server itself."""
        display = self._x()
        try:
            tree = display.create_resource_object("window", window).query_tree()
            return tree.parent.id, tree.root.id
        finally:
            display.close()

    def is_docked(self, window: int) -> bool:
        """In a tray, and shown there: reparented into it, then mapped (a click before the
        map lands on whatever is under the pointer)."""
        try:
            parent, root = self.parent_of(window)
        except Exception:
            return False
        return parent != root and self.is_viewable(window)

    def is_viewable(self, window: int) -> bool:
        import Xlib.X

        display = self._x()
        try:
            attributes = display.create_resource_object("window", window).get_attributes()
            return bool(attributes.map_state == Xlib.X.IsViewable)
        except Exception:
            return False
        finally:
            display.close()

    def title(self, window: int) -> str:
        display = self._x()
        try:
            win = display.create_resource_object("window", window)
            prop = win.get_full_property(
                display.intern_atom("_NET_WM_NAME"), display.intern_atom("UTF8_STRING")
            )
            return bytes(prop.value).decode("utf-8") if prop else ""
        except Exception:
            return ""
        finally:
            display.close()

    def grab(self, window: int) -> Image.Image:
        """The window's pixels as the X server shows them."""
        display = self._x()
        try:
            win = display.create_resource_object("window", window)
            geometry = win.get_geometry()
            raw = win.get_image(0, 0, geometry.width, geometry.height, 2, 0xFFFFFFFF)
            return Image.frombytes(
                "RGB", (geometry.width, geometry.height), raw.data, "raw", "BGRX"
            )
        finally:
            display.close()

    def screenshot(self, name: str, window: int | None = None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if window is None:
            subprocess.run(
                [need("import"), "-window", "root", str(path)],
                env={**os.environ, **self.env},
                check=True,
                timeout=20,
            )
        else:
            image = self.grab(window)
            image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST).save(path)
        return path

    def click(self, window: int, button: int, x: int = 10, y: int = 10) -> None:
        self.xdotool("mousemove", "--window", str(window), str(x), str(y), "click", str(button))

    def click_at(self, x: int, y: int, button: int = 1) -> None:
        self.xdotool("mousemove", str(x), str(y), "click", str(button))

    def geometry(self, window: int) -> tuple[int, int, int, int]:
        out = self.xdotool("getwindowgeometry", "--shell", str(window))
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def stop(self) -> None:
        for proc in (self.tray_host, self.xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def tray_owner(display: str) -> bool:
    import Xlib.display

    try:
        d = Xlib.display.Display(display)
    except Exception:
        return False
    try:
        atom = d.intern_atom("_NET_SYSTEM_TRAY_S0")
        owner = d.get_selection_owner(atom)
        return bool(getattr(owner, "id", owner))  # X.NONE (0) while nobody owns the tray
    finally:
        d.close()


def start_xvfb(size: str = "1024x768x24") -> tuple[subprocess.Popen[bytes], str]:
    """An X server of our own: a free display number, chosen by Xvfb itself."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        [need("Xvfb"), "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    assert number, "Xvfb did not start"
    return xvfb, f":{number}"


def start_desktop(with_tray_host: bool = True) -> Desktop:
    xvfb, display = start_xvfb("800x600x24")
    desktop = Desktop(display, xvfb, None)
    if with_tray_host:
        try:
            start_tray_host(desktop)
        except AssertionError:
            desktop.stop()
            raise
    return desktop


def start_tray_host(desktop: Desktop) -> None:
    """trayer on the desktop, once it owns the system tray selection."""
    trayer_bin = need("trayer")
    problem = ""
    for _attempt in range(3):
        host = desktop.tray_host = _start_tray_host(trayer_bin, desktop.display)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and host.poll() is None:
            if tray_owner(desktop.display):
                return
            time.sleep(0.05)
        # trayer died or never took the selection: say why, and give it another go
        problem = _tray_host_output(host, desktop.display)
        if host.poll() is None:
            host.kill()
            host.wait()
    raise AssertionError(f"trayer never took the system tray selection: {problem!r}")


def _start_tray_host(trayer_bin: str, display: str) -> subprocess.Popen[bytes]:
    # its stderr goes to a file (a pipe could fill up and stall it), kept for a failure message
    with _tray_host_log(display).open("wb") as log:
        return subprocess.Popen(
            [
                trayer_bin,
                *("--edge", "top", "--align", "left", "--widthtype", "pixel", "--width", "200"),
                *("--heighttype", "pixel", "--height", "32", "--SetDockType", "true"),
                *("--expand", "false", "--transparent", "true", "--alpha", "0"),
            ],
            # no accessibility bridge and no D-Bus autolaunch: nothing but the X display
            env={
                **os.environ,
                "DISPLAY": display,
                "NO_AT_BRIDGE": "1",
                "DBUS_SESSION_BUS_ADDRESS": "disabled:",
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _tray_host_log(display: str) -> Path:
    return (
        Path(tempfile.gettempdir()) / f"heartbeat-tray-tests-trayer{display.replace(':', '-')}.log"
    )


def _tray_host_output(proc: subprocess.Popen[bytes], display: str) -> str:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)
    return f"exit {proc.returncode}: {_tray_host_log(display).read_text(errors='replace')[-500:]}"


def menu_item_centres(menu: Image.Image, layout: list[int]) -> list[tuple[int, int]]:
    """Centres of a Tk menu's entries, found from its separator lines.

    ``layout`` is the number of entries in each group between separators, e.g. [3, 5, 1].
    """
    width, height = menu.size
    background = menu.getpixel((width - 3, height // 2))
    separator_rows = []
    for y in range(height):
        row = [menu.getpixel((x, y)) for x in range(width // 10, width - width // 10)]
        if all(p == row[0] for p in row) and row[0] != background:
            separator_rows.append(y)
    # group consecutive rows into separators; the menu's own border rows come first and last
    groups: list[list[int]] = []
    for y in separator_rows:
        if groups and y - groups[-1][-1] == 1:
            groups[-1].append(y)
        else:
            groups.append([y])
    top_border = groups[0] if groups and groups[0][0] == 0 else []
    bottom_border = groups[-1] if groups and groups[-1][-1] == height - 1 else []
    separators = [g for g in groups if g is not top_border and g is not bottom_border]
    assert len(separators) == len(layout) - 1, f"found {len(separators)} separators"
    bounds = [len(top_border)]
    for sep in separators:
        bounds += [sep[0], sep[-1] + 1]
    bounds.append(height - len(bottom_border))
    centres = []
    for i, count in enumerate(layout):
        top, bottom = bounds[2 * i], bounds[2 * i + 1]
        step = (bottom - top) / count
        centres += [(width // 2, round(top + step * (k + 0.5))) for k in range(count)]
    return centres
