"""A StatusNotifierItem of our own, on D-Bus with jeepney: the tray icon of KDE Plasma, GNOME
(with the AppIndicator extension Ubuntu ships), XFCE, Cinnamon, sway/waybar and Hyprland — under
Wayland too, where XEmbed (the xorg backend) does not exist. No X display is needed.

pystray reaches StatusNotifierItem only through libappindicator, which needs PyGObject, costs
~126 MB and cannot take a left click. This item can: ``Activate`` (left click) runs the app's
default action, ``SecondaryActivate`` (middle click) sends a beat, and the menu is a
``com.canonical.dbusmenu`` (version 3) rendered from the same menu model as every backend.

Threads: one D-Bus thread blocks reading the bus socket (no polling: 0 wakeups/s idle) and
answers property reads from the latest rendered state; clicks go to the UI thread through
``ui.call``. The UI thread changes the icon, title, menu and status; each change sends its
signal. Icons are pre-rendered ARGB32 pixmaps (network byte order) at five sizes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

from jeepney import (
    DBusAddress,
    HeaderFields,
    MessageType,
    new_error,
    new_method_call,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from PIL import Image

from heartbeat_tray.tray.presenter import Item, TrayView

log = logging.getLogger(__name__)

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM_PATH = "/StatusNotifierItem"
MENU_PATH = "/MenuBar"
ITEM_IFACE = "org.kde.StatusNotifierItem"
MENU_IFACE = "com.canonical.dbusmenu"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
PIXMAP_SIZES = (16, 22, 24, 32, 48)

Pixmap = tuple[int, int, bytes]

ROOT_ID = 0  # dbusmenu's root item: hosts ask its properties too (Cinnamon's bridge warns else)
ROOT_PROPS: dict[str, tuple[str, Any]] = {"children-display": ("s", "submenu")}

INTROSPECTION = """<node>
 <interface name="org.kde.StatusNotifierItem">
  <property name="Category" type="s" access="read"/>
  <property name="Id" type="s" access="read"/>
  <property name="Title" type="s" access="read"/>
  <property name="Status" type="s" access="read"/>
  <property name="WindowId" type="i" access="read"/>
  <property name="IconName" type="s" access="read"/>
  <property name="IconPixmap" type="a(iiay)" access="read"/>
  <property name="AttentionIconPixmap" type="a(iiay)" access="read"/>
  <property name="AttentionIconName" type="s" access="read"/>
  <property name="AttentionMovieName" type="s" access="read"/>
  <property name="OverlayIconName" type="s" access="read"/>
  <property name="OverlayIconPixmap" type="a(iiay)" access="read"/>
  <property name="IconThemePath" type="s" access="read"/>
  <property name="IconAccessibleDesc" type="s" access="read"/>
  <property name="AttentionAccessibleDesc" type="s" access="read"/>
  <property name="ToolTip" type="(sa(iiay)ss)" access="read"/>
  <property name="ItemIsMenu" type="b" access="read"/>
  <property name="Menu" type="o" access="read"/>
  <method name="ContextMenu"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
  <method name="Activate"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
  <method name="SecondaryActivate"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
  <method name="Scroll"><arg name="delta" type="i" direction="in"/><arg name="orientation" type="s" direction="in"/></method>
  <signal name="NewTitle"/><signal name="NewIcon"/><signal name="NewAttentionIcon"/>
  <signal name="NewToolTip"/><signal name="NewStatus"><arg name="status" type="s"/></signal>
 </interface>
 <interface name="com.canonical.dbusmenu">
  <property name="Version" type="u" access="read"/>
  <property name="TextDirection" type="s" access="read"/>
  <property name="Status" type="s" access="read"/>
  <property name="IconThemePath" type="as" access="read"/>
  <method name="GetLayout"><arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="as" direction="in"/><arg type="u" direction="out"/><arg type="(ia{sv}av)" direction="out"/></method>
  <method name="GetGroupProperties"><arg type="ai" direction="in"/><arg type="as" direction="in"/><arg type="a(ia{sv})" direction="out"/></method>
  <method name="GetProperty"><arg type="i" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="out"/></method>
  <method name="Event"><arg type="i" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/><arg type="u" direction="in"/></method>
  <method name="EventGroup"><arg type="a(isvu)" direction="in"/><arg type="ai" direction="out"/></method>
  <method name="AboutToShow"><arg type="i" direction="in"/><arg type="b" direction="out"/></method>
  <method name="AboutToShowGroup"><arg type="ai" direction="in"/><arg type="ai" direction="out"/><arg type="ai" direction="out"/></method>
  <signal name="ItemsPropertiesUpdated"><arg type="a(ia{sv})"/><arg type="a(ias)"/></signal>
  <signal name="LayoutUpdated"><arg type="u"/><arg type="i"/></signal>
 </interface>
