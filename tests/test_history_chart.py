"""The History picture from known data: each point, lost beat, band and line where it belongs
(positions computed here from the axes' definition, not from the chart's own code), and the
history read back from a state file the real poller wrote."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from heartbeat_tray.dialog.history_chart import (
    BACKGROUND,
    BANDS,
    LOST,
    P95,
    POINT,
    THRESHOLD,
    render,
)
from heartbeat_tray.ingestion.history import History, Span
from heartbeat_tray.ingestion.store import read_history
from testkit.simulation import Harness

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEFT, TOP = 70, 48  # the plot's corner; its right and bottom are 30 and 68 px in from the edge


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def where(image: Image.Image, hours_ago: float, lag: float) -> tuple[int, int]:
    """24 h across, now at the right; a log scale from 0.5 s at the bottom to 1 h at the top."""
    right, bottom = image.width - 30, image.height - 68
    x = LEFT + (24 - hours_ago) / 24 * (right - LEFT)
    share = (math.log10(lag) - math.log10(0.5)) / (math.log10(3600) - math.log10(0.5))
    return round(x), round(bottom - share * (bottom - TOP))


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


HISTORY = History(
    NOW,
    lags=[(ago(20), 2.0), (ago(12), 10.0), (ago(8), 100.0), (ago(6.5), 1000.0)],
    lost=[ago(3)],
    incidents=[Span("not_ingested", ago(5), ago(4)), Span("slow", ago(2), None)],
    slow_after_seconds=300,
    host="https://eu.i.posthog.com",
)


def test_each_lag_is_a_dot_where_its_time_and_log_lag_put_it() -> None:
    image = render(HISTORY)
    for when, lag in HISTORY.lags:
        hours = (NOW - when).total_seconds() / 3600
        assert near(image.getpixel(where(image, hours, lag)), POINT), (hours, lag)
    # and nothing is drawn where no beat was: 16 h ago at 10 s is blank
    assert image.getpixel(where(image, 16, 10.0)) == BACKGROUND


def test_the_p95_of_each_hour_the_threshold_lost_beats_and_incidents_are_marked() -> None:
    image = render(HISTORY)
    # the hour that ends with the 10 s beat has its p95 line at 10 s, half an hour before it
    assert near(image.getpixel(where(image, 12.5, 10.0)), P95)
    # the slow threshold: a dashed line at 300 s, its first dash at the plot's left edge
    x, y = where(image, 24, 300.0)
    assert near(image.getpixel((x + 3, y)), THRESHOLD)
    # a lost beat: a red tick under the plot, 3 h ago
    x, _ = where(image, 3, 1.0)
    assert near(image.getpixel((x, image.height - 50)), LOST)
    assert image.getpixel((where(image, 9, 1.0)[0], image.height - 50)) == BACKGROUND
    # bands: violet while not ingested (5 h to 4 h ago), amber since the slow one opened
    assert near(image.getpixel(where(image, 4.5, 30.0)), BANDS["not_ingested"], 4)
    assert near(image.getpixel(where(image, 1.0, 30.0)), BANDS["slow"], 4)
    assert image.getpixel(where(image, 3.5, 30.0)) == BACKGROUND


def test_a_narrow_screen_gets_a_narrower_chart_with_every_point_still_in_place() -> None:
    image = render(HISTORY, width=700)
    assert image.size == (700, 440)
    for when, lag in HISTORY.lags:
        hours = (NOW - when).total_seconds() / 3600
        assert near(image.getpixel(where(image, hours, lag)), POINT)


def test_no_lags_yet_draws_the_axes_and_says_why() -> None:
    image = render(History(NOW))
    colours = {image.getpixel((x, y)) for x in range(0, image.width, 3) for y in range(0, 400, 3)}
    assert not any(near(c, POINT, 10) for c in colours)  # no dot anywhere
    assert image.size == (960, 440)


def test_the_history_read_back_has_the_lags_lost_beats_and_incidents(tmp_path: Path) -> None:
    h = Harness(tmp_path, alert_after=300)
    h.run(20 * 60, lag=10.0)
    h.run(15 * 60, lag=None)  # a break: an incident, and beats lost once newer ones are stored
    h.run(20 * 60, lag=10.0)
    status = h.status
    assert status.lost > 0
    history = read_history(h.path, h.clock.wall(), slow_after_seconds=300)
    assert len(history.lost) == status.lost
    window = status.window("24h")
    assert window is not None and len(history.lags) == window.n
    (incident,) = history.incidents
    assert incident.kind == "not_ingested" and incident.end is not None
    assert min(history.lost) >= incident.start - timedelta(minutes=5)
    assert not read_history(tmp_path / "none.sqlite3", NOW).lags  # no file: nothing, no error
    assert not (tmp_path / "none.sqlite3").exists()  # and it is not created
