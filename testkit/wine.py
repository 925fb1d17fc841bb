"""The official Windows CPython under Wine (set up by scripts/setup-windows in .wine-test/):
run the app's Windows code paths for real — winreg, the Credential Manager keyring, pystray's
win32 backend with real clicks, PyInstaller.

Wine's pitfalls, each of which cost a failure: Python dies when stdout or stderr is a regular
file (pipes only); a crash would start winedbg, which waits forever (the setup removes it);
output is cp1252 without PYTHONUTF8=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WINE_ROOT = ROOT / ".wine-test"
PYTHON = WINE_ROOT / "py312" / "python.exe"


def wine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTHOG_", "PYSTRAY", "HEARTBEAT_TRAY", "XDG_", "DBUS"))
    }
    env.update(
        WINEPREFIX=str(WINE_ROOT / "prefix"),
        WINEDEBUG="-all",
        WINEDLLOVERRIDES="mscoree,mshtml=",
        PYTHONUTF8="1",
    )
    env.update(extra or {})
    return env


def available() -> str | None:
    """Why the Windows tests cannot run here, or None."""
    if not PYTHON.exists():
        return "no Windows Python: run scripts/setup-windows (setup-tests does)"
    if shutil.which("wine") is None:
        return "Wine is not installed: run scripts/setup-windows"
    return None


def run(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python.exe ARGS`` under Wine, stdin from ``input`` (else nothing), output on pipes."""
    return subprocess.run(
        ["wine", str(PYTHON), *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=wine_env(env),
        timeout=timeout,
    )


def start(*args: str, env: dict[str, str] | None = None, program: list[str] | None = None) -> Any:
    return subprocess.Popen(
        [*(program or ["wine", str(PYTHON)]), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=wine_env(env),
    )


def install_project() -> None:
    """This working tree, as a wheel, into the Windows Python (dependencies are already there)."""
    out = WINE_ROOT / "whl-tests"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    done = run(
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--force-reinstall",
        "--no-index",
        "--no-warn-script-location",
        str(wheel),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def app_data() -> Path:
    """%LOCALAPPDATA%\\heartbeat-tray of the Wine user (settings, state and log live there)."""
    users = WINE_ROOT / "prefix" / "drive_c" / "users"
    (local,) = [p for p in users.glob("*/AppData/Local") if p.parent.parent.name != "Public"]
    return local / "heartbeat-tray"


def reg_query(key: str, name: str) -> str | None:
    result = subprocess.run(
        ["wine", "reg", "query", key, "/v", name],
        input="",
        capture_output=True,
        text=True,
        env=wine_env(),
        timeout=60,
    )
    for line in result.stdout.splitlines():
        text = line.strip()
        if text.startswith(name + " ") or text.startswith(name + "\t"):
            parts = text[len(name) :].split(None, 1)  # REG_SZ, the value
            return parts[1] if len(parts) == 2 else ""
    return None


def reg_add_binary(key: str, name: str, hex_bytes: str) -> None:
    subprocess.run(
        ["wine", "reg", "add", key, "/v", name, "/t", "REG_BINARY", "/d", hex_bytes, "/f"],
        input="",
        capture_output=True,
        text=True,
        env=wine_env(),
        timeout=60,
        check=True,
    )


def kill_all() -> None:
    """End every Windows process of the prefix: killing ``wine`` does not end the program it
    started (wineserver keeps it running)."""
    subprocess.run(["wineserver", "-k"], env=wine_env(), capture_output=True, timeout=60)
    subprocess.run(["wineserver", "-w"], env=wine_env(), capture_output=True, timeout=60)
