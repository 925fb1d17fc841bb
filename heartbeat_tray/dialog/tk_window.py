"""The one way our windows (Settings, History) come up: a Tk root, or a sentence without a
display."""

from __future__ import annotations

import tkinter

from heartbeat_tray.system.display import NoDisplay


def new_root(class_name: str, instead: str) -> tkinter.Tk:
    """A Tk root with ``class_name`` (window managers and tests find it by it); raises
    NoDisplay saying ``instead`` (what to do without a desktop) when there is no display."""
    try:
        return tkinter.Tk(className=class_name)
    except tkinter.TclError as exc:
        raise NoDisplay(f"No display is available ({exc}); {instead}") from None
