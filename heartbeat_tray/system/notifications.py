"""Desktop notifications: pystray's where the backend has them, the freedesktop D-Bus API else."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, icon: Any) -> None:
        self._icon = icon

    def show(self, title: str, message: str, *, logged: bool = False) -> None:
        """``logged``: the caller has already written the message to the log."""
        if not logged:
            log.info("Notification: %s — %s", title, message)
        if getattr(self._icon, "HAS_NOTIFICATION", False):
            try:
                self._icon.notify(message, title)
                return
            except Exception:
                log.warning("The tray backend could not show a notification", exc_info=True)
        # xorg has none: ask the desktop's notification daemon directly, off the UI thread.
        threading.Thread(
            target=_freedesktop_notify, args=(title, message), name="notify", daemon=True
        ).start()


def _freedesktop_notify(title: str, message: str) -> None:
    try:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        address = DBusAddress(
            "/org/freedesktop/Notifications",
            bus_name="org.freedesktop.Notifications",
            interface="org.freedesktop.Notifications",
        )
        call = new_method_call(
            address,
            "Notify",
            "susssasa{sv}i",
            ("Heartbeat Tray", 0, "heartbeat-tray", title, message, [], {}, 8000),
        )
        with open_dbus_connection(bus="SESSION") as connection:
            connection.send_and_get_reply(call, timeout=3)
    except Exception as exc:  # no session bus or no notification daemon: the log has it
        log.info("No desktop notification shown (%s)", exc)
