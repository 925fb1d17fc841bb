"""The History window for real: `heartbeat-tray history` on Xvfb, over a state file the real
ingestion poller wrote for a simulated day ending now (a break, a slow hour, a lost beat).

Its screenshot is the README's picture (docs/history-window.png, via update-docs-images).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from heartbeat_tray.dialog.history_chart import BANDS, POINT, THRESHOLD
from testkit.desktop import Desktop, start_desktop
from testkit.simulation import Harness
from tests.conftest import App, wait_until

pytestmark = pytest.mark.desktop


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    d = start_desktop(with_tray_host=False)
    yield d
    d.stop()


def a_day_of_checks(state_file: Path) -> None:
    """24 h of beats every 2 min and checks, ending now, written by the real poller."""
    assert state_file.name == "outbox.sqlite3"  # where the harness keeps it too
    start = datetime.now(UTC) - timedelta(hours=24)
    h = Harness(
        state_file.parent,
        poll=120,
        interval=120,
        alert_after=1800,
        start=start,
        slow_after_seconds=300,
        slow_window_seconds=900,
    )
    jitter = random.Random(7)  # the same picture every run
    for hours, typical in ((6, 8.0), (2, 25.0), (1, None), (3, 9.0), (1.5, 420.0), (10.4, 6.0)):
        lag = None if typical is None else (lambda t=typical: t * jitter.lognormvariate(0, 0.35))
        h.run(hours * 3600, beat_every=120, lag=lag)
    assert h.status.lost > 0 and h.state.snapshot.checks.incidents == {
        "not_ingested": 1,
        "slow": 1,
    }


def share(image: Image.Image, colour: tuple[int, int, int], tolerance: int) -> float:
    found = sum(
        count
        for count, pixel in image.getcolors(1 << 24) or []
        if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))
    )
    return found / (image.width * image.height)


def test_the_window_shows_a_day_of_lags_with_the_break_and_the_slow_hour(
    app: App, desktop: Desktop
) -> None:
    app.state_dir.mkdir(parents=True, exist_ok=True)
    a_day_of_checks(app.state_dir / "outbox.sqlite3")
    proc = app.start("history", env=desktop.env)
    try:
        shown = int(
            wait_until(
                lambda: desktop.xdotool(
                    "search", "--onlyvisible", "--class", "heartbeat-tray-history"
                ).split()[-1:],
                timeout=20,
                what="the History window",
            )[0]
        )
        x, y, width, height = desktop.geometry(shown)

        def picture() -> Image.Image:
            root = Image.open(desktop.screenshot("history-window"))
            return root.crop((x, y, x + width, y + height)).convert("RGB")

        wait_until(lambda: share(picture(), POINT, 20) > 0.002, what="a day of dots")
        image = picture()
        assert share(image, BANDS["not_ingested"], 3) > 0.002  # the break's band
        assert share(image, BANDS["slow"], 3) > 0.002  # the slow hour's band
        assert share(image, THRESHOLD, 30) > 0.001  # the threshold and the lost ticks
        image.save(desktop.screenshot("history-window").with_name("history-window-day.png"))
        desktop.xdotool("key", "--window", str(shown), "Escape")
        assert proc.wait(timeout=10) == 0  # Escape closes it
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_the_window_closes_at_once_on_sigterm_on_an_idle_screen(app: App, desktop: Desktop) -> None:
    """The tray's Quit sends SIGTERM: nothing else happens on the screen to wake Tk."""
    proc = app.start("history", env=desktop.env)
    try:
        wait_until(
            lambda: desktop.xdotool("search", "--onlyvisible", "--class", "heartbeat-tray-history"),
            timeout=20,
            what="the History window",
        )
        wait_until(
            lambda: "History window shown" in app.log_file.read_text(), what="the window shown"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
