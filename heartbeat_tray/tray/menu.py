"""The tray menu, rendered from the presenter's ``TrayView``: for pystray, and as a Tk popup on
xorg (where pystray has no menu).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from heartbeat_tray.tray.presenter import MENU, Item, TrayView
from heartbeat_tray.tray.ui_thread import SelectUiThread, UiThread

log = logging.getLogger(__name__)

ViewSource = Callable[[], TrayView]  # the latest view, read each time the menu shows
OnClick = Callable[[Item], None]  # runs on the UI thread


def to_pystray(view: ViewSource, on_click: OnClick, ui: UiThread) -> Any:
    """A pystray Menu whose texts and checks are re-read on every ``update_menu()``."""
    import pystray

    def item(entry: Item) -> Any:
        def clicked(_icon: Any, _item: Any) -> None:
            ui.call(lambda: on_click(entry))

        first = view().line(entry)
        return pystray.MenuItem(
            lambda _item: view().line(entry).label,
            clicked,
            checked=(lambda _item: bool(view().line(entry).checked))
            if first.checked is not None
            else None,
            enabled=first.clickable,
            default=entry is Item.ENABLED,  # a left click; the app decides what it does
        )

    return pystray.Menu(*(pystray.Menu.SEPARATOR if e is None else item(e) for e in MENU))


class TkPopup:
    """The menu at the pointer on xorg, where pystray has none.

    Tk is loaded only for the moment the menu is open (it costs 9 MiB resident), and the menu is
    built afresh each time, so it always shows the current state. While it is open, the app's
    own jobs and timers keep running through ``ui.run_due``.
    """

    def __init__(self, view: ViewSource, on_click: OnClick, ui: SelectUiThread) -> None:
        self._view = view
        self._on_click = on_click
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
        for line in self._view().menu:
            if line is None:
                menu.add_separator()
                continue
            state: Literal["normal", "disabled"] = "normal" if line.clickable else "disabled"

            def command(item: Item = line.item) -> None:
                self._on_click(item)

            if line.checked is not None:
                var = tkinter.BooleanVar(master=root, value=line.checked)
                keep.append(var)
                menu.add_checkbutton(label=line.label, variable=var, command=command, state=state)
            else:
                menu.add_command(label=line.label, command=command, state=state)
        menu.bind("<Unmap>", lambda _e: root.quit())
        pending: list[str] = []

        def pump() -> None:
            pending.clear()
            self._ui.run_due()
            if self._root is not None:
                pending.append(root.after(50, pump))

        pending.append(root.after(50, pump))
        try:
            menu.tk_popup(x, y)
            root.mainloop()  # until the menu closes: an item was chosen or the click went away
        finally:
            self._root = None
            for after_id in pending:  # a pump left scheduled would complain on destroy
                root.after_cancel(after_id)
            root.destroy()

    def close(self) -> None:
        if self._root is not None:
            self._root.quit()
