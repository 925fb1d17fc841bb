"""The tray toolkits under ``TrayApp``, behind one interface.

Each backend owns its UI thread (the one hand-off every UI change passes through), its icon and
its main loop; ``TrayApp.run`` runs every one of them the same way. The backends:

- ``SniBackend``: our own StatusNotifierItem over D-Bus (KDE, GNOME with AppIndicator, XFCE,
  waybar, LXQt, Cinnamon's bridge), on a ``select()`` loop;
- ``XorgBackend``: pystray's XEmbed icon with our fixes, on the same loop, moving to a
  StatusNotifierItem host that appears later (a panel after login);
- ``PystrayBackend``: pystray's own loop, for win32 (with its own hand-off), darwin, gtk and
  appindicator.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from heartbeat_tray.system.ui_thread import PostingUiThread, SelectUiThread, UiThread, poster_for
from heartbeat_tray.tray.icon_art import IconSet
from heartbeat_tray.tray.menu import MenuProcess, to_pystray
from heartbeat_tray.tray.presenter import IconState, Item, TrayView

log = logging.getLogger(__name__)

TITLE_AT_START = "Heartbeat — starting"


@dataclass(frozen=True)
class TrayHooks:
    """What a backend shows, and whom its icon tells about clicks and hosts."""

    view: Callable[[], TrayView]
    icons: IconSet
    on_click: Callable[[Item], None]  # on the UI thread
    activate: Callable[[], None]  # the default action (a left click), on the UI thread
    send_now: Callable[[], None]  # a middle click, on the UI thread
    on_host: Callable[[bool], None]  # from the backend's thread: a tray host shows the icon
    on_new_icon: Callable[[], None]  # on the UI thread: draw everything afresh on ``icon``


class TrayBackend(Protocol):
    @property
    def ui(self) -> UiThread: ...

    @property
    def icon(self) -> Any:
        """pystray's Icon interface: icon, title, visible, update_menu(), stop()."""

    @property
    def popup(self) -> MenuProcess | None:
        """Our own menu, where the host has none."""

    @property
    def knows_host(self) -> bool:
        """It can tell whether a tray host shows the icon (xorg, SNI)."""

    def run(self, started: Callable[[], None]) -> None:
        """Show the icon, call ``started`` once it is set up, and run the loop until ``stop``."""

    def stop(self) -> None:
        """On the UI thread: take the icon away and end the loop."""


def backend_for(pystray: Any, name: str, hooks: TrayHooks) -> TrayBackend:
    if name == "sni":
        return SniBackend(hooks)
    if name == "xorg":
        return XorgBackend(hooks)
    return PystrayBackend(pystray, name, hooks)


def _hide(icon: Any) -> None:
    try:
        icon.visible = False
        icon.stop()
    except Exception:
        log.warning("Removing the tray icon failed", exc_info=True)


def _sni_icon(hooks: TrayHooks, ui: SelectUiThread, popup: MenuProcess) -> Any:
    from heartbeat_tray.tray.sni import SniIcon

    images = [*hooks.icons.states.values(), *hooks.icons.pulse]
    return SniIcon(
        images,
        hooks.view,
        on_activate=lambda: ui.call(hooks.activate),
        on_secondary=lambda: ui.call(hooks.send_now),
        on_menu=lambda item: ui.call(lambda: hooks.on_click(item)),
        # hosts without a menu of their own (swaybar) ask for ours; Tk needs X for it
        on_context_menu=(lambda x, y: ui.call(lambda: popup.show(x, y)))
        if os.environ.get("DISPLAY")
        else None,
        on_host=hooks.on_host,
    )


class _SelectLoop:
    """The xorg and SNI backends: our own select() loop on the main thread is the UI thread."""

    knows_host = True

    def __init__(self, hooks: TrayHooks) -> None:
        self.hooks = hooks
        self.ui = SelectUiThread()
        self.popup: MenuProcess | None = MenuProcess(hooks.view, hooks.on_click, self.ui)
        self.icon: Any = None

    def _show(self) -> None:
        self.icon.visible = True
        log.info("Tray icon created; it shows once a tray host takes it")

    def _loop(self, started: Callable[[], None]) -> None:
        started()
        self.ui.run()
        self.ui.close()

    def stop(self) -> None:
        _hide(self.icon)
        if self.popup is not None:
            self.popup.close()
        self.ui.quit()


