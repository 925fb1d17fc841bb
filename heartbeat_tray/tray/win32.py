"""The UI hand-off on Windows: jobs run on the thread that owns pystray's windows.

A Win32 window belongs to the thread that made it, and pystray's win32 backend does its
``Shell_NotifyIcon`` and menu work on whatever thread calls it. The first version ran UI jobs on
the caller's thread under a lock: a left click (handled on the message-loop thread) toggled the
heartbeat, whose state change asked for a render on the same thread, which waited for the lock
it already held — the tray froze after its first click. Here every job is queued and a
registered window message posted to the icon's window; pystray's own message loop dispatches it
(through its ``_message_handlers`` table: pystray 0.19.5, pinned), so jobs run one at a time on
that thread and never inside one another.

While the menu is open (pystray shows it with a modal ``TrackPopupMenuEx`` inside its
right-click handler), posted jobs still run, and a render would rebuild the menu under the open
one: Wine closes it at once. Menu rebuilds wait until it closes.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from heartbeat_tray.system.ui_thread import Job, run_job


class Win32UiThread:
    def __init__(self, icon: Any) -> None:
        from pystray._util import win32

        self._win32 = win32
        self._icon = icon
        self._jobs: collections.deque[Job] = collections.deque()
        self._message = win32.RegisterWindowMessage("heartbeat-tray.ui-job")
        icon._message_handlers[self._message] = self._drain
        self._menu_open = False
        self._menu_stale = False
        self._rebuild_menu = icon.update_menu
        icon.update_menu = self._update_menu
        shows_menu = icon._message_handlers[win32.WM_NOTIFY]

        def on_notify(wparam: Any, lparam: Any) -> Any:
            self._menu_open = lparam == win32.WM_RBUTTONUP
            try:
                return shows_menu(wparam, lparam)
            finally:
                self._menu_open = False
                if self._menu_stale:
                    self._menu_stale = False
                    self._rebuild_menu()

        icon._message_handlers[win32.WM_NOTIFY] = on_notify

    def _update_menu(self) -> None:
        if self._menu_open:
            self._menu_stale = True
        else:
            self._rebuild_menu()

    def call(self, job: Job) -> None:
        self._jobs.append(job)
        hwnd = self._icon._hwnd
        if hwnd:  # before the window exists, the first posted message drains the queue
            self._win32.PostMessage(hwnd, self._message, 0, 0)

    def call_later(self, delay_ms: int, job: Job) -> None:
        timer = threading.Timer(delay_ms / 1000, lambda: self.call(job))
        timer.daemon = True
        timer.start()

    def _drain(self, _wparam: Any, _lparam: Any) -> int:
        while self._jobs:
            run_job(self._jobs.popleft())
        return 0
