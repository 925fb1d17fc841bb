"""The command line's shape: each command names the function that runs it, as
``"module:function"`` in ``heartbeat_tray.cli``, imported only when that command runs (``once``
need not load what ``verify`` or the tray need)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from heartbeat_tray import __version__
from heartbeat_tray.cli.context import EXIT_CONFIG


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"heartbeat-tray: {message}; see heartbeat-tray --help.\n")


def _add_overrides(parser: argparse.ArgumentParser, *names: str) -> None:
    group = parser.add_argument_group("overrides for this run only (never saved)")
    helps = {
        "host": ("--host", "URL", "PostHog host, e.g. https://eu.i.posthog.com"),
        "interval": ("--interval", "SECONDS", "seconds between beats (1..86400)"),
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
    parser.set_defaults(handler="desktop:cmd_tray", command="tray", autostart=False)
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)

    def command(name: str, handler: str, text: str, **kwargs: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, **kwargs)  # type: ignore[arg-type]
        sub.set_defaults(handler=handler, command=name)
        return sub

    tray = command("tray", "desktop:cmd_tray", "the tray app (the default)")
    tray.add_argument("--autostart", action="store_true", help="start quietly, as at login")
    _add_overrides(tray, *ALL_OVERRIDES)
    run = command("run", "run:cmd_run", "headless: the heartbeat without a tray")
    _add_overrides(run, *ALL_OVERRIDES)
    run.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there, e.g. 127.0.0.1:9464 (a bare port: loopback; "
        "0.0.0.0:9464 for every interface); overrides [metrics] listen",
    )
    _add_overrides(
        command("once", "send:cmd_once", "send one heartbeat now and print the outcome"),
        *ALL_OVERRIDES,
    )
    _add_overrides(
        command("check", "send:cmd_check", "check host and key without sending an event"),
        "host",
        "distinct_id",
    )
    command("settings", "desktop:cmd_settings", "open the settings dialog")
    status_cmd = command(
        "status", "status:cmd_status", "show settings, key, outbox and last outcome"
    )
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    history = command(
        "history",
        "history:cmd_history",
        "the ingestion lag of the last 24 h: in a window, or as a PNG file with --png",
    )
    history.add_argument(
        "--png", metavar="FILE", help="write the picture to FILE instead (no display needed)"
    )
    key = command(
        "key",
        "keys:cmd_key",
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
        "verify:cmd_verify",
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
    auto = command("autostart", "autostart:cmd_autostart", "launch at login")
    auto.add_argument("action", choices=["on", "off", "status"])
    return parser
