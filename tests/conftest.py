"""End-to-end fixtures: the real app as a subprocess, a loopback PostHog, a real keyring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.keyring_session import start_keyring_session
from testkit.posthog_server import CaptureServer
from testkit.waiting import wait_until
from tests.fakes import MemoryKeyring

__all__ = ["wait_until"]

KEY = "phc_e2eTestKey0123456789abcdefghijklmnopqrstuv"
ROOT = Path(__file__).resolve().parents[1]


# A test with none of these is in the fast layer (``pytest -n 2 -m fast``).
HEAVY = ("desktop", "frozen", "bench", "slow", "windows")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in HEAVY):
            item.add_marker(pytest.mark.fast)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """keyring's own API over an in-memory backend, for unit tests of the keyring code."""
    import keyring

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    srv = CaptureServer(valid_keys={KEY}).start()
    yield srv
    srv.stop()


class App:
    """The installed app, run the way a user runs it, isolated in a temporary home."""

    def __init__(self, home: Path, env: dict[str, str], program: list[str] | None = None) -> None:
        self.home = home
        self.env = env
        self.program = program or [sys.executable, "-m", "heartbeat_tray"]
        self.procs: list[subprocess.Popen[str]] = []

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "heartbeat-tray" / "config.toml"

    @property
    def state_dir(self) -> Path:
        return self.home / "state" / "heartbeat-tray"

    @property
    def log_file(self) -> Path:
        return self.home / "state" / "heartbeat-tray" / "log" / "heartbeat-tray.log"

    def command(self, *args: str) -> list[str]:
        return [*self.program, *args]

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=60,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
        )
        self.procs.append(proc)
        return proc

    def status(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        result = self.run("status", "--json", env=env)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def write_config(self, text: str) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)

    def all_written_files(self) -> list[Path]:
        return [p for p in self.home.rglob("*") if p.is_file()]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("POSTHOG_PROJECT_API_KEY", "DBUS_SESSION_BUS_ADDRESS", "DISPLAY")
        and not key.startswith(("XDG_", "PYTHON_KEYRING", "GNOME_KEYRING"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        NO_AT_BRIDGE="1",
        # pystray would pick appindicator/gtk when PyGObject is installed (as for the gtk
        # test); the xorg backend, the one pip installs get, is the default under test.
        PYSTRAY_BACKEND="xorg",
    )
    application = App(home, env)
    yield application
    application.cleanup()


@pytest.fixture
def keyring_session(app: App) -> Iterator[dict[str, str]]:
    """A private D-Bus session with an unlocked gnome-keyring: the real Secret Service."""
    session = start_keyring_session(app.env)
    app.env.update(session.env)
    yield session.env
    session.stop()


def secret_tool_lookup(env: dict[str, str]) -> str:
    result = subprocess.run(
        ["secret-tool", "lookup", "service", "heartbeat-tray", "username", "project-api-key"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    return result.stdout
