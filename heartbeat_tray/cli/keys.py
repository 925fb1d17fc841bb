"""``key set`` / ``key clear``: the project API key in the OS keyring, read from stdin."""

from __future__ import annotations

import getpass
import os
import sys

from heartbeat_tray.cli.context import EXIT_OK, Context, UserError
from heartbeat_tray.core.api_key import (
    InvalidKey,
    KeyKind,
    KeyringUnavailable,
    check_key_text,
    check_personal_key_text,
)
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.log_setup import never_log


def cmd_key(ctx: Context) -> int:
    kind = KeyKind.PERSONAL if ctx.args.personal else KeyKind.PROJECT
    keys = KeyStore(kind=kind)
    words = kind.words
    if ctx.args.action == "clear":
        try:
            removed = keys.clear()
        except KeyringUnavailable as exc:
            raise UserError(f"Cannot remove the {words}: {exc}") from None
        print(
            f"Removed the {words} from the system keyring."
            if removed
            else f"No {words} was stored in the system keyring."
        )
        return EXIT_OK
    if sys.stdin is None:
        raise UserError("No input to read the key from; pipe it in: heartbeat-tray key set < file")
    prompt = "phc_" if kind is KeyKind.PROJECT else "phx_"
    if sys.stdin.isatty():
        text = getpass.getpass(f"{words[:1].upper()}{words[1:]} ({prompt}…, not shown): ")
    else:
        text = sys.stdin.readline()
    warning = None
    try:
        if kind is KeyKind.PROJECT:
            key, warning = check_key_text(text)
        else:
            key = check_personal_key_text(text)
    except InvalidKey as exc:
        raise UserError(str(exc)) from None
    never_log(key)
    if warning:
        print(warning, file=sys.stderr)
    try:
        keys.store(key)
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot store the {words}: {exc}") from None
    print(f"Stored the {words} ({key[:8]}…) in the system keyring.")
    if os.environ.get(kind.env_var):
        print(f"Note: {kind.env_var} is set and takes precedence while it is.")
    return EXIT_OK