class SniBackend(_SelectLoop):
    def __init__(self, hooks: TrayHooks) -> None:
        super().__init__(hooks)
        assert self.popup is not None
        self.icon = _sni_icon(hooks, self.ui, self.popup)

    def run(self, started: Callable[[], None]) -> None:
        self.ui.call(self._show)
        self._loop(started)


class XorgBackend(_SelectLoop):
    def __init__(self, hooks: TrayHooks) -> None:
        from heartbeat_tray.tray.xorg import XorgIcon

        super().__init__(hooks)
        ui, popup = self.ui, self.popup
        assert popup is not None
        self.icon = XorgIcon(
            "heartbeat-tray",
            hooks.icons.states[IconState.HEALTHY],
            TITLE_AT_START,
            menu=to_pystray(hooks.view, hooks.on_click, ui),
            on_context_menu=lambda x, y: ui.call(lambda: popup.show(x, y)),
            on_host=hooks.on_host,
        )
        self._stop_watching: Callable[[], None] | None = None

    def run(self, started: Callable[[], None]) -> None:
        from heartbeat_tray.tray.xorg import start_in_thread

        # A StatusNotifierItem host that starts later (a panel after login, GNOME's extension
        # enabled) gets the icon: it draws it with real alpha and its own menu.
        if sys.platform.startswith("linux") or "bsd" in sys.platform:
            from heartbeat_tray.tray.sni import watch_for_watcher

            self._stop_watching = watch_for_watcher(lambda: self.ui.call(self._move_to_sni))
        start_in_thread(self.icon, on_ready=lambda: self.ui.call(self._show))
        try:
            self._loop(started)
        finally:
            self._end_watching()

    def _move_to_sni(self) -> None:
        """From the X tray to a StatusNotifierWatcher that appeared (UI thread)."""
        if self._stop_watching is None or self.popup is None:
            return  # quitting
        self._end_watching()
        log.info("A StatusNotifierItem host appeared; the icon moves there from the X tray")
        _hide(self.icon)
        self.icon = _sni_icon(self.hooks, self.ui, self.popup)
        self._show()
        self.hooks.on_new_icon()

    def _end_watching(self) -> None:
        stop, self._stop_watching = self._stop_watching, None
        if stop is not None:
            threading.Thread(target=stop, name="sni-watch-stop", daemon=True).start()

    def stop(self) -> None:
        self._end_watching()
        super().stop()


class PystrayBackend:
    """pystray's own loop owns the main thread (win32, darwin, gtk, appindicator)."""

    knows_host = False
    popup: MenuProcess | None = None

    def __init__(self, pystray: Any, name: str, hooks: TrayHooks) -> None:
        if name in ("gtk", "appindicator"):
            from gi.repository import GLib  # type: ignore[import-not-found,unused-ignore]

            GLib.set_prgname("heartbeat-tray")  # the window class trays and docks show
        self.icon = pystray.Icon(
            "heartbeat-tray", hooks.icons.states[IconState.HEALTHY], TITLE_AT_START
        )
        self.ui: UiThread
        if name == "win32":
            from heartbeat_tray.tray.win32 import Win32UiThread

            self.ui = Win32UiThread(self.icon)
        else:
            self.ui = PostingUiThread(poster_for(name))
        self.icon.menu = to_pystray(hooks.view, hooks.on_click, self.ui)
        self._stopping = False

    def run(self, started: Callable[[], None]) -> None:
        def setup(icon: Any) -> None:
            icon.visible = True
            started()

        try:
            self.icon.run(setup=setup)
        except Exception:
            if not self._stopping:
                raise
            # pystray's gtk backend raises while tearing down when no notification daemon runs
            log.warning("The tray backend failed while quitting", exc_info=True)

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(Exception):
            self.icon.visible = False
        try:
            self.icon.stop()
        except Exception:
            log.warning("Stopping the tray icon failed", exc_info=True)
