"""The tray app: wires the engine to a tray backend and renders what the presenter says.

Data flows one way: ticker → AppState → (UI thread) → presenter → icon, title, menu. Alerts
come from the engine; the tray shows them as desktop notifications.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import webbrowser
from typing import Any

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.app_state import Snapshot
from heartbeat_tray.core.hosts import app_host
from heartbeat_tray.core.settings import LoadedSettings, Overrides
from heartbeat_tray.engine import Engine
from heartbeat_tray.system.app_command import app_command
from heartbeat_tray.system.display import NoDisplay
from heartbeat_tray.system.instance_channel import ChannelServer, send_command
from heartbeat_tray.system.instance_lock import InstanceLock
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.launch_at_login import LaunchAtLoginError, for_this_os
from heartbeat_tray.system.notifications import Notifier
from heartbeat_tray.system.paths import AppPaths
from heartbeat_tray.system.ui_thread import UiThread
from heartbeat_tray.tray.backends import TrayBackend, TrayHooks, backend_for
from heartbeat_tray.tray.icon_art import PULSE_FRAME_MS, IconSet, icon_set
from heartbeat_tray.tray.presenter import (
    Item,
    default_action,
    present,
    pulses,
)

log = logging.getLogger(__name__)

EXIT_OK = 0

NO_TRAY_HOST = (
    "No tray to show the icon in: on GNOME, enable the AppIndicator extension; "
    "'heartbeat-tray status' shows the heartbeat meanwhile."
)
# At login the app may start before the panel: say "no tray" only if none came by then.
TRAY_HOST_GRACE_MS = 10_000


def _no_display(reason: str) -> NoDisplay:
    return NoDisplay(
        f"No display is available ({reason}); the tray needs a desktop session — "
        "run 'heartbeat-tray run' for the headless heartbeat."
    )


BACKENDS = ("sni", "xorg", "gtk", "appindicator")


def choose_backend() -> tuple[Any, str]:
    """(pystray or None, backend). On Linux our own StatusNotifierItem when a tray host speaks
    it (KDE, GNOME with AppIndicator, XFCE, sway/waybar…), else pystray's fixed xorg backend.
    ``HEARTBEAT_TRAY_BACKEND`` forces one; ``PYSTRAY_BACKEND`` asks for pystray's own choice."""
    forced = os.environ.get("HEARTBEAT_TRAY_BACKEND", "").strip().lower()
    if forced and forced not in BACKENDS:
        raise NoDisplay(
            f"HEARTBEAT_TRAY_BACKEND={forced!r} is not one of {', '.join(BACKENDS)}; "
            "unset it to let the app choose."
        )
    linux = sys.platform.startswith("linux") or "bsd" in sys.platform
    if linux and forced != "sni" and forced:
        os.environ["PYSTRAY_BACKEND"] = forced
    elif linux and (forced == "sni" or not os.environ.get("PYSTRAY_BACKEND")):
        from heartbeat_tray.tray.sni import watcher_present

        present = watcher_present()
        if present or (forced == "sni" and present is not None):
            return None, "sni"
        if not os.environ.get("DISPLAY") and os.environ.get("WAYLAND_DISPLAY"):
            if present is None:
                raise _no_display("Wayland without a D-Bus session bus, where tray icons live")
            return None, "sni"  # Wayland has no XEmbed: wait for a tray host to appear
        if forced == "sni":
            raise _no_display("HEARTBEAT_TRAY_BACKEND=sni, but there is no D-Bus session bus")
        # No watcher: our fixed XEmbed backend, also where PyGObject is installed (pystray would
        # pick appindicator there, which shows nothing without a watcher either).
        os.environ["PYSTRAY_BACKEND"] = "xorg"
    return import_pystray()


