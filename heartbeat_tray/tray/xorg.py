"""pystray's xorg backend with its five defects fixed (pystray 0.19.5).

1. It asked the tray to dock the icon on every icon update; tray hosts then re-embed it, and an
   animated icon re-docks on every frame or lands on the root window. We dock only while not
   docked (the destroy-notify handler already clears the tray manager when the tray goes away).
2. The icon window never selected ButtonPress events, so clicks never reached the app.
3. It has no menu; button 3 now asks the app to show its own menu at the pointer.
4. ``run_detached()`` started the setup thread twice and made ``stop()`` block for 5 s: the app
   runs ``icon.run(setup=…)`` in a thread of its own instead (see ``start_in_thread``).
5. With no tray manager (vanilla GNOME) it logged a ``Failed to dock icon`` traceback about four
   times per beat (2.3 MB of log a day) and never docked when a panel started later. It now waits
   quietly and docks when a manager announces itself (the ``MANAGER`` message on the root window,
   ICCCM 2.8), also after a panel restart; ``on_host`` tells the app whether it is docked.

It also draws the RGBA icon over a solid panel colour, since the window has no alpha channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import Xlib.X
from PIL import Image
from pystray import _xorg

from heartbeat_tray.tray.icon_art import XORG_BACKING, flatten

log = logging.getLogger(__name__)

ContextMenuHandler = Callable[[int, int], None]  # root x, y of the click
HostHandler = Callable[[bool], None]  # docked or not; on the icon's own thread


class XorgIcon(_xorg.Icon):  # type: ignore[misc]
    background = XORG_BACKING
    _systray_manager: Any  # pystray's: the tray manager's window while docked, else None

    def __init__(
        self,
        *args: Any,
        on_context_menu: ContextMenuHandler,
        on_host: HostHandler = lambda _docked: None,
        **kwargs: Any,
    ) -> None:
        self._on_context_menu = on_context_menu
        self._on_host = on_host
        super().__init__(*args, **kwargs)
        # Defect 5: a tray manager that starts later says so to the root window's listeners.
        self._manager_atom = self._display.intern_atom("MANAGER")
        self._display.screen().root.change_attributes(event_mask=Xlib.X.StructureNotifyMask)
        self._display.flush()
        pystray_messages = self._message_handlers[Xlib.X.ClientMessage]

        def on_client_message(event: Any) -> None:
            if event.client_type == self._manager_atom:
                self._on_manager(event)
            else:
                pystray_messages(event)

        self._message_handlers[Xlib.X.ClientMessage] = on_client_message

    # Defect 1: dock once, stay docked. Defect 5: without a manager, wait quietly (pystray
    # logged a traceback at every update).
    def _docked(self) -> bool:
        if not self._systray_manager:
            self._dock_window()
            if self._systray_manager:
                log.info("Docked the icon in the tray")
                self._on_host(True)
        return bool(self._systray_manager)

    def _show(self) -> None:
        if not self._docked():
            self._on_host(False)

    def _update_icon(self) -> None:
        if not self._docked():
            return  # drawn when a manager docks it (an Expose follows)
        self._icon_data = None
        self._draw()
        self._icon_valid = True

    def _on_manager(self, event: Any) -> None:
        selection = event.data[1][1]
        if selection != self._net_system_tray_sx or self._systray_manager:
            return
        log.info("A tray host appeared")
        self._docked()

    # WM_NAME is Latin-1; the full title goes to _NET_WM_NAME as UTF-8.
    def _create_window(self) -> Any:
        full_title: str = getattr(self, "_title", "")
        self._title = _latin1(full_title)
        try:
            window = super()._create_window()
        finally:
            self._title = full_title
        self._set_utf8_name(window, full_title)
        # Defect 2: listen for button presses on the icon window.
        window.change_attributes(
            event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask
        )
        return window

    def _update_title(self) -> None:
        self._window.set_wm_name(_latin1(self.title))
        self._set_utf8_name(self._window, self.title)

    def _set_utf8_name(self, window: Any, title: str) -> None:
        window.change_property(
            self._display.intern_atom("_NET_WM_NAME"),
            self._display.intern_atom("UTF8_STRING"),
            8,
            title.encode("utf-8"),
        )

    # Defects 2 and 3: left click runs the default item, right click opens the app's menu.
    def _on_button_press(self, event: Any) -> None:
        try:
            if event.detail == 1:
                self()
            elif event.detail == 3:
                self._on_context_menu(event.root_x, event.root_y)
        except Exception:
            log.exception("Handling a click on the tray icon failed")

    def _on_destroy_notify(self, event: Any) -> None:
        manager = self._systray_manager
        if manager is None or event.window.id != manager.id:
            return
        self._systray_manager = None
        log.info("The tray host went away; the icon docks again when one starts")
        if not self._docked():  # another manager may already own the selection
            self._on_host(False)

    # No alpha channel on this window: composite over the panel colour instead of dropping it.
    def _assert_icon_data(self, width: int, height: int) -> None:
        cached: Image.Image | None = getattr(self, "_icon_data", None)
        if cached is not None and cached.size == (width, height):
            return
        data = flatten(self._icon, width, height, self.background)
        setattr(data, "tostring", data.tobytes)  # noqa: B010 - python-xlib calls image.tostring()
        self._icon_data = data


def _latin1(text: str) -> str:
    plain = text.replace("—", "-").replace("…", "...").replace("·", "|")
    return plain.encode("latin-1", "replace").decode("latin-1")


def start_in_thread(icon: XorgIcon, on_ready: Callable[[], None]) -> threading.Thread:
    """Defect 4: run the X event loop in a thread of our own instead of ``run_detached()``.

    The setup callback only reports readiness: the app's UI thread shows the icon, so that every
    call into the icon comes from that one thread.
    """
    thread = threading.Thread(
        target=icon.run, args=(lambda _icon: on_ready(),), name="tray-xorg", daemon=True
    )
    # pystray sets _thread only after it lets the setup callback run; a call dispatched in
    # between would find no _thread. Set it before the loop starts.
    icon._thread = thread
    thread.start()
    return thread
