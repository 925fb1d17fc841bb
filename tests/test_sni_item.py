"""Our StatusNotifierItem as hosts really read it, over a real (private) D-Bus session bus:
every property a host may ask answers, dbusmenu's root item answers, and a label change is
``ItemsPropertiesUpdated`` so that an open menu stays open (LXQt closes it on ``LayoutUpdated``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from PIL import Image

from heartbeat_tray.core.app_state import Snapshot
from heartbeat_tray.tray.presenter import Item, TrayView, present
from heartbeat_tray.tray.sni import (
    ITEM_IFACE,
    ITEM_PATH,
    MENU_IFACE,
    MENU_PATH,
    WATCHER,
    SniIcon,
    dbusmenu_label,
    watcher_program,
)
from testkit.private_bus import start_private_bus

pytestmark = pytest.mark.desktop  # needs dbus-daemon, installed with the desktop layer


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    daemon, address = start_private_bus(dict(os.environ))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    yield address
    daemon.terminate()
    daemon.wait(timeout=10)


class Item_:
    """The item, and a host-side connection that reads it and hears its signals."""

    def __init__(self) -> None:
        self.view: TrayView = present(Snapshot(), launch_at_login=False)
        self.icon = SniIcon(
            [Image.new("RGBA", (32, 32), (255, 0, 0, 255))],
            lambda: self.view,
            on_activate=lambda: None,
            on_secondary=lambda: None,
            on_menu=lambda _item: None,
        )
        self.icon.visible = True
        assert self.icon._conn is not None
        self.name = self.icon._conn.unique_name
        self.host: DBusConnection = open_dbus_connection(bus="SESSION")
        rule = MatchRule(type="signal", sender=self.name)
        self.host.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)

    def call(self, path: str, interface: str, member: str, sig: str, body: tuple[Any, ...]) -> Any:
        address = DBusAddress(path, bus_name=self.name, interface=interface)
        reply = self.host.send_and_get_reply(new_method_call(address, member, sig, body), timeout=5)
        assert reply.header.message_type == MessageType.method_return, reply.body
        return reply.body

    def signals(self, until: str) -> list[tuple[str, Any]]:
        """Signals from the item, in order, up to and including the first named ``until``."""
        seen = []
        while True:
            msg = self.host.receive(timeout=5)
            if msg.header.message_type != MessageType.signal:
                continue
            member = msg.header.fields[HeaderFields.member]
            seen.append((member, msg.body))
            if member == until:
                return seen

    def close(self) -> None:
        self.icon.stop()
        self.host.close()


@pytest.fixture
def item(bus: str) -> Iterator[Item_]:
    made = Item_()
    yield made
    made.close()


EMPTY = {
    "IconAccessibleDesc": None,  # the tooltip text: any string
    "AttentionAccessibleDesc": None,
    "IconThemePath": "",
    "OverlayIconName": "",
    "OverlayIconPixmap": [],
    "AttentionIconName": "",
    "AttentionMovieName": "",
    "WindowId": 0,
    "IconName": "",
}


def test_every_property_a_host_may_read_answers_never_an_error(item: Item_) -> None:
    for name, expected in EMPTY.items():
        ((_sig, value),) = item.call(
            ITEM_PATH, "org.freedesktop.DBus.Properties", "Get", "ss", (ITEM_IFACE, name)
        )
        if expected is None:
            assert isinstance(value, str), name
        else:
            assert value == expected, name
    (every,) = item.call(ITEM_PATH, "org.freedesktop.DBus.Properties", "GetAll", "s", (ITEM_IFACE,))
    assert set(EMPTY) <= set(every)


def test_dbusmenu_root_item_answers_its_properties(item: Item_) -> None:
    (found,) = item.call(MENU_PATH, MENU_IFACE, "GetGroupProperties", "aias", ([0], []))
    assert found == [(0, {"children-display": ("s", "submenu")})]
    (value,) = item.call(MENU_PATH, MENU_IFACE, "GetProperty", "is", (0, "children-display"))
    assert value == ("s", "submenu")


def test_a_label_change_updates_entries_in_place_and_only_new_entries_change_the_layout(
    item: Item_,
) -> None:
    item.icon.update_menu()
    assert item.signals(until="LayoutUpdated")[-1][0] == "LayoutUpdated"

    before = item.view
    item.view = present(replace(Snapshot(), enabled=False, sent_today=5), launch_at_login=False)
    pairs = enumerate(zip(before.menu, item.view.menu, strict=True), start=1)
    changed = [n for n, (a, b) in pairs if a != b]
    assert len(changed) == 2  # the Enabled checkmark and the counters line
    item.icon.update_menu()
    item.icon.update_menu()  # nothing changed since: no signal
    item.view = replace(item.view, title="x")  # a change the menu does not show: no signal
    item.icon.update_menu()
    item.icon.title = "Heartbeat — marker"  # a signal we know comes next, to stop reading
    seen = item.signals(until="NewTitle")
    menu = [(m, body) for m, body in seen if m in ("ItemsPropertiesUpdated", "LayoutUpdated")]
    assert [m for m, _ in menu] == ["ItemsPropertiesUpdated"]
    updated, removed = menu[0][1]
    assert removed == []
    assert [n for n, _props in updated] == changed
    props = dict(updated)
    assert props[changed[0]]["toggle-state"] == ("i", 0)
    assert props[changed[1]]["label"] == ("s", item.view.line(Item.COUNTERS).label)


def gnome_shows(label: str) -> str:
    """What GNOME's AppIndicator extension draws for a label (dbusMenu.js, GNOME 43)."""
    return re.sub(r"_([^_])", r"\1", label, count=1)


def libdbusmenu_shows(label: str) -> str:
    """What libdbusmenu hosts draw: "_" marks the mnemonic (not drawn), "__" is one "_"."""
    return re.sub(r"_(_?)", lambda m: m.group(1), label)


@pytest.mark.parametrize(
    "text",
    [
        "No keyring: set POSTHOG_PERSONAL_API_KEY",
        "POSTHOG_PROJECT_API_KEY",
        "a__b_c",
        "trailing_",
        "none",
        "_leading",
    ],
)
def test_labels_read_as_written_on_gnome_and_on_libdbusmenu_hosts(text: str) -> None:
    assert gnome_shows(dbusmenu_label(text, "gnome-shell")) == text
    for host in ("plasmashell", "lxqt-panel", "xfce4-panel", ""):  # "": unknown, the dbusmenu rule
        assert libdbusmenu_shows(dbusmenu_label(text, host)) == text


def test_the_host_program_is_read_from_the_watchers_process(bus: str) -> None:
    with open_dbus_connection(bus="SESSION") as watcher:
        watcher.send_and_get_reply(message_bus.RequestName(WATCHER), timeout=5)
        with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as comm:
            assert watcher_program() == comm.read().strip()
