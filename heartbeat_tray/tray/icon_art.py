"""The tray icon, drawn with Pillow: five states and the pulse frames, all from this one source.

States differ in shape, not only colour, so colour-blind users and a glance at a 16 px panel
tell them apart, on a dark or a light panel, with real alpha (StatusNotifierItem hosts, Windows)
or over the dark backing of pystray's xorg backend (no alpha):

- healthy: a filled red heart with a white heartbeat trace;
- failing: a filled amber heart with a white exclamation mark;
- disabled: a hollow grey heart crossed by a flat line;
- needs setup: a filled blue heart with a white question mark;
- not ingested: a filled violet heart split by a white zigzag crack (a broken heart): PostHog
  accepts the beats but does not store them.

The symbols are painted white rather than cut out: a hole shows the panel, and over a dark
panel a cut-out "?" read as the broken heart's crack (tests/test_icon_shapes.py measures it).
The pulse grows the healthy heart and rings it with an outline, then settles back.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from heartbeat_tray.tray.presenter import IconState

SUPERSAMPLE = 4
BASE = 64  # the size the tray gets; sharp sources for HiDPI come from render(size=…)

RED = (226, 45, 72, 255)
AMBER = (235, 140, 20, 255)
GREY = (140, 146, 156, 255)
BLUE = (52, 120, 246, 255)
VIOLET = (150, 70, 200, 255)
OUTLINE = (20, 20, 24, 255)  # a dark rim keeps every state readable on light panels
SYMBOL = (255, 255, 255, 255)  # the trace, "!", "?" and the crack: light on every panel
# pystray's xorg backend has no alpha: the icon is drawn over this (a common dark panel colour;
# the icon's dark rim reads on light panels too).
XORG_BACKING = (43, 43, 48)


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
        (cx, cy + r * 0.8),
    ]


def _dot(draw: ImageDraw.ImageDraw, cx: float, top: float, w: float) -> None:
    draw.ellipse([cx - w * 0.7, top, cx + w * 0.7, top + w * 1.4], fill=255)


def _glyph(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, kind: str) -> None:
    """Draw "!" or "?" into a cut-out mask."""
    w = max(2.0, r * 0.24)
    if kind == "!":
        w = max(2.0, r * 0.3)  # one stroke: bolder, or it fades into the amber at 16 px
        draw.line([(cx, cy - r * 0.6), (cx, cy + r * 0.02)], fill=255, width=round(w))
        _dot(draw, cx, cy + r * 0.18, w)
    else:
        box = [cx - r * 0.32, cy - r * 0.62, cx + r * 0.32, cy + r * 0.02]
        draw.arc(box, start=190, end=90, fill=255, width=round(w))
        draw.line([(cx, cy + r * 0.0), (cx, cy + r * 0.14)], fill=255, width=round(w))
        _dot(draw, cx, cy + r * 0.3, w)


def render(state: IconState, size: int = BASE, pulse: int | None = None) -> Image.Image:
    """One RGBA icon; ``pulse`` is a frame index into PULSE_FRAMES (healthy only)."""
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    holes = Image.new("L", (big, big), 0)  # the symbol (or, disabled: the hollow)
    cut = ImageDraw.Draw(holes)
    c = big / 2
    scale, ring = PULSE_FRAMES[pulse] if pulse is not None else (1.0, False)
    r = big * 0.42 * scale * (0.82 if pulse is not None else 1.0)
    rim = max(SUPERSAMPLE, round(big * 0.035))
    stroke = round(big * 0.1)
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
        cut.line(_crack(c, c, r), fill=255, width=stroke, joint="curve")
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
    if state is IconState.DISABLED:
        image.putalpha(ImageChops.subtract(image.getchannel("A"), holes))
    else:
        # Symbols are painted white, not cut out: a hole shows the panel, and on a dark panel
        # (or pystray's xorg backend, which draws over a dark backing) a "?" cut out of a blue
        # heart read as the violet broken heart's crack.
        # A thin transparent gap around the white symbol keeps it in the alpha channel too
        # (macOS draws template icons from alpha alone); over a dark panel the gap is a dark
        # halo that only sharpens the white.
        inside = ImageChops.multiply(holes, _fill_mask(heart, big))
        halo = inside.filter(ImageFilter.MaxFilter(2 * (rim // 2) + 1))
        gap = ImageChops.subtract(halo, inside)
        image.putalpha(ImageChops.subtract(image.getchannel("A"), gap))
        image.paste(SYMBOL, mask=inside)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _fill_mask(polygon: list[tuple[float, float]], big: int) -> Image.Image:
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    return mask


def flatten(icon: Image.Image, width: int, height: int, background: tuple[int, int, int]) -> Any:
    """The icon as a backend without alpha shows it: fitted into the slot, over a backing."""
    # Fit, do not stretch: tray slots are often taller than wide (trayer: 24x30).
    side = min(width, height)
    source = icon.convert("RGBA").resize((side, side), Image.Resampling.LANCZOS)
    data = Image.new("RGB", (width, height), background)
    data.paste(source, ((width - side) // 2, (height - side) // 2), mask=source)
    return data


class IconSet:
    """Every image the tray shows, rendered once at start-up; nothing is drawn per beat."""

    def __init__(self, size: int = BASE) -> None:
        self.states = {state: render(state, size) for state in IconState}
        self.pulse = [render(IconState.HEALTHY, size, pulse=i) for i in range(len(PULSE_FRAMES))]


@cache
def icon_set(size: int = BASE) -> IconSet:
    return IconSet(size)
