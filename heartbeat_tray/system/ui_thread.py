"""The one hand-off point through which every UI change reaches the UI thread.

Worker threads (the ticker, the tray backend's own thread, the instance channel) never touch
the toolkit: they call ``ui.call(fn)`` and ``fn`` runs on the UI thread.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Job = Callable[[], None]


class UiThread(Protocol):
    def call(self, job: Job) -> None:
        """Run ``job`` on the UI thread, soon; safe from any thread."""

    def call_later(self, delay_ms: int, job: Job) -> None:
        """Run ``job`` on the UI thread after ``delay_ms``; safe from any thread."""


def run_job(job: Job) -> None:
    """Run one job; a failure is logged, never raised into a toolkit's loop."""
    try:
        job()
    except Exception:
        log.exception("A UI job failed")


class _Wakeable:
    """Jobs from any thread, and a socketpair that wakes the loop that runs them.

    ``deque.append`` takes no Python-level lock, so a signal handler may call ``call()`` too.
    """

    def __init__(self) -> None:
        self._jobs: collections.deque[Job] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        if threading.current_thread() is threading.main_thread():
            # Signals wake the loop at once, even while it sleeps in select() or in Tk.
            signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)

    def call(self, job: Job) -> None:
        self._jobs.append(job)
        with contextlib.suppress(BlockingIOError, OSError):
            self._writer.send(b"\0")

    def _drain(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._reader.recv(4096):
                pass
        while self._jobs:
            run_job(self._jobs.popleft())

    def close(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(-1)
        self._reader.close()
        self._writer.close()


class SelectUiThread(_Wakeable):
    """The UI loop for pystray's xorg backend: the main thread sleeps in select() until a job,
    a timer or a signal arrives. Nothing polls; idle costs nothing. No toolkit is loaded until
    one is needed (the Tk menu on a right click), which keeps the tray's memory small.
    """

    def __init__(self) -> None:
        super().__init__()
        self._timers: list[tuple[float, int, Job]] = []  # touched only on the UI thread
        self._counter = 0
        self._running = False

    def call_later(self, delay_ms: int, job: Job) -> None:
        due = time.monotonic() + delay_ms / 1000
        self.call(lambda: self._add_timer(due, job))

    def _add_timer(self, due: float, job: Job) -> None:
        self._counter += 1
        heapq.heappush(self._timers, (due, self._counter, job))

    def run_due(self) -> float | None:
        """Run jobs and due timers; seconds until the next timer, or None."""
        self._drain()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            run_job(heapq.heappop(self._timers)[2])
            now = time.monotonic()
        return max(0.0, self._timers[0][0] - now) if self._timers else None

    def run(self) -> None:
        self._running = True
        while self._running:
            timeout = self.run_due()
            if not self._running:
                break
            with contextlib.suppress(InterruptedError):
                select.select([self._reader], [], [], timeout)

    def quit(self) -> None:
        self._running = False


class TkUiThread(_Wakeable):
    """For a Tk program (the settings dialog): Tk's own loop is woken through the socketpair."""

    def __init__(self, root: Any) -> None:
        import tkinter

        super().__init__()
        self._root = root
        root.tk.createfilehandler(self._reader.fileno(), tkinter.READABLE, self._drain)

    def call_later(self, delay_ms: int, job: Job) -> None:
        self.call(lambda: self._root.after(delay_ms, lambda: run_job(job)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._root.tk.deletefilehandler(self._reader.fileno())
        super().close()


class PostingUiThread:
    """For backends whose own loop owns the main thread (darwin, gtk, appindicator)."""

    def __init__(self, post: Callable[[Job], None]) -> None:
        self._post = post

    def call(self, job: Job) -> None:
        self._post(lambda: run_job(job))

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
    raise ValueError(f"no UI hand-off for the {backend} backend (win32 has its own)")
