"""Launch at login: one interface, one strategy per OS, status read from what the OS reads."""

from __future__ import annotations

import logging
import plistlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from heartbeat_tray.system.app_command import app_command
from heartbeat_tray.system.atomic_file import write_atomically
from heartbeat_tray.system.paths import autostart_dir

log = logging.getLogger(__name__)

APP_ID = "heartbeat-tray"
MAC_LABEL = "org.heartbeat-tray.app"
WINDOWS_VALUE_NAME = "Heartbeat Tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"


class LaunchAtLoginError(Exception):
    """The OS refused the change; ``str()`` is one sentence for the user. Nothing was changed."""


class LaunchAtLogin(Protocol):
    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def is_enabled(self) -> bool: ...
    def describe(self) -> str: ...


def launch_command() -> list[str]:
    """What the entry runs: the frozen app itself, or this interpreter with the package.

    On Windows the interpreter is ``pythonw.exe`` (beside ``python.exe``): ``python.exe`` would
    open a console window at every login. The frozen app is already windowed.
    """
    command = app_command("tray", "--autostart")
    if sys.platform == "win32" and not getattr(sys, "frozen", False):
        windowed = Path(command[0]).with_name("pythonw.exe")
        if windowed.exists():
            command[0] = str(windowed)
    return command


# --- Linux and other XDG desktops ---

_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def desktop_exec_quote(arg: str) -> str:
    """Quote one argument per the Desktop Entry spec's Exec rules (before string escaping)."""
    arg = arg.replace("%", "%%")
    if arg and not (set(arg) & _EXEC_RESERVED):
        return arg
    inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{inner}"'


