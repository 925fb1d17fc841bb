"""``key set`` / ``key clear``: the project API key in the OS keyring, read from stdin."""

from __future__ import annotations

import getpass
import os
import sys

from heartbeat_tray.cli.context import EXIT_OK, Context, UserError
from heartbeat_tray.core.api_key import ENV_VAR, InvalidKey, KeyringUnavailable, check_key_text
from heartbeat_tray.system.log_setup import never_log


def cmd_key(ctx: Context) -> int:
    if ctx.args.action == "clear":
        try:
            removed = ctx.keys.clear()
        except KeyringUnavailable as exc:
            raise UserError(f"Cannot remove the API key: {exc}") from None
        print(
            "Removed the project API key from the system keyring."
            if removed
            else "No project API key was stored in the system keyring."
        )
        return EXIT_OK
    if sys.stdin is None:
        raise UserError("No input to read the key from; pipe it in: heartbeat-tray key set < file")
    if sys.stdin.isatty():
        text = getpass.getpass("Project API key (phc_…, not shown): ")
    else:
        text = sys.stdin.readline()
    try:
        key, warning = check_key_text(text)
    except InvalidKey as exc:
        raise UserError(str(exc)) from None
    never_log(key)
    if warning:
        print(warning, file=sys.stderr)
    try:
        ctx.keys.store(key)
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot store the API key: {exc}") from None
    print(f"Stored the project API key ({key[:8]}…) in the system keyring.")
    if os.environ.get(ENV_VAR):
        print(f"Note: {ENV_VAR} is set and takes precedence while it is.")
    return EXIT_OK
