"""The key hand-over: a short-lived child of the tray reads the keyring and gives the key back.

Loading keyring's backends costs about 20 MiB that would otherwise stay in the all-day tray for
one read at start-up. The key travels over a pipe the parent made and passed to the child by
file descriptor: never argv, a file, a log line, stdout or a terminal. The child refuses to run
unless its parent is the process that named itself in the environment and the descriptor is a
pipe, so ``heartbeat-tray _key-pipe | cat`` prints nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping

from heartbeat_tray.core.api_key import KeyKind, KeyringUnavailable
from heartbeat_tray.system.app_command import app_command

KEY_PIPE_COMMAND = "_key-pipe"
KEY_FD_VAR = "HEARTBEAT_TRAY_KEY_FD"
PARENT_VAR = "HEARTBEAT_TRAY_KEY_PARENT"
KEY_PIPE_NO_KEY = 4
KEY_PIPE_UNAVAILABLE = 3
KEY_PIPE_REFUSED = 2


def read_in_child_process(kind: KeyKind = KeyKind.PROJECT, timeout: float = 120.0) -> str | None:
    """Read the keyring in a child process of this app (a locked keyring may ask the user)."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, KEY_FD_VAR: str(write_fd), PARENT_VAR: str(os.getpid())}
    env.pop(kind.env_var, None)
    try:
        child = subprocess.Popen(
            app_command(KEY_PIPE_COMMAND, kind.value),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
            text=True,
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "r", encoding="utf-8") as pipe:
        try:
            _, errors = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise KeyringUnavailable(
                f"the system keyring is not available: it did not answer within {timeout:.0f} s; "
                f"set {kind.env_var} or unlock the keyring."
            ) from None
        value = pipe.read().strip()
    if child.returncode == 0:
        return value or None
    if child.returncode == KEY_PIPE_NO_KEY:
        return None
    message = errors.strip().splitlines()[-1:] or ["the key reader failed"]
    raise KeyringUnavailable(message[0])


def hand_over_key(
    read: Callable[[KeyKind], str | None],
    which: str = KeyKind.PROJECT.value,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The child's side: the key ``read`` from the keyring into the parent's pipe, or an exit
    code saying why not."""
    env = os.environ if environ is None else environ
    kind = next((k for k in KeyKind if k.value == which), None)
    fd = _parent_pipe(env)
    if fd is None or kind is None:
        if sys.stderr is not None:
            print("This command is for Heartbeat Tray's own use.", file=sys.stderr)
        return KEY_PIPE_REFUSED
    try:
        key = read(kind)
    except KeyringUnavailable as exc:
        if sys.stderr is not None:
            print(str(exc), file=sys.stderr)
        return KEY_PIPE_UNAVAILABLE
    if not key:
        return KEY_PIPE_NO_KEY
    with os.fdopen(fd, "w", encoding="utf-8") as pipe:
        pipe.write(key)
    return 0


def _parent_pipe(env: Mapping[str, str]) -> int | None:
    """The descriptor to write to, only when the parent set it up and it is a pipe."""
    try:
        fd = int(env.get(KEY_FD_VAR, ""))
        parent = int(env.get(PARENT_VAR, ""))
    except ValueError:
        return None
    if fd <= 2 or parent != os.getppid():
        return None
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            return fd
    return None
