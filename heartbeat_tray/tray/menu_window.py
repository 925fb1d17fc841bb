"""The Tk menu at the pointer, in a short-lived process of its own (xorg, and SNI hosts that ask
the item for its menu).

Why a process: Tk in the tray's own process killed it minutes after the menu had been open
(``Tcl_AsyncDelete: async handler deleted by the wrong thread`` — the interpreter's last
reference was dropped by whichever thread ran the garbage collector), and it left Tk's 10 MiB
and its notifier thread behind for good. Here Tk lives and dies on this process's one thread;
the tray only spawns it (about 70 ms to a drawn menu) and reads its answer.

The wire, one JSON object per line: the tray writes ``{"lines": [...]}`` on stdin (first the
menu to show, then each change while it is open, so labels update in place and the menu stays
open across beats); this process writes ``chose <ITEM>`` on stdout. Anything else it writes
(a Tk error, a traceback) is for the tray's log. It exits when the menu closes or the tray does.

Imports nothing but the standard library, so it starts fast and in a frozen build.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Literal

COMMAND = "_menu"  # internal, not in help
STDIN = 0
CHOSE = "chose"


def main(argv: Sequence[str]) -> int:
    try:
        x, y = (int(v) for v in argv[:2])
        received = bytearray()
        while b"\n" not in received:  # the raw pipe: no Python buffer keeps lines from Tk
            chunk = os.read(STDIN, 65536)
            if not chunk:
                return 0  # the tray went away before it said what to show
            received.extend(chunk)
        first, _, rest = bytes(received).partition(b"\n")
        return _show(x, y, json.loads(first)["lines"], bytearray(rest))
    except Exception:
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return 1


def _show(x: int, y: int, lines: list[dict[str, Any] | None], pending: bytearray) -> int:
    import tkinter

    try:
        root = tkinter.Tk(className="heartbeat-tray-menu")
    except tkinter.TclError as exc:
        print(f"Could not open the menu: {exc}", flush=True)
        return 1
    root.withdraw()
    menu = tkinter.Menu(root, tearoff=False)
    checks: dict[int, tkinter.BooleanVar] = {}

    def chose(item: str) -> None:
        print(CHOSE, item, flush=True)

    for index, line in enumerate(lines):
        if line is None:
            menu.add_separator()
            continue
        state: Literal["normal", "disabled"] = "normal" if line["clickable"] else "disabled"

        def command(item: str = line["item"]) -> None:
            chose(item)

        if line["checked"] is not None:
            var = checks[index] = tkinter.BooleanVar(master=root, value=line["checked"])
            menu.add_checkbutton(label=line["label"], variable=var, command=command, state=state)
        else:
            menu.add_command(label=line["label"], command=command, state=state)

    def update(changed: list[dict[str, Any] | None]) -> None:
        if len(changed) != len(lines):
            return  # another shape: the next menu shows it
        for index, line in enumerate(changed):
            if line is None:
                continue
            state = "normal" if line["clickable"] else "disabled"
            menu.entryconfigure(index, label=line["label"], state=state)
            if index in checks and line["checked"] is not None:
                checks[index].set(line["checked"])

    def take_lines() -> None:
        *complete, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        if complete:
            update(json.loads(complete[-1])["lines"])  # only the newest state matters

    def on_stdin(*_: object) -> None:
        chunk = os.read(STDIN, 65536)
        if not chunk:  # the tray quit or died: so does its menu
            root.quit()
            return
        pending.extend(chunk)
        take_lines()

    take_lines()  # what the tray wrote while Tk started
    root.tk.createfilehandler(STDIN, tkinter.READABLE, on_stdin)
    menu.bind("<Unmap>", lambda _e: root.quit())
    menu.tk_popup(x, y)
    root.mainloop()  # until the menu closes: an item was chosen, the click went away, Escape
    root.destroy()
    return 0
