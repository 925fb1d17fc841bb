"""The project API key: from POSTHOG_PROJECT_API_KEY or the OS keyring, never from a file."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping

from heartbeat_tray.core.api_key import (
    ApiKey,
    KeyKind,
    KeyringUnavailable,
    check_env_key,
    clean_key_text,
)

log = logging.getLogger(__name__)

SERVICE = "heartbeat-tray"
USERNAME = KeyKind.PROJECT.value


def _keyring_error_message(exc: Exception, kind: KeyKind = KeyKind.PROJECT) -> str:
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        why = "no keyring service was found (none is running in this session)"
    else:
        why = str(exc).rstrip(".") or type(exc).__name__
    return (
        f"the system keyring is not available: {why}; "
        f"set {kind.env_var} or unlock (or install) a keyring such as GNOME Keyring or KWallet."
    )


class KeyStore:
    """Reads the key once, lazily, and keeps it in memory; writes go straight to the keyring."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        read_in_child: bool = False,
        kind: KeyKind = KeyKind.PROJECT,
    ) -> None:
        self.kind = kind
        self._environ = os.environ if environ is None else environ
        # Only where the keyring is the Secret Service (Linux, BSD): its D-Bus backends are what
        # costs ~20 MiB. The Windows and macOS keyrings are cheap, and the hand-over's pipe
        # passing and parent check are POSIX.
        self.read_in_child = read_in_child and sys.platform.startswith(
            ("linux", "freebsd", "openbsd", "netbsd")
        )
        self._lock = threading.Lock()
        self._cached: ApiKey | None = None
        self._loaded = False

    def get(self) -> ApiKey | None:
        """The key, or None when none is stored. Raises KeyringUnavailable (MisplacedKey when
        the environment variable holds the other kind of key)."""
        env_value = check_env_key(self.kind, self._environ.get(self.kind.env_var, ""))
        if env_value:
            return ApiKey(env_value, "environment")
        with self._lock:
            if not self._loaded:
                if self.read_in_child:
                    from heartbeat_tray.system.key_handover import read_in_child_process

                    value = read_in_child_process(self.kind)
                else:
                    value = read_keyring(self.kind)
                value = clean_key_text(value or "")
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
            keyring.set_password(SERVICE, self.kind.value, key)
        except (KeyringError, RuntimeError) as exc:
            _log_failure("Storing the key in the keyring failed", exc)
            raise KeyringUnavailable(_keyring_error_message(exc, self.kind)) from None
        with self._lock:
            self._cached = ApiKey(key, "keyring")
            self._loaded = True

    def clear(self) -> bool:
        """Remove the stored key; False when there was none."""
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            keyring.delete_password(SERVICE, self.kind.value)
            removed = True
        except PasswordDeleteError:
            removed = False  # already gone
        except (KeyringError, RuntimeError) as exc:
            _log_failure("Removing the key from the keyring failed", exc)
            raise KeyringUnavailable(_keyring_error_message(exc, self.kind)) from None
        with self._lock:
            self._cached = None
            self._loaded = True
        return removed


def read_keyring(kind: KeyKind = KeyKind.PROJECT) -> str | None:
    """The stored key, read in this process. Raises KeyringUnavailable."""
    # Imported here: the first keyring use loads every backend (+86 ms, +17 MiB).
    import keyring
    from keyring.errors import KeyringError

    try:
        if not _keyring_exists(keyring.get_keyring()):
            return None  # nothing can be stored in a keyring that does not exist
        return keyring.get_password(SERVICE, kind.value)
    except (KeyringError, RuntimeError) as exc:
        from keyring.errors import NoKeyringError

        message = _keyring_error_message(exc, kind)
        if not isinstance(exc, NoKeyringError):  # worth a traceback, once
            report_unreadable_key(message, exc)
        raise KeyringUnavailable(message) from None  # the caller says it, in its own words


def _keyring_exists(backend: object) -> bool:
    """False when the Secret Service has no default keyring yet. keyring's read would create
    one, and that pops "Choose password for new keyring" (seen: a tray started at login with
    its project key in the environment, looking up the personal key). A read never creates a
    keyring; saving a key does, when the user asks for it."""
    from keyring.backends import SecretService, chainer

    backends = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
    services = [b for b in backends if isinstance(b, SecretService.Keyring)]
    if not services or len(backends) > 1 or hasattr(services[0], "preferred_collection"):
        return True  # another keyring, or a collection the user chose: read as keyring does
    import secretstorage
    from secretstorage.exceptions import ItemNotFoundException, SecretStorageException

    try:
        connection = secretstorage.dbus_init()
    except SecretStorageException:
        return True  # keyring's own read says what is wrong, in its words
    try:
        secretstorage.get_collection_by_alias(connection, "default")
        return True
    except ItemNotFoundException:
        return False
    finally:
        connection.close()


_unreadable_reported = False
_reported_lock = threading.Lock()


def report_unreadable_key(message: str, exc: BaseException | None = None) -> None:
    """One log line per process however often a key cannot be read (both keys, every reload,
    in this process or a hand-over child); a traceback only for a failure that is not simply
    'no keyring here' (85 KB of tracebacks in 10 minutes otherwise)."""
    global _unreadable_reported
    with _reported_lock:
        if _unreadable_reported:
            return
        _unreadable_reported = True
    if exc is None:
        log.warning("Cannot read the API key: %s", message)
    else:
        _log_failure(f"Cannot read the API key: {message}", exc)


def _log_failure(line: str, exc: BaseException) -> None:
    """The line, with a traceback only when the failure is not simply 'no keyring here'."""
    from keyring.errors import NoKeyringError

    log.warning("%s", line, exc_info=None if isinstance(exc, NoKeyringError) else exc)
