"""The tray menu (spec §8) as one model, rendered for pystray and as a Tk popup for xorg."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from heartbeat_tray.ui_thread import UiThread


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
    """The menu at the pointer on xorg, where pystray has none. Built afresh on each right
    click, so it always shows the current state; the previous one is destroyed."""

    def __init__(self, root: Any, entries: Entries) -> None:
        self._root = root
        self._entries = entries
        self._menu: Any = None

    def show(self, x: int, y: int) -> None:
        import tkinter

        if self._menu is not None:
            self._menu.destroy()
        menu = self._menu = tkinter.Menu(self._root, tearoff=False)
        self._vars = []
        for entry in self._entries:
            if entry is None:
                menu.add_separator()
                continue
            state: Literal["normal", "disabled"] = "normal" if entry.action else "disabled"
            action = entry.action or (lambda: None)
            if entry.checked is not None:
                var = tkinter.BooleanVar(master=menu, value=entry.checked())
                self._vars.append(var)
                menu.add_checkbutton(label=entry.text(), variable=var, command=action, state=state)
            else:
                menu.add_command(label=entry.text(), command=action, state=state)
        menu.tk_popup(x, y)
