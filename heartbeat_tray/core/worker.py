"""A thread that runs one ``step()`` whenever it is due or poked, and sleeps in between.

``step()`` does what is due and returns the monotonic time it next needs to run (``None``: only
when poked). The thread waits on a condition until then: nothing polls, so a worker costs no
wakeups between its due times. The ticker and the ingestion poller share this shell.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from heartbeat_tray.core.clock import Clock

log = logging.getLogger(__name__)

RETRY_AFTER_CRASH = 5.0  # seconds before a step that raised is tried again

Step = Callable[[], "float | None"]


class Worker:
    def __init__(self, name: str, step: Step, clock: Clock) -> None:
        self._name = name
        self._step = step
        self._clock = clock
        self._cond = threading.Condition()
        self._poked = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Run ``step()`` again soon (after the one under way, if any); safe from any thread."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end; True if it ended within ``timeout`` (a step may be blocked)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._poked = False
            try:
                next_wake = self._step()
            except Exception:
                # A bug or a broken disk must not end the worker silently: log, try again later.
                log.exception("The %s failed; trying again in %.0f seconds", self._name, 5.0)
                next_wake = self._clock.monotonic() + RETRY_AFTER_CRASH
            with self._cond:
                if self._stopping:
                    return
                if self._poked:
                    continue
                if next_wake is None:
                    self._cond.wait()
                else:
                    timeout = next_wake - self._clock.monotonic()
                    if timeout > 0:
                        self._cond.wait(timeout)
