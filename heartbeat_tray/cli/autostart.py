"""``autostart on|off|status``: launch at login, as the OS reports it."""

from __future__ import annotations

import argparse

from heartbeat_tray.cli.context import EXIT_NOT_ACCEPTED, EXIT_OK, UserError
from heartbeat_tray.system.launch_at_login import LaunchAtLoginError, for_this_os, state_text


def cmd_autostart(args: argparse.Namespace) -> int:
    strategy = for_this_os()
    try:
        if args.action == "on":
            strategy.enable()
        elif args.action == "off":
            strategy.disable()
    except LaunchAtLoginError as exc:
        raise UserError(str(exc), EXIT_NOT_ACCEPTED) from None
    print(f"Launch at login: {state_text(strategy)} ({strategy.describe()})")
    return EXIT_OK
