"""The dialog's view on a real Tk (Xvfb): what shows beside each field as one types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heartbeat_tray.dialog.view import ERROR_COLOUR, WARNING_COLOUR
from testkit.desktop import Desktop, start_desktop

pytestmark = pytest.mark.desktop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def desktop() -> Iterator[Desktop]:
    d = start_desktop()
    yield d
    d.stop()


def probe(desktop: Desktop, tmp_path: Path, scenario: str) -> dict[str, Any]:
    env = {
        **os.environ,
        **desktop.env,
        "PYTHONPATH": str(ROOT),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    env.pop("POSTHOG_PROJECT_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.dialog_probe", scenario, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_key_shape_warning_shows_as_one_types_and_does_not_block_save(
    desktop: Desktop, tmp_path: Path
) -> None:
    seen = probe(desktop, tmp_path, "key-warning")
    text, colour = seen["api_key"]
    assert "does not look like a project API key" in text and colour == WARNING_COLOUR
    assert seen["result"] == 0  # saved: a warning never blocks


def test_an_error_clears_as_soon_as_its_field_is_fixed(desktop: Desktop, tmp_path: Path) -> None:
    seen = probe(desktop, tmp_path, "error-clears")
    text, colour = seen["after_save"]
    assert "whole number of seconds" in text and colour == ERROR_COLOUR
    assert "Nothing was saved" in seen["save_result"]
    assert seen["after_fix"][0] == "" and seen["save_result_after_fix"] == ""


def test_an_interval_under_60_warns_beside_its_field(desktop: Desktop, tmp_path: Path) -> None:
    text, colour = probe(desktop, tmp_path, "interval-warning")["interval"]
    assert "Below 60 s this sends 17,280 events a day" in text and colour == WARNING_COLOUR


def test_the_custom_host_box_looks_disabled_unless_self_hosted(
    desktop: Desktop, tmp_path: Path
) -> None:
    seen = probe(desktop, tmp_path, "disabled-host")
    assert seen["disabled"] is True and seen["background"] == "#e2e2e2"


def test_a_project_key_in_the_personal_key_field_says_which_key_goes_where(
    desktop: Desktop, tmp_path: Path
) -> None:
    seen = probe(desktop, tmp_path, "personal-key")
    text, colour = seen["personal_key"]
    assert "This is a project API key (phc_…), which sends beats" in text
    assert colour == ERROR_COLOUR
    assert seen["fixed"][1] != ERROR_COLOUR
