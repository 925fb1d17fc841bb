"""The tray for real: Xvfb, trayer as the tray host, xdotool clicks, the key in gnome-keyring.

Screenshots of every state go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from heartbeat_tray.tray.app import NO_TRAY_HOST
from heartbeat_tray.tray.icon_art import AMBER, BLUE, GREY, RED, VIOLET
from heartbeat_tray.tray.presenter import MENU, Item
from testkit.desktop import Desktop, menu_item_centres, start_desktop, start_tray_host
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.desktop


def menu_layout() -> list[int]:
    """Entries per group between separators, from the menu model every backend renders."""
    groups = [0]
    for entry in MENU:
        if entry is None:
            groups.append(0)
        else:
            groups[-1] += 1
    return groups


def menu_index(item: Item) -> int:
    """Where an entry is, by name (separators are not entries)."""
    return [entry for entry in MENU if entry is not None].index(item)


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    d = start_desktop()
    yield d
    d.stop()


@pytest.fixture
def keyed_app(app: App, keyring_session: dict[str, str]) -> App:
    stored = app.run("key", "set", input=KEY)
    assert stored.returncode == 0, stored.stderr
    return app


def start_tray(
    app: App,
    desktop: Desktop,
    server: CaptureServer,
    interval: str = "1",
    *extra: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], int]:
    proc = app.start(
        "tray",
        *extra,
        "--interval",
        interval,
        "--host",
        server.url,
        env={**desktop.env, **(env_extra or {})},
    )
    window = desktop.icon_window()
    wait_until(lambda: desktop.is_docked(window), what="the icon docked in the tray")
    return proc, window


def colour_share(image: Image.Image, colour: tuple[int, ...], tolerance: int = 40) -> float:
    data = image.convert("RGB").tobytes()
    pixels = [data[i : i + 3] for i in range(0, len(data), 3)]
    near = sum(
        1
        for p in pixels
        if all(abs(a - b) <= tolerance for a, b in zip(p, colour[:3], strict=True))
    )
    return near / len(pixels)


def wait_title(desktop: Desktop, window: int, text: str) -> str:
    return str(
        wait_until(
            lambda: (t := desktop.title(window)) and text in t and t, what=f"title with {text!r}"
        )
    )


def open_menu_and_click(desktop: Desktop, window: int, item: Item) -> None:
    desktop.click(window, 3)
    menu = wait_until(
        lambda: desktop.xdotool("search", "--onlyvisible", "--class", "Menu").split(),
        what="the menu to open",
    )[-1]
    desktop.screenshot("tray-menu")
    x, y, _, _ = desktop.geometry(int(menu))
    centres = menu_item_centres(desktop.grab(int(menu)), menu_layout())
    cx, cy = centres[menu_index(item)]
    desktop.click_at(x + cx, y + cy)


def test_left_click_disables_and_enables_the_beats(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(keyed_app, desktop, server)
    server.wait_for_events(2)
    title = wait_title(desktop, window, "Last accepted")
    assert title.startswith("Heartbeat — ")
    desktop.screenshot("tray-healthy", window)
    assert colour_share(desktop.grab(window), RED) > 0.1

    desktop.click(window, 1)
    wait_title(desktop, window, "Disabled")
    # a pulse for the last accepted beat may still be running: the grey icon follows it
    wait_until(lambda: colour_share(desktop.grab(window), GREY) > 0.1, what="the grey icon")
    desktop.screenshot("tray-disabled", window)
    assert colour_share(desktop.grab(window), RED) < 0.01
    server.wait_for(lambda: False, timeout=0.5)  # let a request already on the wire land
    count = len(server.events)
    assert not server.wait_for(lambda: len(server.events) > count, timeout=3.0)

    desktop.click(window, 1)
    server.wait_for_events(count + 2)
    wait_title(desktop, window, "Last accepted")
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def test_menu_send_now_delivers_a_beat_and_quit_exits_fast(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(keyed_app, desktop, server, "3600")
    server.wait_for_events(1)
    open_menu_and_click(desktop, window, Item.SEND_NOW)
    events = server.wait_for_events(2)
    assert len({e["uuid"] for e in events}) == 2
    wait_title(desktop, window, "Last accepted")
    open_menu_and_click(desktop, window, Item.QUIT)
    started = time.monotonic()
    proc.wait(timeout=5)
    assert time.monotonic() - started < 2.0
    assert proc.returncode == 0
    wait_until(lambda: not desktop.find_windows("heartbeat-traySystemTrayIcon"), what="icon gone")
    _, err = proc.communicate(timeout=5)
    assert "invalid command name" not in err and "Traceback" not in err  # a quiet quit


def test_the_icon_pulses_on_an_accepted_beat(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(keyed_app, desktop, server, "3600")
    server.wait_for_events(1)
    wait_title(desktop, window, "Last accepted")
    rest = wait_until(lambda: _settled(desktop, window), what="the icon at rest")
    desktop.click(window, 1)  # disable
    wait_title(desktop, window, "Disabled")
    desktop.click(window, 1)  # enable: a beat at once, and a pulse when it is accepted
    mid = wait_until(
        lambda: (
            (img := desktop.grab(window)).tobytes() != rest.tobytes()
            and colour_share(img, GREY) < 0.01
            and img
        ),
        timeout=5,
        what="a pulse frame",
    )
    mid.resize((mid.width * 4, mid.height * 4)).save(desktop.screenshot("tray-pulse", window))
    wait_until(lambda: desktop.grab(window).tobytes() == rest.tobytes(), what="back at rest")
    server.wait_for_events(2)
    proc.terminate()
    proc.wait(timeout=5)


def _settled(desktop: Desktop, window: int) -> Image.Image | None:
    first = desktop.grab(window)
    time.sleep(0.6)  # longer than a pulse: two equal grabs this far apart mean no animation
    second = desktop.grab(window)
    return second if first.tobytes() == second.tobytes() else None


def test_failing_icon_while_the_server_fails_and_healthy_after(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    server.set_mode(503)
    proc, window = start_tray(keyed_app, desktop, server)
    wait_title(desktop, window, "Failing: 503 Service Unavailable")
    desktop.screenshot("tray-failing", window)
    failing = desktop.grab(window)
    assert colour_share(failing, AMBER) > 0.1 and colour_share(failing, RED) < 0.01
    server.set_mode("ok")
    wait_title(desktop, window, "Last accepted")
    wait_until(lambda: colour_share(desktop.grab(window), RED) > 0.1, what="the healthy icon")
    desktop.screenshot("tray-recovered", window)
    proc.terminate()
    proc.wait(timeout=5)


def test_no_key_shows_needs_setup(
    app: App, keyring_session: dict[str, str], desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(app, desktop, server, "1", "--autostart")
    title = wait_title(desktop, window, "No API key — open Settings")
    assert title == "Heartbeat — No API key — open Settings"
    desktop.screenshot("tray-needs-setup", window)
    assert colour_share(desktop.grab(window), BLUE) > 0.1
    assert server.capture_requests() == []
    proc.terminate()
    proc.wait(timeout=5)


def test_a_second_launch_does_not_double_the_beats(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(keyed_app, desktop, server)
    server.wait_for_events(2)
    second = keyed_app.run("tray", "--interval", "1", "--host", server.url, env=desktop.env)
    assert second.returncode == 0
    assert "already running; it has been asked to open its settings" in second.stdout
    assert desktop.find_windows("heartbeat-traySystemTrayIcon") == [window]
    count = len(server.events)
    events = server.wait_for_events(count + 4)
    ordered = sorted(events, key=lambda e: e["properties"]["sequence"])
    sequences = [e["properties"]["sequence"] for e in ordered]
    assert sequences == list(range(1, len(sequences) + 1))
    proc.terminate()
    proc.wait(timeout=5)


def test_the_icon_stays_docked_through_50_pulses(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    proc, window = start_tray(keyed_app, desktop, server)
    parent, _ = desktop.parent_of(window)
    parents = set()
    for n in itertools.count(1):
        server.wait_for_events(n)
        parents.add(desktop.parent_of(window)[0])
        if n == 51:
            break
    assert parents == {parent}  # never re-docked, never thrown back to the root window
    assert desktop.is_docked(window)
    assert desktop.find_windows("heartbeat-traySystemTrayIcon") == [window]
    proc.terminate()
    proc.wait(timeout=5)


def test_without_a_display_the_tray_says_so_in_one_sentence(app: App) -> None:
    result = app.run("tray")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "heartbeat-tray: No display is available (DISPLAY is not set); the tray needs a desktop "
        "session — run 'heartbeat-tray run' for the headless heartbeat."
    )


@pytest.fixture
def notifications(
    app: App, keyring_session: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[], list[dict[str, str]]]]:
    """A notification daemon on the app's session bus; yields a reader of what it was sent."""
    out = tmp_path / "notifications.jsonl"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "testkit.fake_notifications", str(out)],
        env=app.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"

    def shown() -> list[dict[str, str]]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines()]

    yield shown
    daemon.kill()
    daemon.wait()


