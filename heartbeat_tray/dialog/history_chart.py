"""The lag history as a picture, drawn with Pillow: the same image in the History window and in
``heartbeat-tray history --png FILE`` (where there is no display).

Each live beat's lag is a dot on a log scale (1 s and 1 h both readable), the p95 of each hour a
line over them, the slow threshold a dashed red line, lost beats red ticks under the plot, and
incidents shaded bands behind it (violet: not ingested, amber: slow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from PIL import Image, ImageDraw, ImageFont

from heartbeat_tray.ingestion.history import History

WIDTH, HEIGHT = 960, 440  # the default size; a smaller screen gets a narrower chart
MIN_WIDTH = 640  # the legend's width
LAG_MIN, LAG_MAX = 0.5, 3600.0  # the y axis, in seconds, unless a lag goes beyond

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
POINT = (31, 119, 180)
P95 = (20, 20, 20)
THRESHOLD = (214, 39, 40)
LOST = (214, 39, 40)
BANDS = {"not_ingested": (233, 222, 246), "slow": (253, 236, 206)}
Y_TICKS = ((1, "1 s"), (10, "10 s"), (60, "1 min"), (600, "10 min"), (3600, "1 h"))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's own FreeType font: no system fonts
    except (TypeError, OSError):  # Pillow built without FreeType: the bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class Scale:
    """Where a time and a lag land: x linear in time, y logarithmic in seconds."""

    start: datetime
    end: datetime
    top_lag: float
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """Left, top, right, bottom of the plotting area."""
        return 70, 48, self.width - 30, self.height - 68

    @property
    def lost_row(self) -> int:
        """The strip under the plot where lost beats are ticked."""
        return self.height - 50

    def x(self, when: datetime) -> float:
        left, _top, right, _bottom = self.plot
        share = (when - self.start) / (self.end - self.start)
        return left + share * (right - left)

    def y(self, lag: float) -> float:
        _left, top, _right, bottom = self.plot
        low, high = math.log10(LAG_MIN), math.log10(self.top_lag)
        share = (math.log10(min(max(lag, LAG_MIN), self.top_lag)) - low) / (high - low)
        return bottom - share * (bottom - top)


def scale_for(history: History, width: int = WIDTH) -> Scale:
    top = max([LAG_MAX, *(lag * 1.2 for _when, lag in history.lags)])
    return Scale(history.start, history.now, top, max(MIN_WIDTH, width), HEIGHT)


def render(history: History, width: int = WIDTH) -> Image.Image:
    scale = scale_for(history, width)
    image = Image.new("RGB", (scale.width, scale.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = scale.plot
    small, label = _font(12), _font(14)

    for span in history.incidents:  # behind everything
        x0 = max(left, scale.x(span.start))
        x1 = min(right, scale.x(span.end or history.now))
        if x1 > x0:
            draw.rectangle([x0, top, x1, bottom], fill=BANDS.get(span.kind, GRID))

    for seconds, text in Y_TICKS:
        if seconds <= scale.top_lag:
            y = scale.y(seconds)
            draw.line([(left, y), (right, y)], fill=GRID)
            draw.text((left - 8, y), text, fill=INK, font=small, anchor="rm")
    first = history.start.astimezone().replace(minute=0, second=0, microsecond=0)
    tick = first + timedelta(hours=3 - first.hour % 3)
    while tick < history.now:
        x = scale.x(tick)
        draw.line([(x, top), (x, bottom)], fill=GRID)
        draw.text((x, bottom + 4), f"{tick:%H:%M}", fill=INK, font=small, anchor="mt")
        tick += timedelta(hours=3)
    draw.rectangle([left, top, right, bottom], outline=INK)

    if history.slow_after_seconds > 0:
        y = scale.y(history.slow_after_seconds)
        for x in range(left, right, 12):
            draw.line([(x, y), (min(x + 6, right), y)], fill=THRESHOLD, width=2)
        draw.text(
            (right - 4, y - 3),
            f"slow: {history.slow_after_seconds} s",
            fill=THRESHOLD,
            font=small,
            anchor="rb",
        )

    for start, end, hour_p95 in history.hourly_p95():  # under the dots
        y = scale.y(hour_p95)
        draw.line([(scale.x(start), y), (scale.x(end), y)], fill=P95, width=2)

    for when, lag in history.lags:
        if when > history.start:
            x, y = scale.x(when), scale.y(lag)
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=POINT)

    row = scale.lost_row
    draw.text((left - 8, row), "lost", fill=LOST, font=small, anchor="rm")
    for when in history.lost:
        if when > history.start:
            x = scale.x(when)
            draw.line([(x, row - 6), (x, row + 6)], fill=LOST, width=2)

    p95 = history.p95()
    title = "Ingestion lag, last 24 h"
    if history.host:
        title += f" · {history.host}"
    draw.text((left, 14), title, fill=INK, font=label)
    summary = (
        f"{len([w for w, _ in history.lags if w > history.start])} beats · "
        f"p95 {p95:.0f} s · lost {len(history.lost)}"
        if p95 is not None
        else "No beat stored in the last 24 h yet"
    )
    draw.text((right, 14), summary, fill=INK, font=label, anchor="ra")
    _legend(draw, small, scale)
    if p95 is None:
        draw.text(
            ((left + right) / 2, (top + bottom) / 2),
            "No lags yet: the ingestion check needs a personal API key and a few minutes.",
            fill=INK,
            font=label,
            anchor="mm",
        )
    return image


def _legend(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    scale: Scale,
) -> None:
    x, y = scale.plot[0], scale.height - 18
    entries = (
        ("dot", POINT, "each beat's lag"),
        ("line", P95, "p95 of each hour"),
        ("dash", THRESHOLD, "slow threshold"),
        ("band", BANDS["not_ingested"], "not ingested"),
        ("band", BANDS["slow"], "slow"),
    )
    for kind, colour, text in entries:
        if kind == "dot":
            draw.ellipse([x + 6, y - 3, x + 12, y + 3], fill=colour)
        elif kind == "band":
            draw.rectangle([x, y - 6, x + 18, y + 6], fill=colour, outline=GRID)
        else:
            draw.line([(x, y), (x + 18, y)], fill=colour, width=2)
        draw.text((x + 24, y), text, fill=INK, font=font, anchor="lm")
        x += 34 + int(draw.textlength(text, font=font)) + 18
