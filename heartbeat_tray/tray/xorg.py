"""pystray's xorg backend with its four defects fixed (pystray 0.19.5).

1. It asked the tray to dock the icon on every icon update; tray hosts then re-embed it, and an
   animated icon re-docks on every frame or lands on the root window. We dock only while not
   docked (the destroy-notify handler already clears the tray manager when the tray goes away).
2. The icon window never selected ButtonPress events, so clicks never reached the app.
3. It has no menu; button 3 now asks the app to show its own menu at the pointer.
4. ``run_detached()`` started the setup thread twice and made ``stop()`` block for 5 s: the app
   runs ``icon.run(setup=…)`` in a thread of its own instead (see ``start_in_thread``).

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


class XorgIcon(_xorg.Icon):  # type: ignore[misc]
    background = XORG_BACKING

    def __init__(self, *args: Any, on_context_menu: ContextMenuHandler, **kwargs: Any) -> None:
        self._on_context_menu = on_context_menu
        super().__init__(*args, **kwargs)

    # Defect 1: dock once, stay docked.
    def _assert_docked(self) -> None:
        if not self._systray_manager:
            self._dock_window()
        assert self._systray_manager

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
        if self._systray_manager is None:
            return
        super()._on_destroy_notify(event)

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
