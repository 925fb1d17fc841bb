"""Where the app keeps its files, per OS (platformdirs; honours XDG_* on Linux)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from heartbeat_tray import APP_NAME


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by this user only, where the OS has modes."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    state_dir: Path
    log_dir: Path

    @classmethod
    def for_user(cls) -> AppPaths:
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        return cls(
            config_dir=Path(dirs.user_config_dir),
            state_dir=Path(dirs.user_state_dir),
            log_dir=Path(dirs.user_log_dir),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def outbox_file(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def installation_id_file(self) -> Path:
        return self.state_dir / "installation-id"

    @property
    def running_file(self) -> Path:
        return self.state_dir / "running.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "instance.lock"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "heartbeat-tray.log"


def autostart_dir() -> Path:
    """XDG autostart folder: ``$XDG_CONFIG_HOME/autostart`` (platformdirs resolves the base)."""
    return Path(platformdirs.user_config_dir()) / "autostart"
