"""Logging: a rotating file always, stderr for the command line; the API key is never written."""

from __future__ import annotations

import logging
import re
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from heartbeat_tray.keystore import mask

# Anything shaped like a PostHog key is cut to the prefix that `status` shows anyway.
_KEY_PATTERN = re.compile(r"\b(ph[cxs]_[A-Za-z0-9]{4})[A-Za-z0-9]+")


def redact(text: str) -> str:
    return _KEY_PATTERN.sub(r"\1…", text)


# Exact key values, for keys that do not look like phc_…
_SECRETS: set[str] = set()


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        for secret in _SECRETS:
            text = text.replace(secret, mask(secret))
        return text


class ConsoleFormatter(RedactingFormatter):
    """One line per record for a person at a terminal: tracebacks stay in the log file."""

    def format(self, record: logging.LogRecord) -> str:
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info = plain.exc_text = plain.stack_info = None
        return super().format(plain)


def never_log(secret: str) -> None:
    """Register a key value so that no log line can contain it, whatever its shape."""
    if len(secret) >= 8:
        _SECRETS.add(secret)


def configure_logging(log_file: Path, *, to_stderr: bool, verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = RotatingFileHandler(
            log_file, maxBytes=1_000_000, backupCount=3, encoding="utf-8", delay=True
        )
        file_handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)
    except OSError as exc:  # a read-only home must not stop the heartbeat
        print(f"heartbeat-tray: cannot write the log file {log_file}: {exc}", file=sys.stderr)
    # In a windowed (frozen) build there is no stderr at all.
    if to_stderr and sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(stream)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
