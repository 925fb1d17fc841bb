"""The dialog's view in-process on a real Tk (Xvfb): what shows beside each field as one types."""

from __future__ import annotations

import tkinter
from collections.abc import Iterator
from pathlib import Path
from tkinter import ttk

import pytest

from heartbeat_tray.dialog.view import ERROR_COLOUR, WARNING_COLOUR, SettingsDialog
from heartbeat_tray.system.paths import AppPaths
from testkit.desktop import Desktop, start_desktop

pytestmark = pytest.mark.desktop


@pytest.fixture
def dialog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_keyring: object
) -> Iterator[SettingsDialog]:
    desktop: Desktop = start_desktop()
    monkeypatch.setenv("DISPLAY", desktop.display)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    paths = AppPaths(tmp_path / "config", tmp_path / "state", tmp_path / "log")
    root = tkinter.Tk()
    view = SettingsDialog(root, paths)
    root.update()
    yield view
    view.ui.close()
    if root.winfo_exists():
        root.destroy()
    desktop.stop()


def note(view: SettingsDialog, field: str) -> tuple[str, str]:
    view.root.update()
    label = view.notes[field]
    return str(label.cget("text")), str(label.cget("foreground"))


def test_a_key_shape_warning_shows_as_one_types_and_does_not_block_save(
    dialog: SettingsDialog,
) -> None:
    dialog.api_key.set("phc_short")
    text, colour = note(dialog, "api_key")
    assert "does not look like a project API key" in text and colour == WARNING_COLOUR
    dialog.save()
    assert dialog.result == 0  # saved: a warning never blocks


def test_an_error_clears_as_soon_as_its_field_is_fixed(dialog: SettingsDialog) -> None:
    dialog.api_key.set("phc_" + "a" * 43)
    dialog.interval.set("abc")
    dialog.save()
    text, colour = note(dialog, "interval_seconds")
    assert "whole number of seconds" in text and colour == ERROR_COLOUR
    assert "Nothing was saved" in str(dialog.save_result.cget("text"))
    dialog.interval.set("30")
    assert note(dialog, "interval_seconds")[0] == ""
    assert str(dialog.save_result.cget("text")) == ""


def test_an_interval_under_60_warns_beside_its_field(dialog: SettingsDialog) -> None:
    dialog.interval.set("5")
    text, colour = note(dialog, "interval_seconds")
    assert "Below 60 s this sends 17,280 events a day" in text and colour == WARNING_COLOUR


def test_the_custom_host_box_looks_disabled_unless_self_hosted(dialog: SettingsDialog) -> None:
    entry = dialog.custom_host_entry
    assert entry.instate(["disabled"])
    style = ttk.Style(dialog.root)
    assert style.lookup("TEntry", "fieldbackground", ["disabled"]) == "#e2e2e2"