def desktop_string_escape(value: str) -> str:
    """Escape a Desktop Entry string value (the layer under Exec quoting)."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


class _EntryFile:
    """An entry that is one file of ours (XDG autostart, LaunchAgent): write it, remove it."""

    path: Path

    def __init__(self, path: Path, command: Sequence[str] | None) -> None:
        self.path = path
        self._command = list(command or launch_command())

    def describe(self) -> str:
        return str(self.path)

    def content(self) -> bytes:
        raise NotImplementedError

    def enable(self) -> None:
        try:
            write_atomically(self.path, self.content(), mode=0o644)
        except OSError as exc:
            raise LaunchAtLoginError(
                f"Could not write {self.path} ({exc.strerror}); check that the folder is writable."
            ) from None

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise LaunchAtLoginError(
                f"Could not remove {self.path} ({exc.strerror}); check the folder's permissions."
            ) from None


class XdgAutostart(_EntryFile):
    def __init__(self, config_home: Path, command: Sequence[str] | None = None) -> None:
        super().__init__(config_home / "autostart" / f"{APP_ID}.desktop", command)

    def render(self) -> str:
        exec_line = " ".join(desktop_exec_quote(arg) for arg in self._command)
        return (
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=Heartbeat Tray\n"
            "Comment=Sends a PostHog heartbeat event every interval\n"
            f"Exec={desktop_string_escape(exec_line)}\n"
            f"Icon={APP_ID}\n"
            "Terminal=false\n"
            "NoDisplay=true\n"
            "X-GNOME-Autostart-enabled=true\n"
        )

    def content(self) -> bytes:
        return self.render().encode("utf-8")

    def is_enabled(self) -> bool:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return False
        entry: dict[str, str] = {}
        in_main = False
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                in_main = line == "[Desktop Entry]"
            elif in_main and "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                entry[key.strip()] = value.strip()
        if entry.get("Hidden", "").lower() == "true":
            return False
        if entry.get("X-GNOME-Autostart-enabled", "true").lower() == "false":
            return False
        return bool(entry.get("Exec"))


# --- macOS ---


class LaunchAgent(_EntryFile):
    def __init__(self, home: Path, command: Sequence[str] | None = None) -> None:
        super().__init__(home / "Library" / "LaunchAgents" / f"{MAC_LABEL}.plist", command)

    def content(self) -> bytes:
        # RunAtLoad only: KeepAlive would relaunch the app every time the user quits it.
        return plistlib.dumps(
            {
                "Label": MAC_LABEL,
                "ProgramArguments": self._command,
                "RunAtLoad": True,
                "ProcessType": "Interactive",
            }
        )

    def is_enabled(self) -> bool:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        if not isinstance(data, dict) or data.get("Disabled") is True:
            return False
        return bool(data.get("RunAtLoad")) and bool(data.get("ProgramArguments"))


# --- Windows ---


class Registry(Protocol):
    """The few HKEY_CURRENT_USER operations needed; raise OSError when denied."""

    def get(self, key: str, name: str) -> object | None: ...
    def set_string(self, key: str, name: str, value: str) -> None: ...
    def set_binary(self, key: str, name: str, value: bytes) -> None: ...
    def delete(self, key: str, name: str) -> None: ...


if sys.platform == "win32":
    import winreg

    class WinRegistry:
        def get(self, key: str, name: str) -> object | None:
            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                    value, _kind = winreg.QueryValueEx(handle, name)
                    return value  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        def _set(self, key: str, name: str, kind: int, value: object) -> None:
            access = winreg.KEY_SET_VALUE | winreg.KEY_QUERY_VALUE
            with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0, access) as handle:
                winreg.SetValueEx(handle, name, 0, kind, value)

        def set_string(self, key: str, name: str, value: str) -> None:
            self._set(key, name, winreg.REG_SZ, value)

        def set_binary(self, key: str, name: str, value: bytes) -> None:
            self._set(key, name, winreg.REG_BINARY, value)

        def delete(self, key: str, name: str) -> None:
            try:
                with winreg.OpenKey(
                    winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE
                ) as handle:
                    winreg.DeleteValue(handle, name)
            except FileNotFoundError:
                pass


# Task Manager writes 12 bytes: a flag (02/06 enabled, 03 disabled) and a FILETIME.
_APPROVED_ENABLED = bytes([2]) + bytes(11)


class WindowsRunKey:
    def __init__(self, registry: Registry, command: Sequence[str] | None = None) -> None:
        self._registry = registry
        self._command = list(command or launch_command())

    def describe(self) -> str:
        return rf"HKCU\{RUN_KEY}\{WINDOWS_VALUE_NAME}"

    def command_line(self) -> str:
        return subprocess.list2cmdline(self._command)

    def enable(self) -> None:
        try:
            self._registry.set_string(RUN_KEY, WINDOWS_VALUE_NAME, self.command_line())
            # Turning it on here overrides an earlier "Disable" in Task Manager, as the user asked.
            if self._registry.get(APPROVED_KEY, WINDOWS_VALUE_NAME) is not None:
                self._registry.set_binary(APPROVED_KEY, WINDOWS_VALUE_NAME, _APPROVED_ENABLED)
        except OSError as exc:
            raise LaunchAtLoginError(
                f"Windows refused to change the startup entry ({exc}); nothing was changed."
            ) from None

    def disable(self) -> None:
        try:
            self._registry.delete(RUN_KEY, WINDOWS_VALUE_NAME)
            self._registry.delete(APPROVED_KEY, WINDOWS_VALUE_NAME)
        except OSError as exc:
            raise LaunchAtLoginError(
                f"Windows refused to change the startup entry ({exc}); nothing was changed."
            ) from None

    def is_enabled(self) -> bool:
        try:
            if not self._registry.get(RUN_KEY, WINDOWS_VALUE_NAME):
                return False
            approved = self._registry.get(APPROVED_KEY, WINDOWS_VALUE_NAME)
        except OSError:
            return False
        if isinstance(approved, bytes | bytearray) and approved:
            return approved[0] & 1 == 0  # 02/06 enabled; 03 (odd) disabled by the user
        return True


def for_this_os() -> LaunchAtLogin:
    if sys.platform == "win32":
        return WindowsRunKey(WinRegistry())
    if sys.platform == "darwin":
        return LaunchAgent(Path.home())
    return XdgAutostart(autostart_dir().parent)


def state_text(strategy: LaunchAtLogin) -> str:
    try:
        return "on" if strategy.is_enabled() else "off"
    except Exception:
        log.warning("Could not read the launch-at-login state", exc_info=True)
        return "unknown"
