"""Runs the settings dialog's view in a process of its own (Tk cannot outlive its X server in
the test process) and reports what each note beside a field says after a few edits.

    python -m tests.dialog_probe SCENARIO   (prints JSON)
"""

from __future__ import annotations

import json
import sys
import tkinter
from pathlib import Path
from tkinter import ttk
from typing import Any

import keyring

from heartbeat_tray.dialog.view import SettingsDialog
from heartbeat_tray.system.paths import AppPaths
from tests.fakes import MemoryKeyring


def note(view: SettingsDialog, field: str) -> list[str]:
    view.root.update()
    label = view.notes[field]
    return [str(label.cget("text")), str(label.cget("foreground"))]


def main(scenario: str, home: Path) -> dict[str, Any]:
    keyring.set_keyring(MemoryKeyring())
    paths = AppPaths(home / "config", home / "state", home / "log")
    root = tkinter.Tk()
    view = SettingsDialog(root, paths)
    root.update()
    seen: dict[str, Any] = {}
    if scenario == "key-warning":
        view.api_key.set("phc_short")
        seen["api_key"] = note(view, "api_key")
        view.save()
        seen["result"] = view.result
    elif scenario == "error-clears":
        view.api_key.set("phc_" + "a" * 43)
        view.interval.set("abc")
        view.save()
        seen["after_save"] = note(view, "interval_seconds")
        seen["save_result"] = str(view.save_result.cget("text"))
        view.interval.set("90")
        seen["after_fix"] = note(view, "interval_seconds")
        seen["save_result_after_fix"] = str(view.save_result.cget("text"))
    elif scenario == "interval-warning":
        view.interval.set("5")
        seen["interval"] = note(view, "interval_seconds")
    elif scenario == "disabled-host":
        seen["disabled"] = view.custom_host_entry.instate(["disabled"])
        seen["background"] = str(ttk.Style(root).lookup("TEntry", "fieldbackground", ["disabled"]))
    elif scenario == "personal-key":
        view.personal_key.set("phc_" + "a" * 43)
        view.save()
        seen["personal_key"] = note(view, "personal_key")
        view.personal_key.set("phx_" + "b" * 40)
        seen["fixed"] = note(view, "personal_key")
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
