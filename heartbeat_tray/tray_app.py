"""The tray app: the ticker's state rendered as an icon, a tooltip and a menu (spec §8).

Data flows one way: ticker → AppState → (UI thread) → icon, title, menu, notifications.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import webbrowser
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from heartbeat_tray.app_command import app_command
from heartbeat_tray.app_state import AppState, Health, Snapshot, notification_for
from heartbeat_tray.icon_art import PULSE_FRAME_MS, IconSet, icon_set, icon_state
from heartbeat_tray.instance_channel import ChannelServer, send_command
from heartbeat_tray.instance_lock import InstanceLock
from heartbeat_tray.keystore import KeyringUnavailable, KeyStore
from heartbeat_tray.launch_at_login import LaunchAtLoginError, for_this_os
from heartbeat_tray.log_setup import never_log
from heartbeat_tray.notifications import Notifier
from heartbeat_tray.outbox import Outbox
from heartbeat_tray.paths import AppPaths
from heartbeat_tray.posthog_client import PostHogClient
from heartbeat_tray.settings import LoadedSettings, Settings, installation_id, load_settings
from heartbeat_tray.settings import save_settings as write_settings
from heartbeat_tray.ticker import Ticker, TickerConfig
from heartbeat_tray.tray_menu import SEPARATOR, Entries, MenuEntry, TkPopup, to_pystray
from heartbeat_tray.ui_thread import (
    NoDisplay,
    PostingUiThread,
    SelectUiThread,
    UiThread,
    poster_for,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NO_DISPLAY = 2


def _no_display(reason: str) -> NoDisplay:
    return NoDisplay(
        f"No display is available ({reason}); the tray needs a desktop session — "
        "run 'heartbeat-tray run' for the headless heartbeat."
    )


def import_pystray() -> tuple[Any, str]:
    """Import pystray (it picks its backend at import time) and name the backend it chose."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise _no_display("DISPLAY is not set")
    try:
        import pystray
    except Exception as exc:  # Xlib.error.DisplayNameError/DisplayConnectionError, not ImportError
        raise _no_display(str(exc).strip() or type(exc).__name__) from None
    return pystray, str(pystray.Icon.__module__).rsplit("._", 1)[-1]  # "pystray._xorg" → xorg


def posthog_app_url(host: str) -> str:
    """Where a person looks at the project: the app host, not the .i. ingest host."""
    parts = urlsplit(host)
    name = parts.hostname or ""
    if name in ("us.i.posthog.com", "eu.i.posthog.com"):
        return f"https://{name.replace('.i.', '.')}"
    return host


def open_path(path: str) -> None:
    """Open a file with the desktop's default application, without blocking the UI."""
    if sys.platform == "win32":
        os.startfile(path)
    elif sys.platform == "darwin":
        subprocess.Popen(["open", path])
    else:
        subprocess.Popen(["xdg-open", path])


