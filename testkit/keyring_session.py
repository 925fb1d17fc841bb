"""A private D-Bus session bus with an unlocked gnome-keyring: the real Secret Service."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testkit.private_bus import start_private_bus
from testkit.waiting import wait_until


@dataclass
class KeyringSession:
    env: dict[str, str]  # DBUS_SESSION_BUS_ADDRESS and the daemon's variables, to add to an env
    bus: subprocess.Popen[str]

    def stop(self) -> None:
        address = self.env["DBUS_SESSION_BUS_ADDRESS"].encode()
        # the daemon forked away from us: find it by the bus it serves
        for proc_dir in Path("/proc").iterdir():
            try:
                if not proc_dir.name.isdigit():
                    continue
                if b"gnome-keyring" not in (proc_dir / "cmdline").read_bytes():
                    continue
                if address in (proc_dir / "environ").read_bytes():
                    os.kill(int(proc_dir.name), signal.SIGTERM)
            except OSError:
                pass
        self.bus.terminate()
        self.bus.wait(timeout=10)


def start_keyring_session(base_env: dict[str, str], login: bool = True) -> KeyringSession:
    """``login=False``: gnome-keyring with no keyring at all yet (a first login, or a desktop that
    never made one): writing there would ask the user to choose a password for a new one."""
    for tool in ("dbus-daemon", "gnome-keyring-daemon", "secret-tool"):
        assert shutil.which(tool), f"{tool} is needed (Debian: dbus gnome-keyring libsecret-tools)"
    bus, address = start_private_bus(base_env)
    daemon = subprocess.run(
        [
            "gnome-keyring-daemon",
            *(["--unlock"] if login else []),
            "--components=secrets",
            "--daemonize",
        ],
        input="test-password" if login else "",
        capture_output=True,
        text=True,
        env={**base_env, "DBUS_SESSION_BUS_ADDRESS": address},
        timeout=30,
    )
    assert daemon.returncode == 0, daemon.stderr
    extra = {"DBUS_SESSION_BUS_ADDRESS": address}
    for line in daemon.stdout.splitlines():
        name, _, value = line.partition("=")
        if name in ("GNOME_KEYRING_CONTROL", "SSH_AUTH_SOCK"):
            extra[name] = value
    # the daemon forks before it owns its name on the bus: wait, or a quick caller finds none
    wait_until(lambda: _has_owner(address, "org.freedesktop.secrets"), what="gnome-keyring up")
    return KeyringSession(extra, bus)


def _has_owner(address: str, name: str) -> bool:
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(bus=address) as conn:
        reply = conn.send_and_get_reply(message_bus.NameHasOwner(name), timeout=5)
    return bool(reply.body[0])