def test_notifications_only_when_failing_starts_and_when_it_recovers(
    keyed_app: App,
    notifications: Callable[[], list[dict[str, str]]],
    desktop: Desktop,
    server: CaptureServer,
) -> None:
    proc, window = start_tray(keyed_app, desktop, server)
    server.wait_for_events(2)
    server.set_mode(503)
    wait_title(desktop, window, "(5 in a row)")  # well past the third failure
    assert [n["summary"] for n in notifications()] == ["Heartbeat failing"]
    assert notifications()[0]["body"].startswith("Failing: 503 Service Unavailable (")
    server.set_mode("ok")
    wait_until(lambda: len(notifications()) == 2, what="the recovery notification")
    count = len(server.events)
    server.wait_for_events(count + 3)  # more accepted beats: no notification per beat
    assert [n["summary"] for n in notifications()] == ["Heartbeat failing", "Heartbeat recovered"]
    assert {n["app"] for n in notifications()} == {"Heartbeat Tray"}
    proc.terminate()
    proc.wait(timeout=5)


def test_notify_false_keeps_quiet(
    keyed_app: App,
    notifications: Callable[[], list[dict[str, str]]],
    desktop: Desktop,
    server: CaptureServer,
) -> None:
    keyed_app.write_config("notify = false\n")
    server.set_mode(503)
    proc, window = start_tray(keyed_app, desktop, server)
    wait_title(desktop, window, "(4 in a row)")
    server.set_mode("ok")
    wait_title(desktop, window, "Last accepted")
    server.wait_for_events(2)
    assert notifications() == []
    proc.terminate()
    proc.wait(timeout=5)


