"""Launch at login: Linux for real, macOS via plistlib, Windows through a fake registry."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from heartbeat_tray import __version__
from heartbeat_tray.system.launch_at_login import (
    APPROVED_KEY,
    RUN_KEY,
    WINDOWS_VALUE_NAME,
    LaunchAgent,
    LaunchAtLoginError,
    WindowsRunKey,
    XdgAutostart,
    launch_command,
)

SPACED = ['/opt/My Apps/it\'s "here"/python$1', "-m", "heartbeat_tray", "tray", "--autostart"]


def parse_desktop_exec(line: str) -> list[str]:
    """Undo the two layers of the Desktop Entry spec: string escapes, then Exec quoting."""
    unescaped = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            unescaped.append(
                {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt)
            )
        else:
            unescaped.append(ch)
    text = "".join(unescaped)
    args, current, quoted, started = [], [], False, False
    it = iter(text)
    for ch in it:
        if quoted:
            if ch == "\\":
                current.append(next(it))
            elif ch == '"':
                quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted, started = True, True
        elif ch == " ":
            if current or started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
    if current or started:
        args.append("".join(current))
    return [a.replace("%%", "%") for a in args]


def exec_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("Exec="):
            return line[len("Exec=") :]
    raise AssertionError("no Exec line")


def test_xdg_entry_validates_and_its_exec_runs_the_app(tmp_path: Path) -> None:
    entry = XdgAutostart(tmp_path / "config", [*launch_command()[:3], "--version"])
    assert not entry.is_enabled()
    entry.enable()
    assert entry.path == tmp_path / "config" / "autostart" / "heartbeat-tray.desktop"
    assert entry.is_enabled()
    validator = shutil.which("desktop-file-validate")
    assert validator, "desktop-file-validate (Debian desktop-file-utils) is needed by this test"
    result = subprocess.run([validator, str(entry.path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    argv = parse_desktop_exec(exec_line(entry.path))
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == f"heartbeat-tray {__version__}"


def test_xdg_exec_quoting_survives_spaces_quotes_and_dollars(tmp_path: Path) -> None:
    entry = XdgAutostart(tmp_path, SPACED)
    entry.enable()
    assert parse_desktop_exec(exec_line(entry.path)) == SPACED
    validator = shutil.which("desktop-file-validate")
    assert validator
    assert subprocess.run([validator, str(entry.path)], capture_output=True).returncode == 0


def test_xdg_a_real_interpreter_path_with_spaces_runs(tmp_path: Path) -> None:
    spaced_dir = tmp_path / "dir with spaces"
    spaced_dir.mkdir()
    python = spaced_dir / "py thon"  # a launcher whose own path has a space
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    entry = XdgAutostart(tmp_path / "cfg", [str(python), "-m", "heartbeat_tray", "--version"])
    entry.enable()
    argv = parse_desktop_exec(exec_line(entry.path))
    assert argv[0] == str(python)
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == f"heartbeat-tray {__version__}"


def test_xdg_disable_removes_only_our_entry_and_honours_user_disable_flags(tmp_path: Path) -> None:
    autostart = tmp_path / "autostart"
    autostart.mkdir()
    other = autostart / "someone-else.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=X\nExec=x\n")
    entry = XdgAutostart(tmp_path, SPACED)
    entry.enable()
    for flag in ("Hidden=true", "X-GNOME-Autostart-enabled=false"):
        entry.path.write_text(entry.render().replace("X-GNOME-Autostart-enabled=true", flag))
        assert not entry.is_enabled()
    entry.disable()
    assert not entry.path.exists() and other.exists()
    entry.disable()  # already off: not an error


def test_xdg_read_only_folder_is_one_sentence_and_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/heartbeat-tray-test")  # writable by nobody, root included
        entry = XdgAutostart(target, SPACED)
    else:
        (tmp_path / "autostart").mkdir()
        (tmp_path / "autostart").chmod(0o500)
        entry = XdgAutostart(tmp_path, SPACED)
    with pytest.raises(LaunchAtLoginError, match=r"^Could not write .*heartbeat-tray\.desktop"):
        entry.enable()
    assert not entry.is_enabled()


def test_mac_launch_agent_is_a_run_at_load_plist_without_keepalive(tmp_path: Path) -> None:
    agent = LaunchAgent(tmp_path, SPACED)
    assert not agent.is_enabled()
    agent.enable()
    data = plistlib.loads(agent.path.read_bytes())
    assert agent.path.parent == tmp_path / "Library" / "LaunchAgents"
    assert data["ProgramArguments"] == SPACED  # an argument array: no quoting to get wrong
    assert data["RunAtLoad"] is True
    assert "KeepAlive" not in data
    assert data["Label"] == agent.path.stem
    assert agent.is_enabled()
    data["Disabled"] = True
    agent.path.write_bytes(plistlib.dumps(data))
    assert not agent.is_enabled()
    agent.disable()
    assert not agent.path.exists()


class FakeRegistry:
    """HKCU with the semantics the strategy relies on; can refuse writes like a locked policy."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}
        self.denied = False

    def get(self, key: str, name: str) -> object | None:
        return self.values.get((key, name))

    def _check(self) -> None:
        if self.denied:
            raise PermissionError(5, "Access is denied")

    def set_string(self, key: str, name: str, value: str) -> None:
        self._check()
        self.values[(key, name)] = value

    def set_binary(self, key: str, name: str, value: bytes) -> None:
        self._check()
        self.values[(key, name)] = value

    def delete(self, key: str, name: str) -> None:
        self._check()
        self.values.pop((key, name), None)


