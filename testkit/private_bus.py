"""A private D-Bus session bus that reads none of the machine's service files.

``dbus-daemon --session`` reads the system's session.conf, whose service folders would let a
call auto-start whatever another package installed (a notification daemon, a tray watcher) and
change a test's result. This configuration reads only its own service folder, where a test
names the few services it wants started on demand (xfce4-panel's xfconfd, GNOME's dconf):
everything else on the bus is what the test started itself.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{listen}</listen>
  <servicedir>{folder}/services</servicedir>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def start_private_bus(
    env: dict[str, str],
    *,
    address: str | None = None,
    services: dict[str, str] | None = None,
    **popen: Any,
) -> tuple[subprocess.Popen[str], str]:
    """(the daemon, its address); the caller terminates the daemon. ``services``: bus name →
    program, the only ones the bus starts on demand; ``address``: where it listens."""
    assert shutil.which("dbus-daemon"), "dbus-daemon is needed (Debian: dbus)"
    folder = Path(tempfile.mkdtemp(prefix="hb-bus-"))
    (folder / "services").mkdir()
    for name, program in (services or {}).items():
        (folder / "services" / f"{name}.service").write_text(
            f"[D-BUS Service]\nName={name}\nExec={program}\n"
        )
    config = folder / "session.conf"
    config.write_text(CONFIG.format(folder=folder, listen=address or f"unix:tmpdir={folder}"))
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    assert address, "the private session bus did not start"
    return bus, address