</node>"""


def argb_pixmap(image: Image.Image, size: int) -> Pixmap:
    """ARGB32 in network byte order (A, R, G, B), with the image's real alpha."""
    rgba = image.convert("RGBA").resize((size, size), Image.Resampling.LANCZOS)
    r, g, b, a = rgba.split()
    argb = Image.merge("RGBA", (a, r, g, b))
    return (size, size, argb.tobytes())


def pixmaps(image: Image.Image) -> list[Pixmap]:
    return [argb_pixmap(image, size) for size in PIXMAP_SIZES]


def watcher_present(timeout: float = 2.0) -> bool | None:
    """Whether a StatusNotifierWatcher (a tray host) owns its name on the session bus; None
    when there is no session bus at all."""
    try:
        with open_dbus_connection(bus="SESSION") as conn:
            reply = conn.send_and_get_reply(message_bus.NameHasOwner(WATCHER), timeout=timeout)
            return bool(reply.body[0])
    except Exception as exc:
        log.info("No D-Bus session bus (%s)", exc)
        return None


def _watcher_changes() -> MatchRule:
    """The bus's NameOwnerChanged signals for the StatusNotifierWatcher's name."""
    rule = MatchRule(
        type="signal",
        sender="org.freedesktop.DBus",
        interface="org.freedesktop.DBus",
        member="NameOwnerChanged",
        path="/org/freedesktop/DBus",
    )
    rule.add_arg_condition(0, WATCHER)
    return rule


def watch_for_watcher(on_appeared: Callable[[], None]) -> Callable[[], None] | None:
    """Calls ``on_appeared`` (on a thread of its own) when a StatusNotifierWatcher takes its
    name: a panel started after the app, or GNOME's AppIndicator extension enabled later.
    Returns what stops the watching; None when there is no session bus. Blocks in ``receive``:
    no wakeups while nothing happens."""
    try:
        conn = open_dbus_connection(bus="SESSION")
    except Exception as exc:
        log.info("No D-Bus session bus to watch for a tray host (%s)", exc)
        return None
    rule = _watcher_changes()
    stopped = threading.Event()
    try:
        conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)
    except Exception as exc:
        log.info("Cannot watch for a tray host (%s)", exc)
        conn.close()
        return None

    def listen() -> None:
        while not stopped.is_set():
            try:
                msg = conn.receive()
            except (OSError, ConnectionResetError, ValueError):
                return
            if msg.header.message_type == MessageType.signal and msg.body[2]:
                on_appeared()

    def stop() -> None:
        stopped.set()
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)
        thread.join(2.0)
        with contextlib.suppress(OSError):
            conn.close()

    thread = threading.Thread(target=listen, name="sni-watch", daemon=True)
    thread.start()
    return stop


def watcher_program(timeout: float = 2.0) -> str:
    """The program name of the tray host's watcher ("gnome-shell", "plasmashell"…), or "" when
    it cannot be told (no /proc of it, as in a sandbox)."""
    try:
        with open_dbus_connection(bus="SESSION") as conn:
            reply = conn.send_and_get_reply(
                message_bus.GetConnectionUnixProcessID(WATCHER), timeout=timeout
            )
        pid = int(reply.body[0])
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except Exception as exc:
        log.info("Could not tell which program hosts the tray (%s)", exc)
        return ""


