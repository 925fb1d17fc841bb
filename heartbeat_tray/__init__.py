"""Heartbeat Tray: one synthetic PostHog event per interval, never lost, visible at a glance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("heartbeat-tray")
except PackageNotFoundError:  # running from a source tree or a frozen build without metadata
    __version__ = "0.1.0"

APP_NAME = "heartbeat-tray"

__all__ = ["APP_NAME", "__version__"]
