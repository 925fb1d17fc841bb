"""The settings file on disk: read without changing it, replaced atomically by a Save (with a
backup), and the installation's own distinct id beside it. What the bytes mean is
``core.settings``."""

from __future__ import annotations

import datetime as dt
import os
import stat
import uuid
from pathlib import Path

import tomli_w

from heartbeat_tray.core.settings import (
    MAX_FILE_BYTES,
    LoadedSettings,
    Settings,
    SettingsError,
    broken_settings,
    settings_from_bytes,
)
from heartbeat_tray.system.atomic_file import create_exclusively, write_atomically


def read_settings_file(path: Path) -> bytes | None:
    """The file's bytes; None when there is none. Raises OSError or SettingsError(file)."""
    try:
        info = os.stat(path)  # follows a link: a link to /dev/zero is judged by its target
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise SettingsError(
            "file", f"{path} is not a regular file; replace it with a plain text file."
        )
    if info.st_size > MAX_FILE_BYTES:
        raise SettingsError(
            "file", f"{path} is {info.st_size:,} bytes, far too large for a settings file."
        )
    with open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def load_settings(path: Path) -> LoadedSettings:
    """Read the settings file without changing it; a broken file is a problem, never defaults."""
    name = path.name
    try:
        raw = read_settings_file(path)
    except SettingsError as exc:
        return broken_settings(Settings(), f"{exc}")
    except OSError as exc:
        return broken_settings(
            Settings(), f"{path} cannot be read ({exc.strerror or exc}); check its permissions."
        )
    if raw is None:
        return LoadedSettings(Settings())
    return settings_from_bytes(raw, name)


def save_settings(path: Path, settings: Settings) -> None:
    write_atomically(path, tomli_w.dumps(settings.to_toml_dict()).encode("utf-8"))


def keep_backup(path: Path, now: dt.datetime) -> Path | None:
    """Copy the current file to ``config.toml.bak-<UTC>`` before a Save replaces it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while not create_exclusively(target, data):
        counter += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    return target


def distinct_id_of(configured: str, id_file: Path) -> str:
    """The distinct id beats go out with: the one configured, else this installation's own."""
    return configured.strip() or installation_id(id_file)


def installation_id(path: Path) -> str:
    """The distinct id used when none is configured: generated once per installation."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    fresh = f"heartbeat-tray-{uuid.uuid4()}"
    if create_exclusively(path, fresh.encode("utf-8")):
        return fresh
    return path.read_text(encoding="utf-8").strip() or fresh
