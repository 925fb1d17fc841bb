"""``run``: the heartbeat without a tray, for servers, CI and containers."""

from __future__ import annotations

import logging
import signal
import threading

from heartbeat_tray.cli.context import EXIT_OK, Context, say
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
            stop.wait()
            if not reload_wanted.is_set():
                break
            stop.clear()
            reload_wanted.clear()
            engine.reload()  # the file again, this run's overrides still on top
    finally:
        engine.stop(timeout=1.0)
    return EXIT_OK
