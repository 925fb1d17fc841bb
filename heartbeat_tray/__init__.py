"""Heartbeat Tray: one synthetic PostHog event per interval, never lost, visible at a glance."""

# The one place the version is written (pyproject.toml reads it from here): reading it back
# from the installed metadata cost ~15 ms of every command's start.
__version__ = "0.1.0"

APP_NAME = "heartbeat-tray"

__all__ = ["APP_NAME", "__version__"]
