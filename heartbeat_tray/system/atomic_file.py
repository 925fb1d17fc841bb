"""Crash-safe file writes: a temp file in the same folder, fsync, then an atomic replace."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never half."""
    tmp = _complete_temp_file(path, data, mode)
    try:
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def create_exclusively(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write ``path`` only if it does not exist yet; False when another writer got there first."""
    tmp = _complete_temp_file(path, data, mode)
    try:
        try:
            os.link(tmp, path)  # atomic create-if-absent, with the whole content already there
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: last writer wins, still never half
            if path.exists():
                return False
            _replace(tmp, path)
            return True
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _complete_temp_file(path: Path, data: bytes, mode: int) -> Path:
    """``data`` on disk (flushed, fsynced) in a temp file beside ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):  # not every OS or file system has POSIX modes
            os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _replace(src: Path, dst: Path) -> None:
    # Windows refuses to replace a file another process has open; that passes in moments.
    for attempt in range(10):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 9:
                raise
            time.sleep(0.05)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
