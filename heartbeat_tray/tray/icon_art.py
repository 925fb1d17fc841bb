"""The tray icon, drawn with Pillow: four states and the pulse frames, all from this one source.

States differ in shape and fill, not only colour, so they stay apart when macOS draws the icon
as a one-colour template and when pystray's xorg backend drops the alpha channel:

- healthy: a filled red heart with a heartbeat trace cut out of it;
- failing: a filled amber heart with an exclamation mark cut out;
- disabled: a hollow grey heart crossed by a flat line;
- needs setup: a filled blue heart with a question mark cut out;
- not ingested: a filled violet heart split by a zigzag crack (a broken heart): PostHog
  accepts the beats but does not store them.

The pulse grows the healthy heart and rings it with an outline, then settles back.
"""

from __future__ import annotations

import math
from functools import cache

from PIL import Image, ImageChops, ImageDraw

from heartbeat_tray.tray.presenter import IconState

SUPERSAMPLE = 4
BASE = 64  # the size the tray gets; sharp sources for HiDPI come from render(size=…)

RED = (226, 45, 72, 255)
AMBER = (235, 140, 20, 255)
GREY = (140, 146, 156, 255)
BLUE = (52, 120, 246, 255)
VIOLET = (150, 70, 200, 255)
OUTLINE = (20, 20, 24, 255)  # a dark rim keeps every state readable on light panels


# Pulse: heart scale for each frame, and whether a ring is drawn around it.
PULSE_FRAMES: tuple[tuple[float, bool], ...] = (
    (1.0, True),
    (1.12, True),
    (1.2, True),
    (1.08, False),
)
PULSE_FRAME_MS = 120  # four frames: under half a second, then back to the state icon


def _heart(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    points = []
    for i in range(120):
        t = 2 * math.pi * i / 120
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((cx + x * radius / 17, cy - y * radius / 17 - radius * 0.08))
    return points


def _trace(cx: float, cy: float, r: float, flat: bool) -> list[tuple[float, float]]:
    # Kept inside the heart's edge, so the outline stays whole and reads as one heart.
    if flat:
        return [(cx - r * 0.75, cy), (cx + r * 0.75, cy)]
    return [
        (cx - r * 0.6, cy),
        (cx - r * 0.28, cy),
        (cx - r * 0.1, cy - r * 0.42),
        (cx + r * 0.1, cy + r * 0.38),
        (cx + r * 0.26, cy - r * 0.08),
        (cx + r * 0.34, cy),
        (cx + r * 0.6, cy),
    ]


def _crack(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """A zigzag from the heart's top notch to its tip: the heart broken in two."""
    return [
        (cx, cy - r * 0.62),
        (cx - r * 0.16, cy - r * 0.3),
        (cx + r * 0.14, cy - r * 0.02),
        (cx - r * 0.14, cy + r * 0.28),
        (cx + r * 0.06, cy + r * 0.55),
        (cx, cy + r * 0.95),
    ]


def _dot(draw: ImageDraw.ImageDraw, cx: float, top: float, w: float) -> None:
    draw.ellipse([cx - w * 0.7, top, cx + w * 0.7, top + w * 1.4], fill=255)


def _glyph(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, kind: str) -> None:
    """Draw "!" or "?" into a cut-out mask."""
    w = max(2.0, r * 0.24)
    if kind == "!":
        draw.line([(cx, cy - r * 0.55), (cx, cy + r * 0.1)], fill=255, width=round(w))
        _dot(draw, cx, cy + r * 0.28, w)
    else:
        box = [cx - r * 0.32, cy - r * 0.62, cx + r * 0.32, cy + r * 0.02]
        draw.arc(box, start=190, end=90, fill=255, width=round(w))
        draw.line([(cx, cy + r * 0.0), (cx, cy + r * 0.14)], fill=255, width=round(w))
        _dot(draw, cx, cy + r * 0.3, w)


def render(state: IconState, size: int = BASE, pulse: int | None = None) -> Image.Image:
    """One RGBA icon; ``pulse`` is a frame index into PULSE_FRAMES (healthy only).

    Traces and glyphs are cut out of the heart, not painted on it, so they survive a one-colour
    template rendering (macOS reads only the alpha channel).
    """
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    holes = Image.new("L", (big, big), 0)
    cut = ImageDraw.Draw(holes)
    c = big / 2
    scale, ring = PULSE_FRAMES[pulse] if pulse is not None else (1.0, False)
    r = big * 0.42 * scale * (0.82 if pulse is not None else 1.0)
    rim = max(SUPERSAMPLE, round(big * 0.035))
    stroke = round(big * 0.075)
    if ring:
        ring_r = big * 0.47
        draw.ellipse([c - ring_r, c - ring_r, c + ring_r, c + ring_r], outline=RED, width=rim * 2)
    heart = _heart(c, c, r)
    colour = {
        IconState.HEALTHY: RED,
        IconState.FAILING: AMBER,
        IconState.DISABLED: GREY,
        IconState.NEEDS_SETUP: BLUE,
        IconState.NOT_INGESTED: VIOLET,
    }[state]
    draw.polygon(heart, fill=colour, outline=OUTLINE, width=rim)
    if state is IconState.HEALTHY:
        cut.line(_trace(c, c, r, flat=False), fill=255, width=stroke, joint="curve")
    elif state is IconState.NOT_INGESTED:
        cut.line(_crack(c, c, r), fill=255, width=round(stroke * 0.8), joint="curve")
    elif state is IconState.DISABLED:
        # Hollow, with a flat line: no pulse.
        cut.polygon(_heart(c, c, r * 0.62), fill=255)
        draw.line(_trace(c, c, r * 0.9, flat=True), fill=GREY, width=stroke)
    else:
        _glyph(cut, c, c, r, "!" if state is IconState.FAILING else "?")
    if state is IconState.DISABLED:
        line = Image.new("L", (big, big), 0)
        ImageDraw.Draw(line).line(_trace(c, c, r * 0.9, flat=True), fill=255, width=stroke)
        holes = ImageChops.subtract(holes, line)
    alpha = ImageChops.subtract(image.getchannel("A"), holes)
    image.putalpha(alpha)
    return image.resize((size, size), Image.Resampling.LANCZOS)


class IconSet:
    """Every image the tray shows, rendered once at start-up; nothing is drawn per beat."""

    def __init__(self, size: int = BASE) -> None:
        self.states = {state: render(state, size) for state in IconState}
        self.pulse = [render(IconState.HEALTHY, size, pulse=i) for i in range(len(PULSE_FRAMES))]


@cache
def icon_set(size: int = BASE) -> IconSet:
    return IconSet(size)
