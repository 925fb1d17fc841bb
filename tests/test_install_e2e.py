"""The README's first command, as a newcomer runs it: the app installed for the user, on PATH,
in an environment of its own (the test environment's PyGObject never reaches it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_install_and_start_leaves_heartbeat_tray_on_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-and-start"), "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("heartbeat-tray 0.1.0")
    assert "is not on your PATH" in done.stdout  # ~/.local/bin is not, in this home
    assert "Uninstall: rm -rf" in done.stdout
    command = home / ".local" / "bin" / "heartbeat-tray"
    again = subprocess.run(
        ["heartbeat-tray", "--version"],
        capture_output=True,
        text=True,
        env={**env, "PATH": f"{command.parent}:{env['PATH']}"},
        timeout=60,
    )
    assert again.stdout.strip() == "heartbeat-tray 0.1.0"
    venv_python = home / ".local" / "share" / "heartbeat-tray" / "venv" / "bin" / "python"
    no_gi = subprocess.run(
        [str(venv_python), "-c", "import importlib.util as u; print(u.find_spec('gi') is None)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_gi.stdout.strip() == "True"  # the tray keeps its own backend, whatever tests add
