"""One ticker per user: an OS file lock the OS releases when the process dies, however it dies."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO

from heartbeat_tray.system.paths import make_private_dir


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another live process holds it."""
        make_private_dir(self.path.parent)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the app's life
        try:
            _lock(handle)
        except OSError:
            handle.close()
            return False
        try:  # the pid is for messages and ``status``; a full disk must not stop the start
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError:
            pass
        self._handle = handle
        return True

    def busy_message(self, what_now: str) -> str:
        """One sentence for a start that found another instance holding the lock."""
        pid = self.holder_pid()
        holder = f" (process {pid})" if pid else ""
        return f"heartbeat-tray is already sending beats for this user{holder}; {what_now}."

    def holder_pid(self) -> int | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
            self._handle.close()
            self._handle = None


if sys.platform == "win32":
    import msvcrt

    def _lock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def running_pid(lock_file: Path) -> int | None:
    """The pid of the running tray or ``run``, found without taking the lock (a start in that
    instant must not think another one is sending)."""
    try:
        text = lock_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # released: the holder truncates the file when it stops
    pid = int(text)
    return pid if pid != os.getpid() and _alive(pid) else None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a killed holder's pid may since belong to another program
        with contextlib.suppress(OSError):
            return b"heartbeat" in cmdline.read_bytes()
    return True
