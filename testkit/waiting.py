"""Waiting on a condition with a deadline: no sleep-and-hope anywhere in the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll a cheap condition (another process's files or windows); fail loudly on timeout."""
    value = poll(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
    return value


def poll(predicate: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """The predicate's first truthy value within ``timeout``, else its last (falsy) one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
