"""The one hand-off point through which every UI change reaches the UI thread.

Worker threads (the ticker, the tray backend's own thread, the instance channel) never touch
the toolkit: they call ``ui.call(fn)`` and ``fn`` runs on the UI thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Job = Callable[[], None]


class UiThread(Protocol):
    def call(self, job: Job) -> None:
        """Run ``job`` on the UI thread, soon; safe from any thread."""

    def call_later(self, delay_ms: int, job: Job) -> None:
        """Run ``job`` on the UI thread after ``delay_ms``; safe from any thread."""


def _run(job: Job) -> None:
    try:
        job()
    except Exception:
        log.exception("A UI job failed")


class TkUiThread:
    """Tk's main loop is woken through a socketpair: nothing polls, idle costs nothing.

    The same socket is Python's signal wake-up fd, so SIGTERM/SIGINT are handled at once even
    while Tk sleeps in its event loop.
    """

    def __init__(self, root: Any) -> None:
        import tkinter

        self._root = root
        self._jobs: collections.deque[Job] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        root.tk.createfilehandler(self._reader.fileno(), tkinter.READABLE, self._drain)
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)

    def call(self, job: Job) -> None:
        self._jobs.append(job)
        with contextlib.suppress(BlockingIOError, OSError):
            self._writer.send(b"\0")

    def call_later(self, delay_ms: int, job: Job) -> None:
        self.call(lambda: self._root.after(delay_ms, lambda: _run(job)))

    def _drain(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._reader.recv(4096):
                pass
        while self._jobs:
            _run(self._jobs.popleft())

    def close(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(-1)
        with contextlib.suppress(Exception):
            self._root.tk.deletefilehandler(self._reader.fileno())
        self._reader.close()
        self._writer.close()


class PostingUiThread:
    """For backends whose own loop owns the main thread (win32, darwin, gtk, appindicator)."""

    def __init__(self, post: Callable[[Job], None]) -> None:
        self._post = post

    def call(self, job: Job) -> None:
        self._post(lambda: _run(job))

    def call_later(self, delay_ms: int, job: Job) -> None:
        timer = threading.Timer(delay_ms / 1000, lambda: self.call(job))
        timer.daemon = True
        timer.start()


def poster_for(backend: str) -> Callable[[Job], None]:
    """How to reach the main loop of each pystray backend from another thread."""
    if backend in ("gtk", "appindicator"):
        from gi.repository import GLib  # type: ignore[import-not-found,unused-ignore]

        def post_glib(job: Job) -> None:
            def once() -> bool:
                job()
                return False  # do not repeat

            GLib.idle_add(once)

        return post_glib
    if backend == "darwin":
        # Icon and menu changes from another thread crash recent macOS.
        from PyObjCTools import AppHelper  # type: ignore[import-not-found,unused-ignore]

        return AppHelper.callAfter  # type: ignore[no-any-return]
    # win32: pystray's win32 calls are thread-safe Shell_NotifyIcon calls; serialise them.
    lock = threading.Lock()

    def post_locked(job: Job) -> None:
        with lock:
            job()

    return post_locked