def import_pystray() -> tuple[Any, str]:
    """Import pystray (it picks its backend at import time) and name the backend it chose."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if not os.environ.get("DISPLAY"):
            raise _no_display("DISPLAY is not set")
    try:
        import pystray
    except Exception as exc:  # Xlib.error.DisplayNameError/DisplayConnectionError, not ImportError
        raise _no_display(str(exc).strip() or type(exc).__name__) from None
    return pystray, str(pystray.Icon.__module__).rsplit("._", 1)[-1]  # "pystray._xorg" → xorg


def open_with_desktop(target: str) -> None:
    """Open a file or URL with the desktop's default application; raises OSError when none."""
    if sys.platform == "win32":
        os.startfile(target)
    elif sys.platform == "darwin":
        subprocess.Popen(["open", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        subprocess.Popen(["xdg-open", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class TrayApp:
    def __init__(self, paths: AppPaths, loaded: LoadedSettings, overrides: Overrides) -> None:
        self.paths = paths
        # The keyring is read in a short-lived child process: loading its backends would add
        # about 20 MiB to a process that runs all day, for one read at start-up.
        self.engine = Engine(
            paths,
            overrides=overrides,
            keys=KeyStore(read_in_child=True),
            front_end="tray",
            on_alert=self._on_alert,
            loaded=loaded,
        )
        self.state = self.engine.state
        self.launch_at_login = for_this_os()
        self.icons: IconSet = icon_set()
        self.backend: TrayBackend
        self.ui: UiThread
        self.channel: ChannelServer | None = None
        self.view = present(self.state.snapshot, launch_at_login=False)
        self._shown: Snapshot | None = None
        self._pulse_frame: int | None = None
        self._dialog: subprocess.Popen[bytes] | None = None
        self._history: subprocess.Popen[bytes] | None = None
        self._quitting = False
        self._setup_offered = False  # the first start without a key opens Settings once
        self._tray_host: bool | None = None  # None: not known yet
        self._no_host_said = False

    @property
    def icon(self) -> Any:
        return self.backend.icon

    @property
    def notifier(self) -> Notifier:
        return Notifier(self.backend.icon)

    # --- menu actions (UI thread) ---

    def on_click(self, item: Item) -> None:
        actions = {
            Item.ENABLED: self.activate,
            Item.SEND_NOW: self.engine.send_now,
            Item.SETTINGS: self.open_settings,
            Item.HISTORY: self.open_history,
            Item.LAUNCH_AT_LOGIN: self.toggle_launch_at_login,
            Item.OPEN_POSTHOG: self.open_posthog,
            Item.OPEN_LOG: self.open_log,
            Item.QUIT: self.quit,
        }
        action = actions.get(item)
        if action is not None:
            action()

    def activate(self) -> None:
        """The default action (a left click, or the first menu item)."""
        snap = self.state.snapshot
        if default_action(snap) is Item.SETTINGS:
            self.open_settings()
        else:
            self.engine.set_enabled(not self.engine.enabled)

    def open_settings(self) -> None:
        self._dialog = self._open_window(self._dialog, "settings", "Settings")

    def open_history(self) -> None:
        """The lag chart, in a process of its own like Settings (Tk never loads in the tray)."""
        self._history = self._open_window(self._history, "history", "History")

    def _open_window(
        self, window: subprocess.Popen[bytes] | None, command: str, name: str
    ) -> subprocess.Popen[bytes] | None:
        """Our command that shows a window, unless it is open already."""
        if window is not None and window.poll() is None:
            return window
        try:
            return subprocess.Popen(app_command(command))
        except OSError as exc:
            log.exception("Could not open the %s window", name)
            self.notifier.show(f"{name} could not open", f"{exc.strerror or exc}.")
            return None

    def toggle_launch_at_login(self) -> None:
        try:
            if self.launch_at_login.is_enabled():
                self.launch_at_login.disable()
            else:
                self.launch_at_login.enable()
        except LaunchAtLoginError as exc:
            self.notifier.show("Launch at login unchanged", str(exc))
        self.render()

    def open_posthog(self) -> None:
        url = app_host(self.engine.settings.host)

        def open_url() -> None:
            if not webbrowser.open(url):
                log.warning("No web browser could open %s", url)
                self.ui.call(
                    lambda: self.notifier.show(
                        "No web browser found", f"Open {url} in a browser yourself."
                    )
                )

        threading.Thread(target=open_url, name="open-posthog", daemon=True).start()

    def open_log(self) -> None:
        log_file = self.paths.log_file
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.touch(exist_ok=True)
            open_with_desktop(str(log_file))
        except OSError as exc:
            log.warning("Could not open the log %s: %s", log_file, exc)
            self.notifier.show(
                "The log could not be opened",
                f"No program to open it was found ({exc.strerror or exc}); it is {log_file}.",
            )

    def _close_dialog(self) -> None:
        """Our Settings dialog closes with us (it keeps itself open for unsaved edits), and
        so does the History window."""
        if sys.platform == "win32":
            return  # a terminate would kill it, edits and all: it stays open
        for window in (self._dialog, self._history):
            if window is not None and window.poll() is None:
                with contextlib.suppress(OSError):
                    window.send_signal(signal.SIGTERM)

    def quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        log.info("Quitting")
        self._close_dialog()
        self.engine.stop(timeout=1.0)
        if self.channel is not None:
            self.channel.close()
        self.backend.stop()

    def on_command(self, command: str) -> None:
        """From a second launch or the settings dialog, on the channel thread."""
        if command == "reload":
            self.ui.call(self._reload)
        elif command == "settings":
            self.ui.call(self.open_settings)

    def _reload(self) -> None:
        self.engine.reload()

    # --- the tray host (UI thread) ---

    def on_tray_host(self, present: bool) -> None:
        """From the backend's thread: whether a tray host shows our icon now."""
        self.ui.call(lambda: self._tray_host_changed(present))

    def _tray_host_changed(self, present: bool) -> None:
        self._tray_host = present
        if present and self._no_host_said:
            self._no_host_said = False
            log.info("A tray host shows the icon now")
            self.engine.set_tray_problem(None)

    def _check_tray_host(self) -> None:
        """Once, a while after start: no host by now is said once, never per attempt."""
        if self._tray_host or self._no_host_said or self._quitting:
            return
        self._no_host_said = True
        log.warning(NO_TRAY_HOST)
        self.engine.set_tray_problem(NO_TRAY_HOST)
        if self.engine.settings.notify:
            self.notifier.show("Heartbeat Tray has no tray", NO_TRAY_HOST, logged=True)

    # --- rendering (UI thread) ---

    def on_snapshot(self, _snapshot: Snapshot) -> None:
        """Called on the ticker's thread: hand the work to the UI thread."""
        self.ui.call(self.render)

    def _on_alert(self, alert: Alert) -> None:
        """From the engine, on the ticker's thread."""
        if self.engine.settings.notify:
            self.ui.call(lambda: self.notifier.show(alert.title, alert.message))

    def _launches(self) -> bool:
        try:
            return self.launch_at_login.is_enabled()
        except Exception:
            log.warning("Could not read the launch-at-login state", exc_info=True)
            return False

    def render(self) -> None:
        snap = self.state.snapshot
        before, self._shown = self._shown, snap
        self.view = present(snap, self._launches())
        if pulses(before, snap):
            self._start_pulse()
        elif self._pulse_frame is None:
            self._set_image(self.icons.states[self.view.icon])
        self.icon.title = self.view.title
        if hasattr(self.icon, "set_attention"):  # hosts with an urgency flag (SNI)
            self.icon.set_attention(self.view.needs_attention)
        self.icon.update_menu()
        if self.backend.popup is not None:
            self.backend.popup.update()
        if not self._setup_offered and snap.needs_setup:
            self._setup_offered = True
            # A locked keyring: the dialog could not store a key either; the tooltip says why.
            if not snap.keyring_locked:
                self.open_settings()

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
            self._set_image(self.icons.states[self.view.icon])

    # --- start-up ---

    def run(self, pystray: Any, backend_name: str, *, autostart: bool) -> int:
        """One path for every backend: build it, take signals, run its loop until Quit."""
        backend = self.backend = backend_for(pystray, backend_name, self._hooks())
        self.ui = backend.ui
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.ui.call(self.quit))
        backend.run(started=lambda: self._start_core(autostart))
        return EXIT_OK

    def _hooks(self) -> TrayHooks:
        return TrayHooks(
            view=lambda: self.view,
            icons=self.icons,
            on_click=self.on_click,
            activate=self.activate,
            send_now=self.engine.send_now,
            on_host=self.on_tray_host,
            on_new_icon=self._redraw,
        )

    def _redraw(self) -> None:
        """A new icon (the X tray's moved to a StatusNotifierItem host): draw it all afresh."""
        self._shown = None
        self.render()

    def _start_core(self, autostart: bool) -> None:
        self.state.subscribe(self.on_snapshot)
        self.channel = ChannelServer(self.paths.state_dir, self.on_command)
        self.channel.start()
        self._setup_offered = autostart  # at login: start quietly, no dialog
        self.engine.start()
        if self.backend.knows_host:  # xorg and SNI: the hosts we can ask about
            self.ui.call_later(TRAY_HOST_GRACE_MS, self._check_tray_host)


def run_tray(
    paths: AppPaths, loaded: LoadedSettings, overrides: Overrides, *, autostart: bool
) -> int:
    pystray, backend = choose_backend()
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
        app = TrayApp(paths, loaded, overrides)
        return app.run(pystray, backend, autostart=autostart)
    finally:
        lock.release()
