"""``run`` ends on SIGTERM whichever thread the kernel hands the signal to.

An untimed ``Event.wait()`` in the main thread sleeps through a signal that lands on another
thread (the interpreter's C handler only sets a flag); a CI run once went on beating 10 s after
its SIGTERM. Each case runs in a fresh interpreter, so that pytest's own handlers stay apart.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from heartbeat_tray.cli.run import _sleep_until

    flag = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: flag.set())

    def raise_it_here() -> None:  # the signal lands on this thread, not on the main one
        time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    threading.Thread(target=raise_it_here, daemon=True).start()
    {wait}
    print("woke")
    """
)


def run_waiting(wait: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(wait=wait)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def test_a_signal_on_another_thread_wakes_the_main_thread() -> None:
    result = run_waiting("_sleep_until(flag)")
    assert result.stdout.strip() == "woke", result.stderr


def test_the_plain_wait_it_replaces_sleeps_through_that_signal() -> None:
    """The reason for ``_sleep_until``: this is what hung (bounded here to 2 s)."""
    result = run_waiting("print(flag.wait(2.0))")
    assert result.stdout.split() == ["False", "woke"], result.stderr
