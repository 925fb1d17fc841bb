"""The project API key: from POSTHOG_PROJECT_API_KEY or the OS keyring, never from a file."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TextIO

log = logging.getLogger(__name__)

SERVICE = "heartbeat-tray"
USERNAME = "project-api-key"
ENV_VAR = "POSTHOG_PROJECT_API_KEY"

_PROJECT_KEY_SHAPE = re.compile(r"phc_[A-Za-z0-9]{30,60}")


class KeyringUnavailable(Exception):
    """The OS keyring cannot be used; ``str()`` says why and what to do."""


class InvalidKey(ValueError):
    """The text given is not a usable project API key; ``str()`` says which key to use."""


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: Literal["environment", "keyring"]

    @property
    def masked(self) -> str:
        return mask(self.value)


def mask(key: str) -> str:
    return f"{key[:8]}…" if len(key) > 8 else "…"


def check_key_text(text: str) -> tuple[str, str | None]:
    """Return the key stripped and an optional warning, or raise InvalidKey with one sentence."""
    key = text.strip()
    if not key:
        raise InvalidKey("The project API key is empty; paste the phc_… key from Project settings.")
    if key.startswith("phx_"):
        raise InvalidKey(
            "This looks like a personal API key (phx_…); use the project API key (phc_…) "
            "from Project settings."
        )
    if key.startswith("phs_"):
        raise InvalidKey(
            "This looks like a secret key (phs_…); use the project API key (phc_…) "
            "from Project settings."
        )
    if not key.isascii() or any(ch.isspace() or not ch.isprintable() for ch in key):
        raise InvalidKey(
            "The project API key may only contain letters, digits and _ ; "
            "copy the phc_… key again from Project settings."
        )
    if len(key) > 64:
        raise InvalidKey("The project API key is longer than 64 characters; copy it again.")
    warning = None
    if not _PROJECT_KEY_SHAPE.fullmatch(key):
        warning = (
            "This key does not look like a project API key (phc_ followed by about 43 "
            "characters); older self-hosted keys may differ, so it is used as given."
        )
    return key, warning


def _keyring_error_message(exc: Exception) -> str:
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        why = "no keyring service was found (none is running in this session)"
    else:
        why = str(exc).rstrip(".") or type(exc).__name__
    return (
        f"the system keyring is not available: {why}; "
        f"set {ENV_VAR} or unlock (or install) a keyring such as GNOME Keyring or KWallet."
    )


class KeyStore:
    """Reads the key once, lazily, and keeps it in memory; writes go straight to the keyring."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, read_in_child: bool = False
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._read_in_child = read_in_child
        self._lock = threading.Lock()
        self._cached: ApiKey | None = None
        self._loaded = False

    def get(self) -> ApiKey | None:
        """The key, or None when none is stored. Raises KeyringUnavailable."""
        env_value = self._environ.get(ENV_VAR, "").strip()
        if env_value:
            return ApiKey(env_value, "environment")
        with self._lock:
            if not self._loaded:
                value = read_in_child_process() if self._read_in_child else self._read_keyring()
                self._cached = ApiKey(value, "keyring") if value else None
                self._loaded = True
            return self._cached

    def forget_cached(self) -> None:
        """Read the keyring again next time (after the settings dialog stored a new key)."""
        with self._lock:
            self._loaded = False
            self._cached = None

    def store(self, key: str) -> None:
        import keyring
        from keyring.errors import KeyringError

        try:
            keyring.set_password(SERVICE, USERNAME, key)
        except (KeyringError, RuntimeError) as exc:
            log.warning("Storing the key in the keyring failed", exc_info=True)
            raise KeyringUnavailable(_keyring_error_message(exc)) from None
        with self._lock:
            self._cached = ApiKey(key, "keyring")
            self._loaded = True

    def clear(self) -> bool:
        """Remove the stored key; False when there was none."""
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            keyring.delete_password(SERVICE, USERNAME)
            removed = True
        except PasswordDeleteError:
            removed = False  # already gone
        except (KeyringError, RuntimeError) as exc:
            log.warning("Removing the key from the keyring failed", exc_info=True)
            raise KeyringUnavailable(_keyring_error_message(exc)) from None
        with self._lock:
            self._cached = None
            self._loaded = True
        return removed

    @staticmethod
    def _read_keyring() -> str | None:
        # Imported here: the first keyring use loads every backend (+86 ms, +17 MiB).
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(SERVICE, USERNAME)
        except (KeyringError, RuntimeError) as exc:
            log.warning("Reading the key from the keyring failed", exc_info=True)
            raise KeyringUnavailable(_keyring_error_message(exc)) from None


# A child process hands the key to its parent over a pipe: never argv, a file or a log line.
KEY_PIPE_COMMAND = "_key-pipe"
KEY_PIPE_NO_KEY = 4
KEY_PIPE_UNAVAILABLE = 3


def read_in_child_process(timeout: float = 120.0) -> str | None:
    """Read the keyring in a child process of this app (a locked keyring may ask the user)."""
    import subprocess

    from heartbeat_tray.app_command import app_command

    try:
        child = subprocess.run(
            app_command(KEY_PIPE_COMMAND),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise KeyringUnavailable(
            f"the system keyring is not available: it did not answer within {timeout:.0f} s; "
            f"set {ENV_VAR} or unlock the keyring."
        ) from None
    if child.returncode == 0:
        return child.stdout.strip() or None
    if child.returncode == KEY_PIPE_NO_KEY:
        return None
    message = child.stderr.strip().splitlines()[-1:] or ["the key reader failed"]
    raise KeyringUnavailable(message[0])


def write_key_to_pipe(stdout: TextIO | None, stderr: TextIO | None) -> int:
    """The child's side: the key to a pipe (never to a terminal), or an exit code saying why."""
    if stdout is None or stdout.isatty():
        if stderr is not None:
            print("This command is for Heartbeat Tray's own use.", file=stderr)
        return 2
    try:
        key = KeyStore(environ={}).get()
    except KeyringUnavailable as exc:
        if stderr is not None:
            print(str(exc), file=stderr)
        return KEY_PIPE_UNAVAILABLE
    if key is None:
        return KEY_PIPE_NO_KEY
    stdout.write(key.value)
    stdout.flush()
    return 0
