"""The History window: the lag chart of the last 24 h, in a process of its own like the Settings
dialog (the tray never loads Tk for it). It redraws from the state file once a minute while it
is open, and closes with Escape or its Close button.
"""

from __future__ import annotations

import logging
import signal
import tkinter
from collections.abc import Callable

from PIL import Image, ImageTk

from heartbeat_tray.dialog.history_chart import WIDTH
from heartbeat_tray.dialog.tk_window import new_root
from heartbeat_tray.system.ui_thread import TkUiThread

log = logging.getLogger(__name__)

REFRESH_MS = 60_000  # the check polls every minute or two: a redraw a minute is enough


def run_history_window(picture: Callable[[int], Image.Image]) -> int:
    """Show ``picture(width)`` until closed (0). Raises NoDisplay without a display."""
    root = new_root(
        "heartbeat-tray-history",
        "write the history to a file with 'heartbeat-tray history --png FILE'.",
    )
    root.title("Heartbeat Tray — History")
    root.resizable(False, False)
    shown = tkinter.Label(root, borderwidth=0)
    shown.pack()
    buttons = tkinter.Frame(root, padx=10, pady=8)
    buttons.pack(fill="x")
    tkinter.Button(buttons, text="Close", width=10, command=root.destroy).pack(side="right")
    tkinter.Button(buttons, text="Refresh", width=10, command=lambda: draw()).pack(side="right")
    photo: list[ImageTk.PhotoImage] = []  # Tk shows it only while Python holds a reference

    def draw() -> None:
        try:
            image = picture(min(WIDTH, root.winfo_screenwidth() - 40))
        except Exception:
            log.exception("Could not draw the history")
            return
        photo[:] = [ImageTk.PhotoImage(image)]
        shown.configure(image=photo[0])

    def refresh() -> None:
        draw()
        root.after(REFRESH_MS, refresh)

    root.bind("<Escape>", lambda _event: root.destroy())
    # With a threaded Tcl, tkinter's loop blocks in Tcl and runs Python's signal handlers only
    # after the next Tk event: on an idle screen the tray's SIGTERM went unanswered (seen in
    # CI). The UI hand-off's wakeup fd wakes Tk at the signal itself.
    ui = TkUiThread(root)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: ui.call(root.destroy))
    refresh()
    root.after_idle(lambda: log.info("History window shown"))
    root.mainloop()
    ui.close()
    return 0
