"""Whether there is a screen to show a window on; the one error every front end raises without."""

from __future__ import annotations


class NoDisplay(Exception):
    """There is no graphical session to show the tray or a dialog in; ``str()`` says what to do."""
