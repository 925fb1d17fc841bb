"""How to start this app again: the frozen executable, or this interpreter with the package."""

from __future__ import annotations

import sys


def app_command(*args: str) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "heartbeat_tray", *args]
