"""The tray menu (spec §8) as one model, rendered for pystray and as a Tk popup for xorg."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from heartbeat_tray.ui_thread import SelectUiThread, UiThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MenuEntry:
    text: Callable[[], str]
    action: Callable[[], None] | None = None  # None: an information line, not clickable
    checked: Callable[[], bool] | None = None
    default: bool = False  # run by a left click on the icon where the platform allows


SEPARATOR = None
Entries = Sequence[MenuEntry | None]


def to_pystray(entries: Entries, ui: UiThread) -> Any:
    """A pystray Menu whose texts and checks are re-read on every ``update_menu()``."""
    import pystray

    def item(entry: MenuEntry) -> Any:
        action = entry.action

        def clicked(_icon: Any, _item: Any) -> None:
            if action is not None:
                ui.call(action)

        checked = entry.checked
        return pystray.MenuItem(
            lambda _item: entry.text(),
            clicked,
            checked=(lambda _item: checked()) if checked else None,
            enabled=action is not None,
            default=entry.default,
        )

    return pystray.Menu(*(pystray.Menu.SEPARATOR if e is None else item(e) for e in entries))


class TkPopup:
    """The menu at the pointer on xorg, where pystray has none.

    Tk is loaded only for the moment the menu is open (it costs 9 MiB resident), and the menu is
    built afresh each time, so it always shows the current state. While it is open, the app's
    own jobs and timers keep running through ``ui.run_due``.
    """

    def __init__(self, entries: Entries, ui: SelectUiThread) -> None:
        self._entries = entries
        self._ui = ui
        self._root: Any = None

    def show(self, x: int, y: int) -> None:
        import tkinter

        if self._root is not None:
            return
        try:
            root = tkinter.Tk(className="heartbeat-tray-menu")
        except tkinter.TclError:
            log.exception("Could not open the menu")
            return
        root.withdraw()
        self._root = root
        menu = tkinter.Menu(root, tearoff=False)
        keep = []
        for entry in self._entries:
            if entry is None:
                menu.add_separator()
                continue
            state: Literal["normal", "disabled"] = "normal" if entry.action else "disabled"
            action = entry.action or (lambda: None)
            if entry.checked is not None:
                var = tkinter.BooleanVar(master=root, value=entry.checked())
                keep.append(var)
                menu.add_checkbutton(label=entry.text(), variable=var, command=action, state=state)
            else:
                menu.add_command(label=entry.text(), command=action, state=state)
        menu.bind("<Unmap>", lambda _e: root.quit())

        def pump() -> None:
            self._ui.run_due()
            if self._root is not None:
                root.after(50, pump)

        root.after(50, pump)
        try:
            menu.tk_popup(x, y)
            root.mainloop()  # until the menu closes: an item was chosen or the click went away
        finally:
            self._root = None
            root.destroy()

    def close(self) -> None:
        if self._root is not None:
            self._root.quit()
