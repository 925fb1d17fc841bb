"""The real PyInstaller build from build.spec, smoke-tested the way a user runs a release."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from heartbeat_tray import __version__
from heartbeat_tray.tray.presenter import Item
from testkit.desktop import Desktop, start_desktop
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, ROOT, App, secret_tool_lookup, wait_until
from tests.test_tray_e2e import open_menu_and_click

pytestmark = pytest.mark.frozen

REPORT = ROOT / "test-artifacts" / "frozen-build.json"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "build"),
            str(ROOT / "build.spec"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    build_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "dist" / "heartbeat-tray"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({"build_seconds": round(build_seconds, 1), "size_mib": round(size / 2**20, 1)})
    )
    yield folder / "heartbeat-tray"


@pytest.fixture
def frozen_app(app: App, frozen: Path) -> App:
    app.program = [str(frozen)]
    app.env.pop("PYTHONPATH", None)  # the frozen app must carry everything itself
    return app


def test_frozen_version(frozen_app: App) -> None:
    result = frozen_app.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"heartbeat-tray {__version__}"


def test_frozen_once_and_status(frozen_app: App, server: CaptureServer) -> None:
    env = {"POSTHOG_PROJECT_API_KEY": KEY}
    once = frozen_app.run("once", "--host", server.url, env=env)
    assert once.returncode == 0, once.stderr
    (event,) = server.wait_for_events(1)
    assert event["properties"]["$lib_version"] == __version__
    status = json.loads(frozen_app.run("status", "--json", env=env).stdout)
    assert status["last_outcome"] is None or "verdict" in status["last_outcome"]
    assert status["api_key"]["prefix"] == KEY[:8] + "…"
    bad = frozen_app.run("once", "--interval", "0", env=env)
    assert bad.returncode == 2 and "Interval must be" in bad.stderr
    check = frozen_app.run("check", "--host", server.url, env=env)
    assert check.returncode == 0 and "valid" in check.stdout
    on = frozen_app.run("autostart", "on")
    assert on.returncode == 0 and on.stdout.startswith("Launch at login: on")
    desktop_file = frozen_app.home / "config" / "autostart" / "heartbeat-tray.desktop"
    assert f"Exec={frozen_app.program[0]} tray --autostart" in desktop_file.read_text()
    assert frozen_app.run("autostart", "off").returncode == 0


def test_frozen_key_set_uses_the_real_keyring(
    frozen_app: App, keyring_session: dict[str, str], server: CaptureServer
) -> None:
    stored = frozen_app.run("key", "set", input=KEY)
    assert stored.returncode == 0, stored.stderr
    assert secret_tool_lookup(frozen_app.env) == KEY
    assert frozen_app.run("once", "--host", server.url).returncode == 0


def test_frozen_tray_docks_and_toggles_on_a_left_click(
    frozen_app: App, keyring_session: dict[str, str], server: CaptureServer
) -> None:
    desktop: Desktop = start_desktop()
    try:
        assert frozen_app.run("key", "set", input=KEY).returncode == 0
        started = time.monotonic()
        proc = frozen_app.start("tray", "--interval", "1", "--host", server.url, env=desktop.env)
        window = desktop.icon_window()
        wait_until(lambda: desktop.is_docked(window), what="the frozen tray's icon to dock")
        start_to_icon = time.monotonic() - started
        server.wait_for_events(1)
        desktop.click(window, 1)
        wait_until(lambda: "Disabled" in desktop.title(window), what="disabled by a click")
        desktop.screenshot("frozen-tray-disabled", window)
        dialog = frozen_app.start("settings", env=desktop.env)
        wait_until(
            lambda: desktop.xdotool(
                "search", "--onlyvisible", "--classname", "heartbeat-tray-settings"
            ),
            what="the frozen settings dialog",
        )
        wait_until(lambda: "Settings dialog shown" in frozen_app.log_file.read_text())
        desktop.xdotool("key", "Escape")
        assert dialog.wait(timeout=10) == 0  # Cancel is not a failure
        # the menu is a process of the frozen app too: it opens, and its Quit quits
        open_menu_and_click(desktop, window, Item.QUIT)
        assert proc.wait(timeout=5) == 0
        report = json.loads(REPORT.read_text())
        report["start_to_icon_seconds"] = round(start_to_icon, 2)
        REPORT.write_text(json.dumps(report))
    finally:
        desktop.stop()


def test_the_release_workflow_builds_on_three_oses() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "build.yml").read_text())
    job = workflow["jobs"]["build"]
    assert job["strategy"]["matrix"]["os"] == ["windows-latest", "macos-latest", "ubuntu-latest"]
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert "pyinstaller --noconfirm build.spec" in runs
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in job["steps"])
