"""Lets a second launch reach the running tray ("open your settings", "reload settings").

A loopback socket whose port and a random token sit in a 0600 file in the state folder, so only
this user's processes can talk to it. The listening thread blocks in accept(): no idle cost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from heartbeat_tray.system.atomic_file import write_atomically

log = logging.getLogger(__name__)

COMMANDS = ("settings", "reload")


def _channel_file(state_dir: Path) -> Path:
    return state_dir / "instance.json"


class ChannelServer:
    def __init__(self, state_dir: Path, handler: Callable[[str], None]) -> None:
        self._file = _channel_file(state_dir)
        self._handler = handler
        self._token = secrets.token_hex(16)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)

    def start(self) -> None:
        port = self._sock.getsockname()[1]
        info = {"port": port, "token": self._token, "pid": os.getpid()}
        write_atomically(self._file, json.dumps(info).encode())
        threading.Thread(target=self._serve, name="instance-channel", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed: the app is quitting
            with conn:
                conn.settimeout(2.0)
                try:
                    line = conn.makefile("r", encoding="utf-8").readline().strip()
                    token, _, command = line.partition(" ")
                    if not secrets.compare_digest(token, self._token) or command not in COMMANDS:
                        conn.sendall(b"refused\n")
                        continue
                    conn.sendall(b"ok\n")
                except OSError:
                    continue
            log.info("Asked by another launch to: %s", command)
            self._handler(command)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            info = json.loads(self._file.read_text())
            if info.get("pid") == os.getpid():
                self._file.unlink()


def send_command(state_dir: Path, command: str, timeout: float = 3.0) -> bool:
    """Ask the running tray to do ``command``; False when no tray answers."""
    try:
        info = json.loads(_channel_file(state_dir).read_text())
        with socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout) as conn:
            conn.sendall(f"{info['token']} {command}\n".encode())
            return conn.makefile("r").readline().strip() == "ok"
    except (OSError, ValueError, KeyError, TypeError):
        return False
