"""The tray menu, rendered from the presenter's ``TrayView``: for pystray, and as a Tk menu in a
process of its own on xorg (where pystray has no menu).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from heartbeat_tray.system.app_command import app_command
from heartbeat_tray.system.ui_thread import UiThread
from heartbeat_tray.tray import menu_window
from heartbeat_tray.tray.presenter import MENU, Item, MenuLine, TrayView

log = logging.getLogger(__name__)

ViewSource = Callable[[], TrayView]  # the latest view, read each time the menu shows
OnClick = Callable[[Item], None]  # runs on the UI thread


def to_pystray(view: ViewSource, on_click: OnClick, ui: UiThread) -> Any:
    """A pystray Menu whose texts and checks are re-read on every ``update_menu()``."""
    import pystray

    def item(entry: Item) -> Any:
        def clicked(_icon: Any, _item: Any) -> None:
            ui.call(lambda: on_click(entry))

        first = view().line(entry)
        return pystray.MenuItem(
            lambda _item: view().line(entry).label,
            clicked,
            checked=(lambda _item: bool(view().line(entry).checked))
            if first.checked is not None
            else None,
            enabled=first.clickable,
            default=entry is Item.ENABLED,  # a left click; the app decides what it does
        )

    return pystray.Menu(*(pystray.Menu.SEPARATOR if e is None else item(e) for e in MENU))


class MenuProcess:
    """The menu at the pointer on xorg (pystray has none there) and for SNI hosts that ask the
    item to show its own: a Tk menu in a short-lived process (``menu_window``), so that Tk never
    lives in the tray's process. Labels follow the app while it is open; a choice comes back
    to ``on_click`` on the UI thread. All methods run on the UI thread.
    """

    def __init__(self, view: ViewSource, on_click: OnClick, ui: UiThread) -> None:
        self._view = view
        self._on_click = on_click
        self._ui = ui
        self._child: subprocess.Popen[bytes] | None = None
        self._sent: bytes = b""

    def show(self, x: int, y: int) -> None:
        if self._child is not None:
            # An open menu holds the pointer grab, so a click that reaches the icon means the
            # last one is still starting or stuck: a fresh menu replaces it.
            self.close()
            self._child = None
        try:
            child = subprocess.Popen(
                app_command(menu_window.COMMAND, str(x), str(y)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError:
            log.exception("Could not open the menu")
            return
        assert child.stdin is not None
        os.set_blocking(child.stdin.fileno(), False)  # a stuck menu never stalls the UI thread
        self._child = child
        self._sent = b""
        self.update()
        threading.Thread(
            target=self._read_answers, args=(child,), name="menu-answers", daemon=True
        ).start()

    def update(self) -> None:
        """Send the current menu to the open one (labels, checks); nothing when none is open."""
        child = self._child
        if child is None or child.stdin is None:
            return
        lines = [None if line is None else _wire(line) for line in self._view().menu]
        data = json.dumps({"lines": lines}).encode("utf-8") + b"\n"
        if data == self._sent:
            return
        try:
            written = os.write(child.stdin.fileno(), data)
        except (BlockingIOError, BrokenPipeError, OSError):
            return  # closing, or not reading: it shows what it has
        if written < len(data):  # a torn line would garble the rest: send no more to this one
            with contextlib.suppress(OSError):
                child.stdin.close()
            child.stdin = None
        self._sent = data

    def close(self) -> None:
        if self._child is not None:
            with contextlib.suppress(OSError):
                self._child.terminate()

    def _read_answers(self, child: subprocess.Popen[bytes]) -> None:
        """On a thread of its own: the choice, and anything the menu process said for the log."""
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            word, _, name = line.partition(" ")
            if word == menu_window.CHOSE and name in Item.__members__:
                self._ui.call(functools.partial(self._on_click, Item[name]))
            elif line:
                log.warning("The menu process said: %s", line)
        code = child.wait()
        if code not in (0, -signal.SIGTERM):
            log.warning("The menu process ended with exit code %s", code)
        self._ui.call(lambda: self._closed(child))

    def _closed(self, child: subprocess.Popen[bytes]) -> None:
        if self._child is child:
            self._child = None
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()


def _wire(line: MenuLine) -> dict[str, object]:
    return {
        "item": line.item.name,
        "label": line.label,
        "clickable": line.clickable,
        "checked": line.checked,
    }
