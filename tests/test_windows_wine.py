"""The Windows build for real, under Wine: the official CPython 3.12 for Windows runs the app's
win32 code paths — the Credential Manager keyring, the registry's Run value, pystray's win32
tray with real clicks (docked in trayer), and the PyInstaller .exe."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from heartbeat_tray.tray.icon_art import GREY, RED
from heartbeat_tray.tray.presenter import MENU, Item
from testkit import wine
from testkit.desktop import Desktop, start_desktop
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, wait_until

pytestmark = pytest.mark.windows

RUN_KEY = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
ENV = {"POSTHOG_PROJECT_API_KEY": KEY}


@pytest.fixture(scope="module", autouse=True)
def windows_python() -> None:
    why = wine.available()
    assert why is None, why
    wine.install_project()  # this working tree, not what setup installed


@pytest.fixture(autouse=True)
def fresh_app_data() -> Iterator[None]:
    import shutil

    wine.kill_all()
    shutil.rmtree(wine.app_data(), ignore_errors=True)
    wine.run("-m", "heartbeat_tray", "key", "clear")
    yield
    wine.run("-m", "heartbeat_tray", "autostart", "off")
    wine.kill_all()


def test_the_command_line_on_windows(server: CaptureServer) -> None:
    assert wine.run("-m", "heartbeat_tray", "--version").stdout.strip() == "heartbeat-tray 0.1.0"
    stored = wine.run("-m", "heartbeat_tray", "key", "set", input=KEY)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    status = wine.run("-m", "heartbeat_tray", "status", "--json")
    data = json.loads(status.stdout)
    assert data["api_key"]["source"] == "keyring"  # Windows' Credential Manager
    assert data["api_key"]["prefix"] == "phc_e2eT…" and KEY not in status.stdout
    assert "AppData" in data["log_file"] and "AppData" in data["settings_file"]
    once = wine.run("-m", "heartbeat_tray", "once", "--host", server.url)
    assert once.returncode == 0, once.stdout + once.stderr
    (event,) = server.wait_for_events(1)
    assert event["properties"]["$os"] == "Windows"
    cleared = wine.run("-m", "heartbeat_tray", "key", "clear")
    assert "Removed the project API key" in cleared.stdout


def test_launch_at_login_runs_pythonw_and_honours_task_managers_flag() -> None:
    on = wine.run("-m", "heartbeat_tray", "autostart", "on")
    assert on.stdout.startswith("Launch at login: on"), on.stdout + on.stderr
    command = wine.reg_query(RUN_KEY, "Heartbeat Tray")
    assert command is not None
    assert "pythonw.exe" in command and "python.exe" not in command.replace("pythonw.exe", "")
    assert command.endswith("-m heartbeat_tray tray --autostart")
    wine.reg_add_binary(APPROVED_KEY, "Heartbeat Tray", "030000000000000000000000")
    assert wine.run("-m", "heartbeat_tray", "autostart", "status").stdout.startswith(
        "Launch at login: off"
    )  # disabled in Task Manager: the OS's word counts
    wine.run("-m", "heartbeat_tray", "autostart", "off")
    assert wine.reg_query(RUN_KEY, "Heartbeat Tray") is None


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    d = start_desktop()
    yield d
    d.stop()


def panel(desktop: Desktop) -> Image.Image:
    out = subprocess.run(
        ["import", "-window", "root", "-crop", "200x32+0+0", "png:-"],
        capture_output=True,
        env={**wine.wine_env(), **desktop.env},
        timeout=20,
    )
    import io

    return Image.open(io.BytesIO(out.stdout)).convert("RGB")


def share(image: Image.Image, colour: tuple[int, ...], tolerance: int = 40) -> float:
    raw = image.tobytes()
    pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    near = sum(
        1
        for p in pixels
        if all(abs(a - b) <= tolerance for a, b in zip(p, colour[:3], strict=True))
    )
    return near / len(pixels)


def icon_at(desktop: Desktop) -> tuple[int, int]:
    """The icon's centre in trayer's panel: where its red pixels are."""

    def find() -> tuple[int, int] | None:
        image = panel(desktop)
        spots = [
            (x, y)
            for x in range(image.width)
            for y in range(image.height)
            if share(image.crop((x, y, x + 1, y + 1)), RED, 50) == 1.0
        ]
        if len(spots) < 10:
            return None
        xs, ys = [x for x, _ in spots], [y for _, y in spots]
        return (min(xs) + max(xs)) // 2, (min(ys) + max(ys)) // 2

    return tuple(wait_until(find, timeout=30, what="the icon docked in trayer"))  # type: ignore[return-value]


def log_text() -> str:
    path = wine.app_data() / "Logs" / "heartbeat-tray.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def open_menu_and_choose(desktop: Desktop, x: int, y: int, item: Item) -> None:
    desktop.click_at(x, y, 3)

    def menu() -> Image.Image | None:
        shot = subprocess.run(
            ["import", "-window", "root", "png:-"],
            capture_output=True,
            env={**wine.wine_env(), **desktop.env},
            timeout=20,
        )
        import io

        image = Image.open(io.BytesIO(shot.stdout)).convert("RGB")
        below = image.crop((0, 0, 320, 320))
        return below if share(below, (255, 255, 255), 10) > 0.15 else None

    shown = wait_until(menu, what="the Windows menu")
    shown.save(Path("test-artifacts/screenshots") / "windows-wine-menu.png")
    entries = [entry for entry in MENU if entry is not None]
    right = max(
        x for x in range(shown.width) if shown.getpixel((x, shown.height // 3))[0] > 240
    )  # the menu's right edge

    def text_row(y: int) -> bool:
        inked = [x for x in range(4, right - 4) if shown.getpixel((x, y))[0] < 200]
        return bool(inked) and len(inked) < 0.8 * (right - 8)  # a separator spans the width

    rows = [y for y in range(shown.height) if text_row(y)]
    # text rows come in groups, one per entry (greyed status lines included)
    groups: list[list[int]] = []
    for row in rows:
        if groups and row - groups[-1][-1] <= 2:
            groups[-1].append(row)
        else:
            groups.append([row])
    assert len(groups) >= len(entries), f"{len(groups)} text rows for {len(entries)} entries"
    target = groups[entries.index(item)]
    desktop.click_at(60, (target[0] + target[-1]) // 2, 1)


def test_the_tray_takes_clicks_all_day(desktop: Desktop, server: CaptureServer) -> None:
    Path("test-artifacts/screenshots").mkdir(parents=True, exist_ok=True)
    env = {**ENV, **desktop.env}
    proc = wine.start(
        "-m",
        "heartbeat_tray",
        "tray",
        "--autostart",
        "--interval",
        "2",
        "--host",
        server.url,
        env=env,
    )
    try:
        x, y = icon_at(desktop)
        server.wait_for_events(1)
        panel(desktop).save("test-artifacts/screenshots/windows-wine-tray.png")

        desktop.click_at(x, y, 1)  # froze the tray before the fix
        wait_until(lambda: "Heartbeat disabled" in log_text(), what="paused")
        # the hollow grey heart: a few grey pixels, no red ones
        wait_until(
            lambda: (
                share(panel(desktop), GREY, 30) * 6400 > 8
                and share(panel(desktop), RED, 40) * 6400 < 4
            ),
            what="the grey icon",
        )
        panel(desktop).save("test-artifacts/screenshots/windows-wine-tray-disabled.png")
        count = len(server.events)
        assert not server.wait_for(lambda: len(server.events) > count + 1, timeout=4.0)

        desktop.click_at(x, y, 1)  # and a second click resumes
        wait_until(lambda: "Heartbeat enabled" in log_text().split("Heartbeat disabled")[-1])
        server.wait_for_events(len(server.events) + 2)

        before = len(server.events)
        open_menu_and_choose(desktop, x, y, Item.SEND_NOW)
        wait_until(lambda: log_text().count("Accepted live beat") > 0)
        server.wait_for_events(before + 1, timeout=3)

        second = wine.run("-m", "heartbeat_tray", "tray", env=env)
        assert second.returncode == 0
        assert "already running; it has been asked to open its settings" in second.stdout
        wait_until(lambda: "Asked by another launch to: settings" in log_text())

        open_menu_and_choose(desktop, x, y, Item.QUIT)
        started = time.monotonic()
        proc.wait(timeout=10)
        assert time.monotonic() - started < 2.5 and proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_frozen_windows_exe(tmp_path: Path, server: CaptureServer, desktop: Desktop) -> None:
    """build.spec under Wine → heartbeat-tray.exe, run as a user would. (A release is built on
    windows-latest with Tk; this embeddable Python has none, so the build is told so.)"""
    built = subprocess.run(
        [
            "wine",
            str(wine.PYTHON),
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--distpath",
            str(tmp_path / "dist"),
            "--workpath",
            str(tmp_path / "build"),
            str(wine.ROOT / "build.spec"),
        ],
        input="",
        capture_output=True,
        text=True,
        env=wine.wine_env({"HEARTBEAT_TRAY_ALLOW_NO_TK": "1"}),
        timeout=600,
    )
    exe = tmp_path / "dist" / "heartbeat-tray" / "heartbeat-tray.exe"
    assert built.returncode == 0 and exe.exists(), built.stdout[-2000:] + built.stderr[-2000:]
    program = ["wine", str(exe)]

    def frozen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*program, *args],
            input="",
            capture_output=True,
            text=True,
            env=wine.wine_env(ENV),
            timeout=120,
        )

    # a windowed exe has no console: its answers are in the log, its exit code in the pipe
    assert frozen("once", "--host", server.url).returncode == 0
    (event,) = server.wait_for_events(1)
    assert event["properties"]["$os"] == "Windows"
    assert frozen("status", "--json").returncode == 0
    no_tk = frozen("settings")
    assert no_tk.returncode == 2
    assert "needs Tk, which this Python lacks" in log_text()
    tray = wine.start(
        "tray",
        "--autostart",
        "--interval",
        "2",
        "--host",
        server.url,
        env={**ENV, **desktop.env},
        program=program,
    )
    try:
        x, y = icon_at(desktop)
        desktop.click_at(x, y, 1)
        wait_until(lambda: "Heartbeat disabled" in log_text(), what="the frozen tray paused")
    finally:
        wine.kill_all()
        tray.wait(timeout=10)
