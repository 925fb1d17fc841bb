"""Logging: a rotating file always, stderr for the command line; the API key is never written.

A log that cannot be written (a read-only or full disk) is dropped quietly: it must never stop
the heartbeat or print tracebacks where the user looks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from logging.handlers import RotatingFileHandler

from heartbeat_tray.core.api_key import mask
from heartbeat_tray.system.paths import AppPaths, make_private_dir

# Anything shaped like a PostHog key is cut to the prefix that `status` shows anyway.
_KEY_PATTERN = re.compile(r"\b(ph[cxs]_[A-Za-z0-9]{4})[A-Za-z0-9]+")

# ``log.info(..., extra=FILE_ONLY)``: for the log file, not the terminal (the command line has
# already said it in a sentence of its own).
FILE_ONLY = {"console": False}


def redact(text: str) -> str:
    return _KEY_PATTERN.sub(r"\1…", text)


# Exact key values, for keys that do not look like phc_…. Replaced as a whole tuple (never
# changed in place), so formatters on other threads iterate a stable snapshot.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def never_log(secret: str) -> None:
    """Register a key value so that no log line can contain it, whatever its shape."""
    global _secrets
    if len(secret) < 8:
        return
    with _secrets_lock:
        if secret not in _secrets:
            _secrets = (*_secrets, secret)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        for secret in _secrets:
            text = text.replace(secret, mask(secret))
        return text


class ConsoleFormatter(RedactingFormatter):
    """One line per record for a person at a terminal: tracebacks stay in the log file."""

    def format(self, record: logging.LogRecord) -> str:
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info = plain.exc_text = plain.stack_info = None
        return super().format(plain)


def _for_console(record: logging.LogRecord) -> bool:
    return getattr(record, "console", True) is not False


def configure_logging(paths: AppPaths, *, to_stderr: bool, verbose: bool = False) -> None:
    logging.raiseExceptions = False  # a full disk mid-run: drop the line, print no traceback
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    log_file = paths.log_file
    try:
        make_private_dir(log_file.parent)
        file_handler = RotatingFileHandler(
            log_file, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
        )
        with contextlib.suppress(OSError):
            os.chmod(log_file, 0o600)
        file_handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)
    except OSError:
        # No log file: the command line still says what matters in its own sentences, and
        # Python's last-resort handler must not print warnings and tracebacks instead.
        root.addHandler(logging.NullHandler())
    # In a windowed (frozen) build there is no stderr at all.
    if to_stderr and sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.addFilter(_for_console)
        stream.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(stream)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
