"""The settings dialog (tkinter), run as its own process: it cannot freeze or crash the tray.

It saves the file and the key, tells the running tray to reload, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import tkinter
from tkinter import ttk
from typing import Any

from heartbeat_tray.core.api_key import KeyKind, KeyringUnavailable, mask
from heartbeat_tray.core.outbox import read_only_view
from heartbeat_tray.core.ports import REQUEST_DEADLINE
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.state_file import Meta
from heartbeat_tray.core.verdicts import QueryVerdict
from heartbeat_tray.dialog.form import (
    HOST_LABELS,
    FormValues,
    HostChoice,
    SaveFailed,
    check_form,
    events_per_day,
    form_from_settings,
    save_form,
)
from heartbeat_tray.dialog.tk_window import new_root
from heartbeat_tray.ingestion.project import check_host, resolve_project
from heartbeat_tray.ingestion.rules import MIN_WINDOW_SECONDS
from heartbeat_tray.ingestion.store import status_from_json
from heartbeat_tray.posthog.capture import PostHogClient
from heartbeat_tray.posthog.query import QueryClient
from heartbeat_tray.system.instance_channel import send_command
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.launch_at_login import for_this_os
from heartbeat_tray.system.paths import AppPaths
from heartbeat_tray.system.settings_file import distinct_id_of, installation_id, load_settings
from heartbeat_tray.system.ui_thread import TkUiThread

log = logging.getLogger(__name__)

ERROR_COLOUR = "#b3261e"
WARNING_COLOUR = "#8a5a00"
OK_COLOUR = "#1b6e2a"
WEBHOOK_HINT = ("Optional: one message per incident (Slack and others).", "gray35")


class _Rows:
    """The form's grid, top to bottom: a label, its field, and a note under it that takes no
    room while empty."""

    def __init__(self, frame: ttk.Frame, notes: dict[str, ttk.Label]) -> None:
        self.frame = frame
        self.notes = notes
        self.row = 0

    def label(self, text: str) -> None:
        ttk.Label(self.frame, text=text).grid(
            row=self.row, column=0, sticky="nw", padx=(0, 12), pady=4
        )

    def line(self, column: int = 1, span: int = 1, pady: tuple[int, int] = (0, 0)) -> ttk.Frame:
        box = ttk.Frame(self.frame)
        box.grid(row=self.row, column=column, columnspan=span, sticky="ew", pady=pady)
        return box

    def note(self, name: str) -> None:
        self.row += 1
        widget = ttk.Label(self.frame, text="", wraplength=500, foreground=ERROR_COLOUR)
        widget.grid(row=self.row, column=1, sticky="w")
        self.notes[name] = widget
        widget.grid_remove()  # shown by SettingsDialog._set_note when it has something to say
        self.row += 1

    def banner(self, text: str, colour: str, pady: tuple[int, int] = (0, 8)) -> ttk.Label:
        widget = ttk.Label(self.frame, text=text, wraplength=520, foreground=colour)
        widget.grid(row=self.row, column=0, columnspan=2, sticky="w", pady=pady)
        self.row += 1
        return widget

    def heading(self, text: str) -> None:
        ttk.Label(self.frame, text=text, font=("TkDefaultFont", 10, "bold")).grid(
            row=self.row, column=0, columnspan=2, sticky="w", pady=(10, 2)
        )
        self.row += 1

    def text_field(self, title: str, name: str, value: str, width: int) -> tkinter.StringVar:
        self.label(title)
        var = tkinter.StringVar(value=value)
        ttk.Entry(self.frame, textvariable=var, width=width).grid(
            row=self.row, column=1, sticky="w"
        )
        self.note(name)
        return var

    def secret_field(self, title: str, name: str) -> tuple[tkinter.StringVar, ttk.Entry]:
        """A masked key field with Show beside it; empty keeps the stored key."""
        self.label(title)
        box = self.line()
        var = tkinter.StringVar()
        entry = ttk.Entry(box, textvariable=var, show="•", width=40)
        entry.pack(side="left", fill="x", expand=True)
        shown = tkinter.BooleanVar(master=self.frame, value=False)
        ttk.Checkbutton(
            box,
            text="Show",
            variable=shown,
            command=lambda: entry.configure(show="" if shown.get() else "•"),
        ).pack(side="left", padx=(8, 0))
        self.note(name)
        return var, entry


class SettingsDialog:
    def __init__(self, root: tkinter.Tk, paths: AppPaths) -> None:
        self.root = root
        self.paths = paths
        self.ui = TkUiThread(root)
        self.keys = KeyStore()
        self.personal_keys = KeyStore(kind=KeyKind.PERSONAL)
        self.launch = for_this_os()
        loaded = load_settings(paths.config_file)
        self.base = loaded.settings
        self.stored_key: str | None = None
        self.keyring_problem: str | None = None
        try:
            key = self.keys.get()
            self.stored_key = key.value if key else None
        except KeyringUnavailable as exc:
            self.keyring_problem = str(exc)
        self.stored_personal: str | None = None
        with contextlib.suppress(KeyringUnavailable):
            personal = self.personal_keys.get()
            self.stored_personal = personal.value if personal else None
        try:
            launching = self.launch.is_enabled()
        except Exception:
            log.warning("Could not read the launch-at-login state", exc_info=True)
            launching = False
        self.result = 0  # Cancel is not a failure: nothing was asked to change
        self.opened_with: FormValues | None = None  # the form as shown, to tell edits apart
        top = [loaded.problem] if loaded.problem else []
        if loaded.problem:
            top.append(
                "Nothing is sent until it is fixed; Save replaces the file (a copy of it is kept)."
            )
        top.extend(f"Settings file: {warning}" for warning in loaded.warnings)
        self._build(form_from_settings(self.base, launching), " ".join(top) or None)

    # --- layout ---

    def _build(self, values: FormValues, settings_problem: str | None) -> None:
        root = self.root
        root.title("Heartbeat Tray — Settings")
        style = ttk.Style(root)
        if sys.platform.startswith("linux") and "clam" in style.theme_names():
            style.theme_use("clam")  # Tk's X11 default theme looks decades old
        # A box that cannot be edited must look it (clam draws it like an editable one).
        style.map(
            "TEntry",
            fieldbackground=[("disabled", "#e2e2e2")],
            foreground=[("disabled", "gray50")],
        )
        root.resizable(False, False)
        frame = ttk.Frame(root, padding=16)
        frame.grid(sticky="nsew")
        frame.columnconfigure(1, weight=1)
        self.notes: dict[str, ttk.Label] = {}
        rows = _Rows(frame, self.notes)
        if settings_problem:
            rows.banner(settings_problem, WARNING_COLOUR)
        self._build_heartbeat(rows, values)
        rows.heading("Ingestion check")
        self._build_ingestion(rows, values)
        self._build_actions(rows, values)

        root.bind("<Return>", lambda _e: self.save())
        root.bind("<KP_Enter>", lambda _e: self.save())
        root.bind("<Escape>", lambda _e: self.cancel())
        root.protocol("WM_DELETE_WINDOW", self.cancel)
        self._host_choice_changed()
        self._interval_changed()
        texts = (
            self.custom_host,
            self.api_key,
            self.event,
            self.distinct_id,
            self.interval,
            self.personal_key,
            self.project_id,
            self.alert_after,
            self.webhook_url,
        )
        for text_var in texts:
            text_var.trace_add("write", lambda *_: self._revalidate())
        self._shown_errors: set[str] = set()
        self._revalidate()
        self.key_entry.focus_set()

    def _build_heartbeat(self, rows: _Rows, values: FormValues) -> None:
        rows.label("PostHog")
        host_row = rows.line()
        self.host_choice = tkinter.StringVar(value=HOST_LABELS[values.host_choice])
        combo = ttk.Combobox(
            host_row,
            textvariable=self.host_choice,
            values=list(HOST_LABELS.values()),
            state="readonly",
            width=18,
        )
        combo.pack(side="left")
        combo.bind("<<ComboboxSelected>>", lambda _e: self._host_choice_changed())
        self.custom_host = tkinter.StringVar(value=values.custom_host)
        self.custom_host_entry = ttk.Entry(host_row, textvariable=self.custom_host, width=34)
        self.custom_host_entry.pack(side="left", padx=(8, 0), fill="x", expand=True)
        rows.note("host")

        self.api_key, self.key_entry = rows.secret_field("Project API key", "api_key")
        if self.keyring_problem:
            hint, colour = f"Keyring: {self.keyring_problem}", ERROR_COLOUR
        elif self.stored_key:
            hint = f"Stored: {mask(self.stored_key)} — leave empty to keep it."
            colour = "gray35"
        else:
            hint, colour = "No key stored yet: paste the phc_… key from Project settings.", "gray35"
        self.key_hint = (hint, colour)
        self._set_note("api_key", *self.key_hint)

        self.event = rows.text_field("Event name", "event", values.event, 30)
        self.distinct_id = rows.text_field("Distinct id", "distinct_id", values.distinct_id, 40)
        generated = installation_id(self.paths.installation_id_file)
        self.distinct_hint = (f"Empty: {generated}", "gray35")
        self._set_note("distinct_id", *self.distinct_hint)

        rows.label("Interval (seconds)")
        interval_row = rows.line()
        self.interval = tkinter.StringVar(value=values.interval)
        ttk.Entry(interval_row, textvariable=self.interval, width=8).pack(side="left")
        self.per_day = ttk.Label(interval_row, text="", foreground="gray35")
        self.per_day.pack(side="left", padx=(8, 0))
        self.interval.trace_add("write", lambda *_: self._interval_changed())
        rows.note("interval_seconds")

        rows.label("Extra properties")
        self.properties = tkinter.Text(rows.frame, width=40, height=3, wrap="none", undo=True)
        self.properties.insert("1.0", values.properties)
        self.properties.grid(row=rows.row, column=1, sticky="ew")
        # Tab moves on and Return is a new line here, as in any form's text area.
        self.properties.bind("<Tab>", self._focus_next)
        self.properties.bind("<Shift-Tab>", self._focus_previous)
        self.properties.bind("<Return>", self._new_line)
        self.properties.bind("<KP_Enter>", self._new_line)
        self.properties.bind("<<Modified>>", self._properties_changed)
        rows.note("properties")
        self._set_note("properties", "One name = value per line.", "gray35")

    def _build_ingestion(self, rows: _Rows, values: FormValues) -> None:
        self.personal_key, self.personal_entry = rows.secret_field(
            "Personal API key", "personal_key"
        )
        self.personal_hint = (
            (f"Stored: {mask(self.stored_personal)} — leave empty to keep it.", "gray35")
            if self.stored_personal
            else ("Optional: a phx_… key (Query Read, Project Read).", "gray35")
        )
        self._set_note("personal_key", *self.personal_hint)

        self.project_id = rows.text_field("Project id", "project_id", values.project_id, 12)
        found = self._found_project_id()
        self.project_hint = (
            (f"Found: {found} — leave empty to keep finding it.", "gray35")
            if found
            else ("Empty: found from the project API key.", "gray35")
        )
        self._set_note("project_id", *self.project_hint)
        self.alert_after = rows.text_field(
            "Alert after (seconds)", "alert_after", values.alert_after, 8
        )
        self.webhook_url = rows.text_field("Webhook URL", "webhook_url", values.webhook_url, 52)
        self._set_note("webhook_url", *WEBHOOK_HINT)

    def _build_actions(self, rows: _Rows, values: FormValues) -> None:
        self.backfill = tkinter.BooleanVar(value=values.backfill)
        self.notify = tkinter.BooleanVar(value=values.notify)
        self.launch_at_login = tkinter.BooleanVar(value=values.launch_at_login)
        for text, var in (
            ("Deliver beats missed while offline, with their own times", self.backfill),
            ("Notify me when delivery starts failing and when it recovers", self.notify),
            ("Launch at login", self.launch_at_login),
        ):
            ttk.Checkbutton(rows.frame, text=text, variable=var).grid(
                row=rows.row, column=1, sticky="w", pady=2
            )
            rows.row += 1
        buttons = rows.line(column=0, span=2, pady=(12, 0))
        self.test_button = ttk.Button(buttons, text="Test connection", command=self.test)
        self.test_button.pack(side="left")
        ttk.Button(buttons, text="Save", command=self.save, default="active").pack(side="right")
        ttk.Button(buttons, text="Cancel", command=self.cancel).pack(side="right", padx=(0, 8))
        rows.row += 1
        self.test_result = rows.banner("", "black", pady=(8, 0))
        self.save_result = rows.banner("", ERROR_COLOUR, pady=(0, 0))

    def _new_line(self, event: Any) -> str:
        """Enter in a multi-line field is a new line, never Save ("break" stops the dialog's
        own Return binding from running too)."""
        event.widget.insert("insert", "\n")
        event.widget.see("insert")
        return "break"

    def _properties_changed(self, _event: Any) -> None:
        self.properties.edit_modified(False)
        self._revalidate()

    def _focus_next(self, event: Any) -> str:
        event.widget.tk_focusNext().focus_set()
        return "break"

    def _focus_previous(self, event: Any) -> str:
        event.widget.tk_focusPrev().focus_set()
        return "break"

    def _choice(self) -> HostChoice:
        label = self.host_choice.get()
        return next(k for k, v in HOST_LABELS.items() if v == label)

    def _host_choice_changed(self) -> None:
        self_hosted = self._choice() == "self"
        self.custom_host_entry.state(["!disabled"] if self_hosted else ["disabled"])
        if hasattr(self, "_shown_errors"):
            self._revalidate()

    def _revalidate(self) -> None:
        """As the user types: warnings show at once; an error shown clears once fixed."""
        checked = check_form(self.values(), self.base, key_stored=self.stored_key is not None)
        still = {name: text for name, text in checked.errors.items() if name in self._shown_errors}
        self._show_checked(still, checked.warnings)
        if not still and self._shown_errors:
            self.save_result.configure(text="")
            if self.test_result.cget("foreground") == ERROR_COLOUR:
                self._show_test("", ERROR_COLOUR)
        self._shown_errors = set(still)

    def _interval_changed(self) -> None:
        self.per_day.configure(text=events_per_day(self.interval.get()))

    # --- reading and checking the form ---

    def values(self) -> FormValues:
        return FormValues(
            host_choice=self._choice(),
            custom_host=self.custom_host.get(),
            api_key=self.api_key.get(),
            event=self.event.get(),
            distinct_id=self.distinct_id.get(),
            interval=self.interval.get(),
            properties=self.properties.get("1.0", "end-1c"),
            backfill=self.backfill.get(),
            notify=self.notify.get(),
            launch_at_login=self.launch_at_login.get(),
            personal_key=self.personal_key.get(),
            project_id=self.project_id.get(),
            alert_after=self.alert_after.get(),
            webhook_url=self.webhook_url.get(),
        )

    def _show_checked(self, errors: dict[str, str], warnings: dict[str, str]) -> None:
        defaults = {
            "api_key": self.key_hint,
            "distinct_id": self.distinct_hint,
            "properties": ("One name = value per line.", "gray35"),
            "personal_key": self.personal_hint,
            "project_id": self.project_hint,
            "webhook_url": WEBHOOK_HINT,
        }
        for name in self.notes:
            if name in errors:
                self._set_note(name, errors[name], ERROR_COLOUR)
            elif name in warnings:
                self._set_note(name, warnings[name], WARNING_COLOUR)
            else:
                self._set_note(name, *defaults.get(name, ("", ERROR_COLOUR)))

    def _set_note(self, name: str, text: str, colour: str) -> None:
        """The line under a field; an empty one takes no room (the dialog fits a laptop)."""
        widget = self.notes[name]
        widget.configure(text=text, foreground=colour)
        if text:
            widget.grid()
        else:
            widget.grid_remove()

    # --- actions ---

    def save(self) -> None:
        checked = check_form(self.values(), self.base, key_stored=self.stored_key is not None)
        self._show_checked(checked.errors, checked.warnings)
        self._shown_errors = set(checked.errors)
        if not checked.ok:
            log.info("Save refused: %s", "; ".join(f"{k}: {v}" for k, v in checked.errors.items()))
            self.save_result.configure(text="Nothing was saved: fix the fields marked in red.")
            return
        try:
            save_form(
                checked,
                self.launch_at_login.get(),
                config_file=self.paths.config_file,
                keys=self.keys,
                launch=self.launch,
                personal_keys=self.personal_keys,
            )
        except SaveFailed as exc:
            log.warning("Save failed: %s", exc)
            self.save_result.configure(text=str(exc))
            return
        log.info("Settings saved")
        send_command(self.paths.state_dir, "reload")
        self.result = 0
        self.root.destroy()

    def cancel(self) -> None:
        log.info("Settings dialog cancelled")
        self.root.destroy()

    def tray_gone(self) -> None:
        """The tray that opened this dialog quit: close with it, unless that loses edits."""
        if self.values() == self.opened_with:
            log.info("Settings dialog closed with the tray")
            self.root.destroy()
            return
        log.info("The tray quit; the dialog stays open for its unsaved changes")
        self.test_result.configure(
            text="Heartbeat Tray has quit. Save still keeps these settings; start Heartbeat "
            "Tray again to use them.",
            foreground=ERROR_COLOUR,
        )

    def test(self) -> None:
        values = self.values()
        checked = check_form(values, self.base, key_stored=self.stored_key is not None)
        errors = {k: v for k, v in checked.errors.items() if k in ("host", "api_key")}
        self._show_checked(errors, checked.warnings)
        self._shown_errors = set(errors)
        if errors:
            self._show_test("Fix the host and key first.", ERROR_COLOUR)
            return
        host = checked.settings.host if checked.settings else self.base.host
        key = checked.new_key or self.stored_key or ""
        distinct_id = distinct_id_of(values.distinct_id, self.paths.installation_id_file)
        self.test_button.state(["disabled"])
        self._show_test(f"Asking {host}…", "gray35")

        personal = checked.new_personal_key or self.stored_personal
        settings = checked.settings or self.base

        def ask() -> None:
            client = PostHogClient()
            try:
                answer = client.check_key(host, key, distinct_id, timeout=REQUEST_DEADLINE)
            finally:
                client.close()
            message, ok = answer.message, answer.valid
            if ok and personal:
                said, ok = ask_query(settings, key, personal, distinct_id)
                message = f"{message} {said}"
            self.ui.call(lambda: self._test_done(message, ok))

        threading.Thread(target=ask, name="test-connection", daemon=True).start()

    def _test_done(self, message: str, ok: bool) -> None:
        log.info("Test connection: %s", message)
        self.test_button.state(["!disabled"])
        self._show_test(message, OK_COLOUR if ok else ERROR_COLOUR)

    def _show_test(self, text: str, colour: str) -> None:
        self.test_result.configure(text=text, foreground=colour)

    def _found_project_id(self) -> int | None:
        """The project id the running check found (from its last status), to show it."""
        try:
            _, meta = read_only_view(self.paths.outbox_file).read()
        except Exception:
            log.info("No ingestion status to read", exc_info=True)
            return None
        status = status_from_json(meta.get(Meta.INGESTION_STATUS))
        return status.project_id if status else None


def ask_query(
    settings: Settings, project_key: str, personal: str, distinct_id: str
) -> tuple[str, bool]:
    """The dialog's Test for the personal key: find the project, run the check's query once."""
    client = QueryClient()
    try:
        found = resolve_project(client, settings, personal, project_key)
        if found.verdict is not QueryVerdict.OK or found.project_id is None:
            return found.message, False
        answer = client.stored_beats(
            check_host(settings),
            found.project_id,
            personal,
            event=settings.event,
            distinct_id=distinct_id,
            window_seconds=MIN_WINDOW_SECONDS,
        )
    finally:
        client.close()
    if answer.verdict is not QueryVerdict.OK:
        return answer.message, False
    if not answer.beats:
        return "Query works — no beat of this installation is stored yet.", True
    newest = answer.beats[0]
    lag = (newest.created_at - newest.timestamp).total_seconds()
    return f"Query works — your last beat was ingested {lag:.0f} s behind.", True


def run_dialog(paths: AppPaths) -> int:
    """Show the dialog until saved or cancelled (0 either way). Raises NoDisplay without a
    display."""
    root = new_root(
        "heartbeat-tray-settings",
        "the settings dialog needs a desktop session — use 'heartbeat-tray key set' and edit "
        "the settings file instead.",
    )
    dialog = SettingsDialog(root, paths)

    # Take the keyboard even without a window manager, straight into the key field.
    def take_focus() -> None:
        dialog.key_entry.focus_force()
        log.info("Settings dialog shown")

    root.after_idle(take_focus)
    dialog.opened_with = dialog.values()
    if hasattr(signal, "SIGTERM"):
        # The tray sends it when it quits (tkinter's loop runs Python's handlers between events).
        signal.signal(signal.SIGTERM, lambda *_: root.after(0, dialog.tray_gone))
    root.mainloop()
    dialog.ui.close()
    return dialog.result
