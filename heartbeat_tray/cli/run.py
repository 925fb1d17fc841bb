"""``run``: the heartbeat without a tray, for servers, CI and containers."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import traceback

from heartbeat_tray.cli.context import EXIT_OK, Context, UserError, say
from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.engine import Engine
from heartbeat_tray.system.instance_lock import InstanceLock

log = logging.getLogger("heartbeat_tray")


def _log_alert(alert: Alert) -> None:
    """The engine has logged it: the log (stderr here) is how `run` tells its user."""


def cmd_run(ctx: Context) -> int:
    ctx.usable_settings()  # a broken file: exit 2 with its sentence, nothing sent
    ctx.require_state_folder()
    key = ctx.require_key()  # read once here (in a child process); the engine keeps it
    lock = InstanceLock(ctx.paths.lock_file)
    if not lock.acquire():
        say(lock.busy_message("not starting a second stream"))
        return EXIT_OK
    try:
        engine = Engine(
            ctx.paths,
            overrides=ctx.overrides,
            keys=ctx.keys,
            front_end="run",
            on_alert=_log_alert,
            loaded=ctx.loaded,
        )
        problem = engine.start_metrics()  # a port in use: exit 2 before a beat is sent
        if problem is not None:
            raise UserError(problem)
        return _run(engine, key.masked)
    finally:
        lock.release()


def _run(engine: Engine, masked_key: str) -> int:
    stop = threading.Event()
    reload_wanted = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        log.info("Stopping (%s)", signal.Signals(signum).name)
        stop.set()

    def on_reload(_signum: int, _frame: object) -> None:
        reload_wanted.set()
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_reload)
    settings = engine.settings
    log.info(
        "Sending %r to %s every %d s as %s (key %s)",
        settings.event,
        settings.host,
        settings.interval_seconds,
        engine.distinct_id,
        masked_key,
    )
    engine.start()
    try:
        while True:
            _sleep_until(stop)
            if not reload_wanted.is_set():
                break
            stop.clear()
            reload_wanted.clear()
            engine.reload()  # the file again, this run's overrides still on top
    finally:
        watchdog = threading.Timer(STOP_GRACE_SECONDS, _stuck_stopping)
        watchdog.daemon = True
        watchdog.start()
        engine.stop(timeout=1.0)
    return EXIT_OK


STOP_GRACE_SECONDS = 5.0  # a service manager's stop must not wait on a stuck request or disk


def _sleep_until(flag: threading.Event) -> None:
    """Block the main thread until a signal handler sets ``flag``, without waking meanwhile.

    It sleeps in select() on the signal wakeup fd, which the interpreter's C-level handler
    writes whichever thread the signal lands on: in an untimed ``Event.wait()`` a SIGTERM was
    once slept through (a CI run: the process still beating 10 s after it).
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        while not flag.is_set():
            with contextlib.suppress(InterruptedError):
                select.select([reader], [], [])
            with contextlib.suppress(BlockingIOError, OSError):
                reader.recv(4096)
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _stuck_stopping() -> None:
    """Stopping took too long: say where each thread was, then end. A beat in flight stays
    queued in the outbox (each change is its own transaction) and goes at the next start."""
    # the last resort, should the log itself be stuck behind a thread that holds its lock
    last_resort = threading.Timer(1.0, os._exit, args=(EXIT_OK,))
    last_resort.daemon = True
    last_resort.start()
    stacks = "\n".join(
        f"{thread.name}:\n{''.join(traceback.format_stack(frame))}"
        for thread in threading.enumerate()
        if (frame := sys._current_frames().get(thread.ident or -1)) is not None
    )
    log.error(
        "Stopping took over %.0f s; ending now. Where each thread was:\n%s",
        STOP_GRACE_SECONDS,
        stacks,
    )
    logging.shutdown()
    os._exit(EXIT_OK)