class TrayApp:
    def __init__(
        self,
        paths: AppPaths,
        loaded: LoadedSettings,
        settings: Settings,
        *,
        autostart: bool,
        overrides: dict[str, Any],
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.overrides = overrides
        self.autostart = autostart
        # The keyring is read in a short-lived child process: loading its backends would add
        # about 20 MiB to a process that runs all day, for one read at start-up.
        self.keys = KeyStore(read_in_child=True)
        self.state = AppState(Snapshot(settings_problem=loaded.problem))
        self.outbox = Outbox(paths.outbox_file)
        self.client = PostHogClient()
        self.launch_at_login = for_this_os()
        self.ticker = Ticker(
            self._ticker_config(settings),
            key_source=self._read_key,
            outbox=self.outbox,
            client=self.client,
            state=self.state,
        )
        self.icons: IconSet = icon_set()
        self.icon: Any = None
        self.ui: UiThread
        self.popup: TkPopup | None = None  # xorg only
        self.notifier: Notifier
        self.channel: ChannelServer | None = None
        self._shown: Snapshot | None = None
        self._pulse_frame: int | None = None
        self._dialog: subprocess.Popen[bytes] | None = None
        self._quitting = False

    # --- the core side ---

    def _ticker_config(self, settings: Settings) -> TickerConfig:
        distinct_id = settings.distinct_id or installation_id(self.paths.installation_id_file)
        return TickerConfig(settings, distinct_id)

    def _read_key(self) -> str | None:
        key = self.keys.get()  # KeyringUnavailable goes to the ticker: "needs setup"
        if key is None:
            return None
        never_log(key.value)
        return key.value

    def reload_settings(self) -> None:
        """After the settings dialog saved: new settings and key, applied without a restart."""
        loaded = load_settings(self.paths.config_file)
        try:
            settings = loaded.settings.with_overrides(**self.overrides)
        except ValueError:
            settings = loaded.settings
        self.settings = settings
        self.keys.forget_cached()
        self.ticker.apply(self._ticker_config(settings))
        self.state.update(settings_problem=loaded.problem)
        log.info("Settings reloaded")

    # --- menu ---

    def menu_entries(self) -> Entries:
        def snap() -> Snapshot:  # read fresh each time the menu shows
            return self.state.snapshot

        return [
            MenuEntry(lambda: "Enabled", self.toggle_enabled, lambda: snap().enabled, default=True),
            MenuEntry(lambda: snap().status_line),
            MenuEntry(lambda: snap().counters_line),
            SEPARATOR,
            MenuEntry(lambda: "Send heartbeat now", self.send_now),
            MenuEntry(lambda: "Settings…", self.open_settings),
            MenuEntry(lambda: "Launch at login", self.toggle_launch_at_login, self._launches),
            MenuEntry(lambda: "Open PostHog", self.open_posthog),
            MenuEntry(lambda: "Open log", self.open_log),
            SEPARATOR,
            MenuEntry(lambda: "Quit", self.quit),
        ]

    def _launches(self) -> bool:
        try:
            return self.launch_at_login.is_enabled()
        except Exception:
            return False

    # --- actions (UI thread) ---

    def toggle_enabled(self) -> None:
        enabled = not self.ticker.enabled
        self.ticker.set_enabled(enabled)
        self.state.update(enabled=enabled)  # shows at once; the ticker confirms
        # Remember it across restarts, in the file the user owns (per-run overrides stay out).
        loaded = load_settings(self.paths.config_file)
        if loaded.problem is None:
            try:
                write_settings(self.paths.config_file, replace(loaded.settings, enabled=enabled))
            except OSError as exc:
                log.warning("Could not save enabled=%s: %s", enabled, exc)

    def send_now(self) -> None:
        self.ticker.send_now()

    def open_settings(self) -> None:
        if self._dialog is not None and self._dialog.poll() is None:
            return  # already open
        try:
            self._dialog = subprocess.Popen(app_command("settings"))
        except OSError:
            log.exception("Could not open the settings dialog")
            open_path(str(self.paths.config_file))

    def toggle_launch_at_login(self) -> None:
        try:
            if self.launch_at_login.is_enabled():
                self.launch_at_login.disable()
            else:
                self.launch_at_login.enable()
        except LaunchAtLoginError as exc:
            self.notifier.show("Launch at login unchanged", str(exc))
        self._refresh_menu()

    def open_posthog(self) -> None:
        url = posthog_app_url(self.settings.host)
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    def open_log(self) -> None:
        self.paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.paths.log_file.touch(exist_ok=True)
        open_path(str(self.paths.log_file))

    def quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        log.info("Quitting")
        self.ticker.stop(timeout=1.0)
        if self.channel is not None:
            self.channel.close()
        try:
            self.icon.visible = False
            self.icon.stop()
        except Exception:
            log.warning("Stopping the tray icon failed", exc_info=True)
        if self.popup is not None:
            self.popup.close()
        if isinstance(self.ui, SelectUiThread):
            self.ui.quit()

    def on_command(self, command: str) -> None:
        """From a second launch or the settings dialog, on the channel thread."""
        if command == "reload":
            self.ui.call(self.reload_settings)
        elif command == "settings":
            self.ui.call(self.open_settings)

    # --- rendering (UI thread) ---

    def on_snapshot(self, _snapshot: Snapshot) -> None:
        """Called on the ticker's thread: hand the work to the UI thread."""
        self.ui.call(self.render)

    def render(self) -> None:
        snap = self.state.snapshot
        before = self._shown
        self._shown = snap
        if before is not None and snap.accepted_live > before.accepted_live:
            self._start_pulse()
        elif self._pulse_frame is None:
            self._set_image(self.icons.states[icon_state(snap.health)])
        self.icon.title = f"Heartbeat — {snap.status_line}"[:127]
        self._refresh_menu()
        if before is not None and self.settings.notify:
            note = notification_for(before, snap)
            if note:
                self.notifier.show(*note)

    def _refresh_menu(self) -> None:
        if self.icon is not None:
            self.icon.update_menu()

    def _set_image(self, image: Any) -> None:
        if self.icon.icon is not image:
            self.icon.icon = image

    def _start_pulse(self) -> None:
        restart = self._pulse_frame is None
        self._pulse_frame = 0
        self._set_image(self.icons.pulse[0])
        if restart:
            self.ui.call_later(PULSE_FRAME_MS, self._next_pulse_frame)

    def _next_pulse_frame(self) -> None:
        if self._pulse_frame is None or self._quitting:
            return
        self._pulse_frame += 1
        if self._pulse_frame < len(self.icons.pulse):
            self._set_image(self.icons.pulse[self._pulse_frame])
            self.ui.call_later(PULSE_FRAME_MS, self._next_pulse_frame)
        else:
            self._pulse_frame = None
            self._set_image(self.icons.states[icon_state(self.state.snapshot.health)])

    # --- start-up ---

    def _first_run_needs_setup(self) -> bool:
        if self.autostart:
            return False
        try:
            return self.keys.get() is None
        except KeyringUnavailable:
            return False  # the status line explains it; a dialog could not store a key either

    def run(self, pystray: Any, backend: str) -> int:
        title = "Heartbeat — starting"
        first_image = self.icons.states[icon_state(Health.HEALTHY)]
        if backend == "xorg":
            return self._run_xorg(first_image, title)
        if backend in ("gtk", "appindicator"):
            from gi.repository import GLib  # type: ignore[import-not-found,unused-ignore]

            GLib.set_prgname("heartbeat-tray")  # the window class trays and docks show
        icon = pystray.Icon("heartbeat-tray", first_image, title)
        self.ui = PostingUiThread(poster_for(backend))
        icon.menu = to_pystray(self.menu_entries(), self.ui)
        self.icon = icon
        self.notifier = Notifier(icon)

        def setup(i: Any) -> None:
            i.visible = True
            self._start_core()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.ui.call(self.quit))
        try:
            icon.run(setup=setup)
        except Exception:
            if not self._quitting:
                raise
            # pystray's gtk backend raises while tearing down when no notification daemon runs
            log.warning("The tray backend failed while quitting", exc_info=True)
        return EXIT_OK

    def _run_xorg(self, first_image: Any, title: str) -> int:
        from heartbeat_tray.tray_xorg import XorgIcon, start_in_thread

        ui = self.ui = SelectUiThread()
        entries = self.menu_entries()
        popup = self.popup = TkPopup(entries, ui)
        self.icon = XorgIcon(
            "heartbeat-tray",
            first_image,
            title,
            menu=to_pystray(entries, ui),
            on_context_menu=lambda x, y: ui.call(lambda: popup.show(x, y)),
        )
        self.notifier = Notifier(self.icon)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: ui.call(self.quit))
        start_in_thread(self.icon, on_ready=lambda: ui.call(self._show_icon))
        self._start_core()
        ui.run()
        ui.close()
        return EXIT_OK

    def _show_icon(self) -> None:
        self.icon.visible = True
        log.info("Tray icon shown")

    def _start_core(self) -> None:
        self.state.subscribe(self.on_snapshot)
        self.channel = ChannelServer(self.paths.state_dir, self.on_command)
        self.channel.start()
        self.ticker.start()
        problem = self.state.snapshot.settings_problem
        if problem:  # the file was set aside: say so once, in words, not only in the log
            self.ui.call(lambda: self.notifier.show("Settings file was invalid", problem))
        if self._first_run_needs_setup():
            self.ui.call(self.open_settings)


def run_tray(
    paths: AppPaths,
    loaded: LoadedSettings,
    settings: Settings,
    *,
    autostart: bool,
    overrides: dict[str, Any] | None = None,
) -> int:
    pystray, backend = import_pystray()
    lock = InstanceLock(paths.lock_file)
    if not lock.acquire():
        if send_command(paths.state_dir, "settings"):
            print("Heartbeat Tray is already running; it has been asked to open its settings.")
            return EXIT_OK
        if sys.stderr is not None:
            print(lock.busy_message("stop its 'run' to use the tray instead"), file=sys.stderr)
        return EXIT_OK
    try:
        log.info("Tray starting with the %s backend", backend)
        app = TrayApp(paths, loaded, settings, autostart=autostart, overrides=overrides or {})
        return app.run(pystray, backend)
    finally:
        lock.release()
