"""The command line: errors are one sentence on stderr; tracebacks go to the log."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from heartbeat_tray.cli.context import EXIT_NOT_ACCEPTED, UserError, load_context, say
from heartbeat_tray.core.api_key import KeyKind
from heartbeat_tray.system.key_handover import KEY_PIPE_COMMAND, hand_over_key
from heartbeat_tray.system.log_setup import configure_logging
from heartbeat_tray.system.paths import AppPaths

log = logging.getLogger("heartbeat_tray")

# Commands that read the key only to hand it on: the keyring's ~20 MiB of backends are loaded
# in a short-lived child, not in a process that runs all day.
_KEY_IN_CHILD = {"run", "tray"}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [KEY_PIPE_COMMAND]:
        # internal, not in help: the tray's and run's key hand-over
        from heartbeat_tray.system.keystore import read_keyring

        return hand_over_key(
            read_keyring, arguments[1] if len(arguments) > 1 else KeyKind.PROJECT.value
        )
    from heartbeat_tray.cli.parser import build_parser, load_handler

    args = build_parser().parse_args(arguments)
    command: str = args.command
    paths = AppPaths.for_user()
    configure_logging(paths, to_stderr=command == "run")
    try:
        handler = load_handler(command)
        if command == "autostart":
            return int(handler(args))
        ctx = load_context(args, paths, key_in_child=command in _KEY_IN_CHILD)
        return int(handler(ctx))
    except UserError as exc:
        say(f"heartbeat-tray: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `heartbeat-tray status | head -3`: the reader has all it wanted. End quietly, as
        # a shell pipeline expects (128 + SIGPIPE), and keep the exit-time flush from failing.
        _discard_stdout()
        return EXIT_CLOSED_PIPE
    except Exception as exc:
        log.exception("heartbeat-tray %s failed", command)
        say(
            f"heartbeat-tray: {command} failed unexpectedly ({type(exc).__name__}); "
            f"the details are in {paths.log_file}."
        )
        return EXIT_NOT_ACCEPTED


EXIT_CLOSED_PIPE = 141


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


__all__ = ["main"]
