"""The command line's shape, and the function that runs each command (``load_handler``),
imported only when that command runs: ``once`` need not load what ``verify`` or the tray need.
The imports are written out, not built from strings, so PyInstaller and mypy see every one."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from heartbeat_tray import __version__
from heartbeat_tray.cli.context import EXIT_CONFIG
from heartbeat_tray.core.settings import MAX_INTERVAL, MIN_INTERVAL


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"heartbeat-tray: {message}; see heartbeat-tray --help.\n")


def _add_overrides(parser: argparse.ArgumentParser, *names: str) -> None:
    group = parser.add_argument_group("overrides for this run only (never saved)")
    helps = {
        "host": ("--host", "URL", "PostHog host, e.g. https://eu.i.posthog.com"),
        "interval": (
            "--interval",
            "SECONDS",
            f"seconds between beats ({MIN_INTERVAL}..{MAX_INTERVAL})",
        ),
        "event": ("--event", "NAME", "event name"),
        "distinct_id": ("--distinct-id", "ID", "distinct id of the events"),
    }
    for name in names:
        flag, metavar, text = helps[name]
        group.add_argument(flag, metavar=metavar, help=text)


ALL_OVERRIDES = ("host", "interval", "event", "distinct_id")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="heartbeat-tray",
        description="Keeps one synthetic heartbeat event per interval flowing into PostHog.",
    )
    parser.add_argument("--version", action="version", version=f"heartbeat-tray {__version__}")
    parser.set_defaults(command="tray", autostart=False)
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)

    def command(name: str, text: str, **kwargs: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, **kwargs)  # type: ignore[arg-type]
        sub.set_defaults(command=name)
        return sub

    tray = command("tray", "the tray app (the default)")
    tray.add_argument("--autostart", action="store_true", help="start quietly, as at login")
    _add_overrides(tray, *ALL_OVERRIDES)
    run = command("run", "headless: the heartbeat without a tray")
    _add_overrides(run, *ALL_OVERRIDES)
    run.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there, e.g. 127.0.0.1:9464 (a bare port: loopback; "
        "0.0.0.0:9464 for every interface); overrides [metrics] listen",
    )
    _add_overrides(
        command("once", "send one heartbeat now and print the outcome"),
        *ALL_OVERRIDES,
    )
    _add_overrides(
        command("check", "check host and key without sending an event"),
        "host",
        "distinct_id",
    )
    command("settings", "open the settings dialog")
    status_cmd = command("status", "show settings, key, outbox and last outcome")
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    history = command(
        "history",
        "the ingestion lag of the last 24 h: in a window, or as a PNG file with --png",
    )
    history.add_argument(
        "--png", metavar="FILE", help="write the picture to FILE instead (no display needed)"
    )
    key = command(
        "key",
        "store or remove the project API key: 'key set' reads it from standard input "
        "(hidden when typed), 'key clear' removes it",
    )
    key.add_argument(
        "action",
        choices=["set", "clear"],
        help="set: read the key from stdin and store it in the OS keyring; clear: remove it",
    )
    key.add_argument(
        "--personal",
        action="store_true",
        help="the personal API key (phx_…, scopes Query Read and Project Read) of the "
        "ingestion check, instead of the project key",
    )
    verify_cmd = command(
        "verify",
        "send one beat, then ask PostHog until it is stored: exit 0 stored in time, "
        "1 not, 2 configuration error (a personal API key is needed)",
    )
    verify_cmd.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=600.0,
        help="how long the whole command may take (default 600)",
    )
    verify_cmd.add_argument(
        "--quiet", action="store_true", help="no progress lines, only the answer"
    )
    _add_overrides(verify_cmd, *ALL_OVERRIDES)
    auto = command("autostart", "launch at login")
    auto.add_argument("action", choices=["on", "off", "status"])
    return parser


Handler = Callable[[Any], int]  # a Context (an argparse.Namespace for ``autostart``) → exit code


def load_handler(command: str) -> Handler:
    """The function that runs ``command``, its module imported now."""
    handler: Handler
    if command == "tray":
        from heartbeat_tray.cli.desktop import cmd_tray as handler
    elif command == "settings":
        from heartbeat_tray.cli.desktop import cmd_settings as handler
    elif command == "run":
        from heartbeat_tray.cli.run import cmd_run as handler
    elif command == "once":
        from heartbeat_tray.cli.send import cmd_once as handler
    elif command == "check":
        from heartbeat_tray.cli.send import cmd_check as handler
    elif command == "status":
        from heartbeat_tray.cli.status import cmd_status as handler
    elif command == "history":
        from heartbeat_tray.cli.history import cmd_history as handler
    elif command == "key":
        from heartbeat_tray.cli.keys import cmd_key as handler
    elif command == "verify":
        from heartbeat_tray.cli.verify import cmd_verify as handler
    elif command == "autostart":
        from heartbeat_tray.cli.autostart import cmd_autostart as handler
    else:
        raise ValueError(f"no handler for the command {command!r}")
    return handler
