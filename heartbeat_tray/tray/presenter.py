"""What the tray shows for a snapshot: icon state, title, menu, and when to pulse.

Pure: no toolkit, no backend. Every backend (xorg with its Tk popup, pystray's win32, darwin,
gtk, appindicator) renders the same ``TrayView``, and tests check it without a display.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from heartbeat_tray.core.app_state import Health, Snapshot

TITLE_LIMIT = 127  # Windows' tooltip holds 128 characters


class IconState(enum.Enum):
    HEALTHY = "healthy"
    FAILING = "failing"
    DISABLED = "disabled"
    NEEDS_SETUP = "needs-setup"
    NOT_INGESTED = "not-ingested"  # accepted, but PostHog does not store the beats


class Item(enum.Enum):
    """The menu's entries, by name; ``MENU`` gives their order (None: a separator)."""

    ENABLED = "Enabled"
    STATUS = "status"
    INGESTION = "ingestion"
    COUNTERS = "counters"
    SEND_NOW = "Send heartbeat now"
    SETTINGS = "Settings…"
    HISTORY = "History…"
    LAUNCH_AT_LOGIN = "Launch at login"
    OPEN_POSTHOG = "Open PostHog"
    OPEN_LOG = "Open log"
    QUIT = "Quit"


MENU: tuple[Item | None, ...] = (
    Item.ENABLED,
    Item.STATUS,
    Item.INGESTION,
    Item.COUNTERS,
    None,
    Item.SEND_NOW,
    Item.SETTINGS,
    Item.HISTORY,
    Item.LAUNCH_AT_LOGIN,
    Item.OPEN_POSTHOG,
    Item.OPEN_LOG,
    None,
    Item.QUIT,
)


@dataclass(frozen=True)
class MenuLine:
    item: Item
    label: str
    clickable: bool = True
    checked: bool | None = None  # None: not a checkbox


@dataclass(frozen=True)
class TrayView:
    icon: IconState
    title: str
    menu: tuple[MenuLine | None, ...]
    needs_attention: bool  # failing: hosts that have an urgency flag show it

    def line(self, item: Item) -> MenuLine:
        return next(line for line in self.menu if line is not None and line.item is item)


def icon_state(health: Health) -> IconState:
    return {
        Health.HEALTHY: IconState.HEALTHY,
        Health.FAILING: IconState.FAILING,
        Health.KEY_REJECTED: IconState.FAILING,
        Health.WRONG_HOST: IconState.FAILING,
        Health.DISABLED: IconState.DISABLED,
        Health.NEEDS_SETUP: IconState.NEEDS_SETUP,
    }[health]


def present(snap: Snapshot, launch_at_login: bool) -> TrayView:
    lines: dict[Item, MenuLine] = {
        Item.ENABLED: MenuLine(Item.ENABLED, Item.ENABLED.value, checked=snap.enabled),
        Item.STATUS: MenuLine(Item.STATUS, snap.status_line, clickable=False),
        Item.INGESTION: MenuLine(Item.INGESTION, snap.ingestion.sentence, clickable=False),
        Item.COUNTERS: MenuLine(Item.COUNTERS, snap.counters_line, clickable=False),
        Item.LAUNCH_AT_LOGIN: MenuLine(
            Item.LAUNCH_AT_LOGIN, Item.LAUNCH_AT_LOGIN.value, checked=launch_at_login
        ),
    }
    menu = tuple(
        None if item is None else lines.get(item, MenuLine(item, item.value)) for item in MENU
    )
    state = icon_state(snap.health)
    if state is IconState.HEALTHY and snap.not_ingested:
        state = IconState.NOT_INGESTED
    return TrayView(
        icon=state,
        title=f"Heartbeat — {snap.status_line}"[:TITLE_LIMIT],
        menu=menu,
        needs_attention=state in (IconState.FAILING, IconState.NOT_INGESTED)
        or bool(snap.storage_problem)
        or snap.ingestion_slow,
    )


def default_action(snap: Snapshot) -> Item:
    """A left click: pause/resume, or Settings while the app cannot send (it never silently
    changes ``enabled`` while setup is needed)."""
    return Item.SETTINGS if snap.needs_setup else Item.ENABLED


def pulses(before: Snapshot | None, after: Snapshot) -> bool:
    """Each accepted live beat pulses the icon once."""
    return before is not None and after.accepted_live > before.accepted_live
