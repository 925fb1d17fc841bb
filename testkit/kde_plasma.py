"""KDE Plasma 5.27 on X11, headless: Xvfb, kwin_x11, kded5 (whose statusnotifierwatcher module
owns ``org.kde.StatusNotifierWatcher``) and plasmashell, on a private session bus. The default
layout has a bottom panel with the system tray. Clicks with xdotool, screenshots with
ImageMagick; what the icon and its menu change is told against the screen before the app ran.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from testkit.desktop import start_xvfb
from testkit.sni_hosts import X11Panel, need, start_bus
from testkit.waiting import wait_until

WIDTH, HEIGHT = 1024, 768
PANEL = 44  # the default bottom panel's height


class KdePlasma(X11Panel):
    width = WIDTH
    _baseline: Image.Image | None = None

    def settle(self) -> None:
        shots = [self.screenshot()]

        def still() -> bool:
            shots.append(self.screenshot())
            return shots[-1].tobytes() == shots[-2].tobytes()

        wait_until(still, timeout=60, what="Plasma's screen to settle")
        self._baseline = shots[-1]

    def _changed(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        assert self._baseline is not None
        diff = ImageChops.difference(self.screenshot().crop(box), self._baseline.crop(box))
        found = diff.convert("L").point(lambda v: 255 if v > 40 else 0).getbbox()
        if found is None:
            return None
        return found[0] + box[0], found[1] + box[1], found[2] + box[0], found[3] + box[1]

    def icon_box(self) -> tuple[int, int, int, int] | None:
        """Our icon in the bottom panel's tray (the clock at the far right changes too)."""
        found = self._changed((WIDTH // 2, HEIGHT - PANEL, WIDTH - 120, HEIGHT))
        return found if found and found[2] - found[0] >= 8 else None

    def menu_box(self) -> tuple[int, int, int, int] | None:
        found = self._changed((0, 0, WIDTH, HEIGHT - PANEL))
        return found if found and found[3] - found[1] > 100 else None

    @property
    def log(self) -> str:
        path = self.folder / "plasma.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _session_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "DISPLAY": self.display,
            "HOME": str(self.folder),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "XDG_DATA_HOME": str(self.folder / "data"),
            "XDG_CACHE_HOME": str(self.folder / "cache"),
            "XDG_RUNTIME_DIR": str(self.folder),
            "XDG_CURRENT_DESKTOP": "KDE",
            "KDE_FULL_SESSION": "true",
            "QT_QPA_PLATFORM": "xcb",
            "LIBGL_ALWAYS_SOFTWARE": "1",
        }

    def _spawn(self, *command: str) -> subprocess.Popen[bytes]:
        with (self.folder / "plasma.log").open("ab") as log:
            return subprocess.Popen(
                list(command),
                env=self._session_env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _start_panel(self) -> subprocess.Popen[bytes]:
        return self._spawn(need("plasmashell"), "--no-respawn")


def start_kde_plasma() -> KdePlasma:
    folder = Path(tempfile.mkdtemp(prefix="hb-kde-"))
    folder.chmod(0o700)
    host = KdePlasma("plasma", folder, {})
    bus, address = start_bus(folder)
    host.env = {"DBUS_SESSION_BUS_ADDRESS": address}
    host.procs["bus"] = bus
    xvfb, display = start_xvfb(f"{WIDTH}x{HEIGHT}x24")
    host.procs["xvfb"] = xvfb
    host.display = display
    host.env["DISPLAY"] = display
    host.procs["kwin"] = host._spawn(need("kwin_x11"))
    host.procs["kded"] = host._spawn(need("kded5"))
    host.start_panel()
    host.settle()
    return host