def test_the_gtk_backend_docks_toggles_and_quits(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    try:
        import gi  # noqa: F401
    except ImportError:
        pytest.fail("PyGObject is not installed: run scripts/setup-tests")
    proc = keyed_app.start(
        "tray",
        "--interval",
        "1",
        "--host",
        server.url,
        env={**desktop.env, "PYSTRAY_BACKEND": "gtk"},
    )
    window = desktop.icon_window(backend="gtk")
    wait_title(desktop, window, "Last accepted")
    desktop.screenshot("tray-gtk-healthy", window)
    desktop.click(window, 1)  # GTK runs the default item, Enabled, on a left click
    wait_title(desktop, window, "Disabled")
    server.wait_for(lambda: False, timeout=0.5)
    count = len(server.events)
    assert not server.wait_for(lambda: len(server.events) > count, timeout=3.0)
    desktop.click(window, 1)
    server.wait_for_events(count + 2)
    desktop.click(window, 3)
    menu = wait_until(
        lambda: [
            w
            for w in desktop.xdotool("search", "--onlyvisible", "--name", "").split()
            if desktop.geometry(int(w))[3] > 150  # the popup menu: tall, unlike the tray
        ],
        what="the GTK menu",
    )
    assert menu
    desktop.screenshot("tray-gtk-menu")
    desktop.xdotool("key", "Escape")
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def test_an_unavailable_keyring_shows_why_in_the_tray(
    app: App, desktop: Desktop, server: CaptureServer
) -> None:
    # no session bus at all: keyring finds no Secret Service
    proc, window = start_tray(app, desktop, server, "1", "--autostart")
    title = wait_title(desktop, window, "Keyring unavailable")
    assert title == "Heartbeat — Keyring unavailable — unlock it or set POSTHOG_PROJECT_API_KEY"
    assert "no keyring service was found" in app.log_file.read_text()  # the details
    assert colour_share(desktop.grab(window), BLUE) > 0.1  # the needs-setup icon
    assert server.capture_requests() == []
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def test_open_log_without_a_program_to_open_it_says_so_and_prints_nothing(
    keyed_app: App,
    desktop: Desktop,
    server: CaptureServer,
    notifications: Callable[[], list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    bare = tmp_path / "bin"  # a PATH with Python but no xdg-open
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    proc, window = start_tray(keyed_app, desktop, server, "3600", env_extra={"PATH": str(bare)})
    server.wait_for_events(1)
    open_menu_and_click(desktop, window, Item.OPEN_LOG)
    said = wait_until(
        lambda: [n for n in notifications() if n["summary"] == "The log could not be opened"],
        what="a notification",
    )
    assert "No program to open it was found" in said[0]["body"]
    proc.terminate()
    _, err = proc.communicate(timeout=5)
    assert err.strip() == ""  # nothing on stderr: the notification and the log have it


def test_accepted_but_not_ingested_has_its_own_icon_and_recovers(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    personal = "phx_trayPersonalKey0123456789abcdefghijkl"
    server.personal_keys = {personal}
    server.drop_downstream = True  # capture says 200; nothing is stored
    keyed_app.write_config("[ingestion]\npoll_seconds = 1\nalert_after_seconds = 2\n")
    proc, window = start_tray(
        keyed_app, desktop, server, env_extra={"POSTHOG_PERSONAL_API_KEY": personal}
    )
    title = wait_title(desktop, window, "Not ingested since")
    assert title.startswith("Heartbeat — Not ingested since ")
    wait_until(lambda: colour_share(desktop.grab(window), VIOLET) > 0.1, what="the violet icon")
    desktop.screenshot("tray-not-ingested", window)
    server.drop_downstream = False
    wait_title(desktop, window, "Last accepted")
    wait_until(lambda: colour_share(desktop.grab(window), RED) > 0.1, what="healthy again")
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def rss_mib_and_threads(pid: int) -> tuple[float, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"])


def open_menu(desktop: Desktop, window: int) -> int:
    desktop.click(window, 3)
    found = wait_until(
        lambda: desktop.xdotool("search", "--onlyvisible", "--class", "Menu").split(),
        what="the menu to open",
    )
    return int(found[-1])


def menu_closed(desktop: Desktop) -> bool:
    return not desktop.xdotool("search", "--onlyvisible", "--class", "Menu").strip()


@pytest.mark.slow
@pytest.mark.timeout(400)  # four minutes of beats after the menus
def test_the_tray_lives_on_for_minutes_after_its_menu_was_opened_and_costs_no_memory(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    """Tk in the tray's own process aborted it 3-6 minutes after the menu had been open
    (``Tcl_AsyncDelete``), within 20 s after three openings, and kept 10 MiB and a thread."""
    proc, window = start_tray(keyed_app, desktop, server, "2")
    server.wait_for_events(3)
    before_mib, before_threads = rss_mib_and_threads(proc.pid)

    for n in range(5):
        menu = open_menu(desktop, window)
        events = len(server.events)
        server.wait_for_events(events + 1)  # a beat while it is open: the menu stays open
        assert desktop.xdotool("search", "--onlyvisible", "--class", "Menu").split()[-1] == str(
            menu
        ), "the menu closed by itself at a beat"
        if n == 0:
            desktop.screenshot("tray-menu-open-across-a-beat")
        desktop.xdotool("key", "Escape")
        wait_until(lambda: menu_closed(desktop), what="Escape to close the menu")

    # The last menu's reader thread ends with its process; Tk in-process kept a thread for good.
    wait_until(
        lambda: rss_mib_and_threads(proc.pid)[1] <= before_threads,
        what=f"the tray back to its {before_threads} threads",
    )
    after_mib, _ = rss_mib_and_threads(proc.pid)
    assert after_mib - before_mib < 2.0, f"RSS {before_mib:.1f} → {after_mib:.1f} MiB"

    # Minutes of real time: the process stays up and beats on its 2 s grid all along.
    start_events, started = len(server.events), time.monotonic()
    died = server.wait_for(lambda: proc.poll() is not None, timeout=240.0)
    assert not died, f"the tray exited with {proc.returncode}: {proc.communicate()[1][-500:]}"
    beats = len(server.events) - start_events
    assert beats >= (time.monotonic() - started) / 2 - 3
    assert "Traceback" not in keyed_app.log_file.read_text()
    proc.terminate()
    assert proc.wait(timeout=5) == 0


@pytest.fixture
def trayless_desktop() -> Iterator[Desktop]:
    """An X desktop with no tray manager and no StatusNotifierWatcher: vanilla GNOME on Xwayland."""
    d = start_desktop(with_tray_host=False)
    yield d
    d.stop()


def test_no_tray_is_said_once_the_beats_go_on_and_a_panel_that_comes_later_gets_the_icon(
    keyed_app: App,
    trayless_desktop: Desktop,
    server: CaptureServer,
    notifications: Callable[[], list[dict[str, str]]],
) -> None:
    desktop = trayless_desktop
    proc = keyed_app.start("tray", "--interval", "1", "--host", server.url, env=desktop.env)
    said = wait_until(
        lambda: [n for n in notifications() if n["summary"] == "Heartbeat Tray has no tray"],
        timeout=30.0,
        what="the no-tray notification",
    )
    assert said[0]["body"] == NO_TRAY_HOST
    status = keyed_app.status()
    assert status["tray_problem"] == NO_TRAY_HOST
    assert "tray:            No tray to show the icon in" in keyed_app.run("status").stdout
    beats = len(server.events)
    server.wait_for_events(beats + 5)  # it keeps beating meanwhile

    # The panel starts late (login raced it): the icon docks, and status no longer complains.
    start_tray_host(desktop)
    window = desktop.icon_window()
    wait_until(lambda: desktop.is_docked(window), what="the icon docked in the late tray")
    wait_until(lambda: keyed_app.status()["tray_problem"] is None, what="status without a problem")
    wait_until(lambda: colour_share(desktop.grab(window), RED) > 0.1, what="the icon drawn")
    desktop.screenshot("tray-docked-in-a-late-panel")

    # The panel restarts: the icon comes back in the new one.
    assert desktop.tray_host is not None
    desktop.tray_host.kill()
    desktop.tray_host.wait()
    wait_until(lambda: not desktop.is_docked(window), what="the icon left behind by the panel")
    start_tray_host(desktop)
    wait_until(lambda: desktop.is_docked(window), what="the icon docked in the restarted tray")
    server.wait_for_events(len(server.events) + 2)

    proc.terminate()
    assert proc.wait(timeout=5) == 0
    log = keyed_app.log_file.read_text()
    assert log.count("No tray to show the icon in") == 1
    assert "Traceback" not in log and "Failed to dock" not in log
    assert len([n for n in notifications() if n["summary"] == "Heartbeat Tray has no tray"]) == 1


PERSONAL = "phx_e2ePersonalKey0123456789abcdefghijklmnop"


def test_history_opens_from_the_menu_and_closes_with_the_tray_which_serves_metrics(
    keyed_app: App, desktop: Desktop, server: CaptureServer
) -> None:
    from heartbeat_tray.dialog.history_chart import POINT

    server.personal_keys = {PERSONAL}
    server.ingest_lag = 2.0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    keyed_app.write_config(
        "[ingestion]\npoll_seconds = 1\nalert_after_seconds = 30\n"
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    proc, window = start_tray(
        keyed_app, desktop, server, env_extra={"POSTHOG_PERSONAL_API_KEY": PERSONAL}
    )
    wait_until(
        lambda: keyed_app.status()["ingestion"]["lag"].get("1h", {}).get("n", 0) >= 5,
        timeout=40,
        what="five lags measured",
    )
    # the tray serves the same metrics as run when [metrics] listen is set
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    accepted = re.search(r'^heartbeat_beats_total\{outcome="accepted"\} (\S+)$', metrics, re.M)
    assert accepted is not None and float(accepted[1]) >= 5
    assert re.search(r"^heartbeat_ingestion_lag_seconds_count (\S+)$", metrics, re.M)
    open_menu_and_click(desktop, window, Item.HISTORY)

    def history_window() -> int | None:
        found = desktop.xdotool(
            "search", "--onlyvisible", "--class", "heartbeat-tray-history"
        ).split()
        return int(found[-1]) if found else None

    shown = wait_until(history_window, timeout=20, what="the History window")

    def picture() -> Image.Image:
        x, y, width, height = desktop.geometry(shown)
        return Image.open(desktop.screenshot("history-window")).crop((x, y, x + width, y + height))

    def dot_pixels(image: Image.Image) -> int:
        return round(colour_share(image, POINT, tolerance=20) * image.width * image.height)

    wait_until(lambda: dot_pixels(picture()) >= 40, what="the lags drawn as dots")
    # the whole chart on this 800 px wide screen: narrower than on a big one, not cut off
    x, _y, width, _height = desktop.geometry(shown)
    screen_width = int(desktop.xdotool("getdisplaygeometry").split()[0])
    assert x >= 0 and x + width <= screen_width and width >= 640

    # With no window manager it opened over the panel: move it off, as a user would drag it.
    desktop.xdotool("windowmove", str(shown), "0", "120")
    open_menu_and_click(desktop, window, Item.QUIT)
    assert proc.wait(timeout=10) == 0
    wait_until(lambda: history_window() is None, what="the History window to close with the tray")
    assert "Traceback" not in keyed_app.log_file.read_text()