def windows_argv(command_line: str) -> list[str]:
    """Parse per the MSVC rules used by CommandLineToArgvW for the cases we produce."""
    args, current, quoted, backslashes = [], [], False, 0
    started = False
    for ch in command_line:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            current.append("\\" * (backslashes // 2))
            if backslashes % 2:
                current.append('"')
            else:
                quoted = not quoted
                started = True
            backslashes = 0
            continue
        current.append("\\" * backslashes)
        backslashes = 0
        if ch == " " and not quoted:
            if (current and "".join(current)) or started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
    current.append("\\" * backslashes)
    if "".join(current) or started:
        args.append("".join(current))
    return args


def test_windows_run_value_quotes_paths_and_reads_startup_approved() -> None:
    registry = FakeRegistry()
    command = [r"C:\Program Files\Heartbeat Tray\heartbeat-tray.exe", "tray", "--autostart"]
    run_key = WindowsRunKey(registry, command)
    assert not run_key.is_enabled()
    run_key.enable()
    stored = registry.values[(RUN_KEY, WINDOWS_VALUE_NAME)]
    assert stored == '"C:\\Program Files\\Heartbeat Tray\\heartbeat-tray.exe" tray --autostart'
    assert windows_argv(str(stored)) == command
    assert run_key.is_enabled()
    # Task Manager's "Disable" leaves the Run value and writes 03 to StartupApproved.
    registry.values[(APPROVED_KEY, WINDOWS_VALUE_NAME)] = bytes([3]) + bytes(11)
    assert not run_key.is_enabled()
    registry.values[(APPROVED_KEY, WINDOWS_VALUE_NAME)] = bytes([2]) + bytes(11)
    assert run_key.is_enabled()
    registry.values[(APPROVED_KEY, WINDOWS_VALUE_NAME)] = bytes([3]) + bytes(11)
    run_key.enable()  # turning it on in the app overrides the earlier disable
    assert run_key.is_enabled()
    registry.values[("other", "Someone Else")] = "x"
    run_key.disable()
    assert not run_key.is_enabled()
    assert registry.values == {("other", "Someone Else"): "x"}


def test_windows_path_with_quotes_and_spaces_round_trips() -> None:
    run_key = WindowsRunKey(FakeRegistry(), SPACED)
    assert windows_argv(run_key.command_line()) == SPACED


def test_windows_denied_registry_is_one_sentence_and_changes_nothing() -> None:
    registry = FakeRegistry()
    registry.denied = True
    with pytest.raises(LaunchAtLoginError, match=r"^Windows refused to change the startup entry"):
        WindowsRunKey(registry, SPACED).enable()
    assert registry.values == {}


def test_the_registered_command_is_this_interpreter_with_the_package() -> None:
    assert launch_command() == [sys.executable, "-m", "heartbeat_tray", "tray", "--autostart"]
    assert shlex.join(launch_command())  # plain strings all the way