# dbusmenu labels mark a mnemonic with "_" and write a literal one as "__" (libdbusmenu: KDE,
# LXQt, XFCE, Cinnamon). GNOME's AppIndicator extension instead drops the first "_" that is
# followed by another character (`label.replace(/_([^_])/, '$1')`, dbusMenu.js) and shows "__"
# as is: there, doubling only the underscore it would drop gives back the text as written.
GNOME_HOSTS = frozenset({"gnome-shell"})


def dbusmenu_label(text: str, host_program: str) -> str:
    if host_program not in GNOME_HOSTS:
        return text.replace("_", "__")
    dropped = re.search(r"_[^_]", text)
    return text if dropped is None else text[: dropped.start()] + "_" + text[dropped.start() :]


class SniIcon:
    """Shaped like the part of pystray's Icon the tray app uses: ``icon``, ``title``,
    ``visible``, ``update_menu()``, ``stop()``, plus ``set_attention()``."""

    HAS_NOTIFICATION = False  # notifications go to the freedesktop service directly

    def __init__(
        self,
        images: list[Image.Image],
        view: Callable[[], TrayView],
        *,
        on_activate: Callable[[], None],
        on_secondary: Callable[[], None],
        on_menu: Callable[[Item], None],
        on_context_menu: Callable[[int, int], None] | None = None,
        on_host: Callable[[bool], None] = lambda _present: None,
    ) -> None:
        self._view = view
        self._on_host = on_host
        self._on_activate = on_activate
        self._on_secondary = on_secondary
        self._on_menu = on_menu
        self._on_context_menu = on_context_menu
        self._pixmaps = {id(image): pixmaps(image) for image in images}
        self._image: Image.Image = images[0]
        self._title = "Heartbeat"
        self._status = "Active"
        self._revision = 1
        self._shown_entries: dict[int, dict[str, tuple[str, Any]]] | None = None
        self._host_program = ""  # which host reads our labels; "" until one registers us
        self._visible = False
        self._send_lock = threading.Lock()
        self._conn: DBusConnection | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.registered = threading.Event()

    # --- the tray app's side (UI thread) ---

    @property
    def icon(self) -> Image.Image:
        return self._image

    @icon.setter
    def icon(self, image: Image.Image) -> None:
        if image is self._image:
            return
        if id(image) not in self._pixmaps:
            self._pixmaps[id(image)] = pixmaps(image)
        self._image = image
        self._signal(ITEM_PATH, ITEM_IFACE, "NewIcon")

    @property
    def title(self) -> str:
        return self._title

    @title.setter
    def title(self, text: str) -> None:
        if text == self._title:
            return
        self._title = text
        self._signal(ITEM_PATH, ITEM_IFACE, "NewToolTip")
        self._signal(ITEM_PATH, ITEM_IFACE, "NewTitle")

    def set_attention(self, needed: bool) -> None:
        status = "NeedsAttention" if needed else "Active"
        if status != self._status:
            self._status = status
            self._signal(ITEM_PATH, ITEM_IFACE, "NewStatus", "s", (status,))

    def update_menu(self) -> None:
        """A label, enabled or check change is ``ItemsPropertiesUpdated`` (an open menu stays open:
        LXQt closes it on ``LayoutUpdated``); ``LayoutUpdated`` only when entries come or go."""
        entries = {n: props for n, props, _ in self._entries()}
        before, self._shown_entries = self._shown_entries, entries
        if before is None or before.keys() != entries.keys():
            self._revision += 1
            self._signal(MENU_PATH, MENU_IFACE, "LayoutUpdated", "ui", (self._revision, 0))
            return
        changed = [(n, props) for n, props in entries.items() if props != before[n]]
        if changed:
            no_removals: list[tuple[int, list[str]]] = []
            self._signal(
                MENU_PATH,
                MENU_IFACE,
                "ItemsPropertiesUpdated",
                "a(ia{sv})a(ias)",
                (changed, no_removals),
            )

    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, show: bool) -> None:
        self._visible = show
        if show and self._thread is None:
            self.start()

    def start(self) -> None:
        self._conn = open_dbus_connection(bus="SESSION")
        conn = self._conn
        conn.send_and_get_reply(message_bus.AddMatch(_watcher_changes()), timeout=5)
        self._thread = threading.Thread(target=self._serve, name="sni-dbus", daemon=True)
        self._thread.start()
        if watcher_present():
            self._register()
        else:
            log.info("No tray host (StatusNotifierWatcher) yet; the icon shows when one starts")
            self._on_host(False)

    def stop(self) -> None:
        """Remove the item: closing our connection tells the watcher that it is gone."""
        self._stopped.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            if self._thread is not None:
                self._thread.join(2.0)
            with contextlib.suppress(OSError):
                conn.close()
        self._visible = False

    # --- the D-Bus thread ---

    def _register(self) -> None:
        conn = self._conn
        assert conn is not None
        call = DBusAddress(WATCHER_PATH, bus_name=WATCHER, interface=WATCHER)
        self._host_program = watcher_program()
        self._send(new_method_call(call, "RegisterStatusNotifierItem", "s", (conn.unique_name,)))
        self.registered.set()
        log.info("Registered the tray icon with the StatusNotifierWatcher")
        self._on_host(True)

    def _send(self, message: Any) -> None:
        conn = self._conn
        if conn is None:
            return
        with self._send_lock, contextlib.suppress(OSError):
            conn.send(message)

    def _signal(
        self,
        path: str,
        interface: str,
        name: str,
        sig: str | None = None,
        body: tuple[Any, ...] = (),
    ) -> None:
        if self._conn is None:
            return
        self._send(new_signal(DBusAddress(path, interface=interface), name, sig, body))

    def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._stopped.is_set():
            try:
                msg = conn.receive()
            except (OSError, ConnectionResetError, ValueError):
                if not self._stopped.is_set():
                    log.warning("The D-Bus connection of the tray icon closed")
                return
            try:
                self._dispatch(msg)
            except Exception:
                log.exception("Handling a D-Bus message failed")

    def _dispatch(self, msg: Any) -> None:
        fields = msg.header.fields
        kind = msg.header.message_type
        member = fields.get(HeaderFields.member)
        if kind == MessageType.signal:
            if member == "NameOwnerChanged" and msg.body[0] == WATCHER:
                if msg.body[2]:
                    log.info("A tray host appeared (or restarted); registering the icon again")
                    self._register()
                else:
                    log.info("The tray host went away; the icon shows again when one starts")
                    self._on_host(False)
            return
        if kind != MessageType.method_call:
            return
        interface = fields.get(HeaderFields.interface)
        path = fields.get(HeaderFields.path)
        reply = self._answer(path, interface, member, msg)
        if reply is not None:
            self._send(reply)

    def _answer(self, path: str, interface: str | None, member: str, msg: Any) -> Any:
        if interface == "org.freedesktop.DBus.Introspectable":
            return new_method_return(msg, "s", (INTROSPECTION,))
        if interface == "org.freedesktop.DBus.Peer" and member == "Ping":
            return new_method_return(msg)
        if interface == PROPS_IFACE:
            props = self._item_props() if path == ITEM_PATH else self._menu_props()
            if member == "GetAll":
                return new_method_return(msg, "a{sv}", (props,))
            if member == "Get":
                name = msg.body[1]
                if name in props:
                    return new_method_return(msg, "v", (props[name],))
                return new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty")
            return new_error(msg, "org.freedesktop.DBus.Error.PropertyReadOnly")
        if path == ITEM_PATH:
            return self._item_call(member, msg)
        if path == MENU_PATH:
            return self._menu_call(member, msg)
        return new_error(msg, "org.freedesktop.DBus.Error.UnknownObject")

    # --- org.kde.StatusNotifierItem ---

    def _item_props(self) -> dict[str, tuple[str, Any]]:
        icon = self._pixmaps.get(id(self._image), [])
        return {
            "Category": ("s", "ApplicationStatus"),
            "Id": ("s", "heartbeat-tray"),
            "Title": ("s", "Heartbeat Tray"),
            "Status": ("s", self._status),
            "WindowId": ("i", 0),
            "IconName": ("s", ""),
            "IconPixmap": ("a(iiay)", icon),
            "AttentionIconPixmap": ("a(iiay)", icon),
            # Asked by hosts as they are (GNOME's extension, LXQt): the empty value, never an
            # error (an error is a stack trace in gnome-shell's log, 34 a minute).
            "AttentionIconName": ("s", ""),
            "AttentionMovieName": ("s", ""),
            "OverlayIconName": ("s", ""),
            "OverlayIconPixmap": ("a(iiay)", []),
            "IconThemePath": ("s", ""),
            "IconAccessibleDesc": ("s", self._title),
            "AttentionAccessibleDesc": ("s", self._title),
            "ToolTip": ("(sa(iiay)ss)", ("", [], "Heartbeat Tray", self._title)),
            "ItemIsMenu": ("b", False),
            "Menu": ("o", MENU_PATH),
        }

    def _item_call(self, member: str, msg: Any) -> Any:
        if member == "Activate":
            self._on_activate()
        elif member == "SecondaryActivate":
            self._on_secondary()
        elif member == "ContextMenu":
            if self._on_context_menu is not None:
                self._on_context_menu(int(msg.body[0]), int(msg.body[1]))
        elif member != "Scroll":
            return new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")
        return new_method_return(msg)

    # --- com.canonical.dbusmenu ---

    def _menu_props(self) -> dict[str, tuple[str, Any]]:
        return {
            "Version": ("u", 3),
            "TextDirection": ("s", "ltr"),
            "Status": ("s", "normal"),
            "IconThemePath": ("as", []),
        }

    def _entries(self) -> list[tuple[int, dict[str, tuple[str, Any]], Item | None]]:
        """(id, properties, item) of each menu entry; ids count from 1 (0 is the root)."""
        entries: list[tuple[int, dict[str, tuple[str, Any]], Item | None]] = []
        for number, line in enumerate(self._view().menu, start=1):
            if line is None:
                entries.append((number, {"type": ("s", "separator")}, None))
                continue
            props: dict[str, tuple[str, Any]] = {
                "label": ("s", dbusmenu_label(line.label, self._host_program)),
                "enabled": ("b", line.clickable),
                "visible": ("b", True),
            }
            if line.checked is not None:
                props["toggle-type"] = ("s", "checkmark")
                props["toggle-state"] = ("i", 1 if line.checked else 0)
            entries.append((number, props, line.item))
        return entries

    def _menu_call(self, member: str, msg: Any) -> Any:
        if member == "GetLayout":
            no_children: list[Any] = []
            children = [("(ia{sv}av)", (n, props, no_children)) for n, props, _ in self._entries()]
            root = (ROOT_ID, ROOT_PROPS, children)
            return new_method_return(msg, "u(ia{sv}av)", (self._revision, root))
        if member == "GetGroupProperties":
            wanted = set(msg.body[0])
            every = [(ROOT_ID, ROOT_PROPS), *((n, p) for n, p, _ in self._entries())]
            found = [(n, p) for n, p in every if not wanted or n in wanted]
            return new_method_return(msg, "a(ia{sv})", (found,))
        if member == "GetProperty":
            number, name = msg.body
            for n, props in [(ROOT_ID, ROOT_PROPS), *((n, p) for n, p, _ in self._entries())]:
                if n == number and name in props:
                    return new_method_return(msg, "v", (props[name],))
            return new_error(msg, "org.freedesktop.DBus.Error.InvalidArgs")
        if member == "Event":
            self._menu_event(int(msg.body[0]), str(msg.body[1]))
            return new_method_return(msg)
        if member == "EventGroup":
            for number, event_id, _data, _stamp in msg.body[0]:
                self._menu_event(int(number), str(event_id))
            return new_method_return(msg, "ai", ([],))
        if member == "AboutToShow":
            return new_method_return(msg, "b", (False,))
        if member == "AboutToShowGroup":
            return new_method_return(msg, "aiai", ([], []))
        return new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")

    def _menu_event(self, number: int, event_id: str) -> None:
        if event_id != "clicked":
            return
        for n, _props, item in self._entries():
            if n == number and item is not None:
                log.info("Menu: %s", item.value)
                self._on_menu(item)
