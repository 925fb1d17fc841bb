"""The tray icon as each backend shows it, for the shape tests and the docs' picture of it.

xorg has no alpha: pystray draws the icon over a backing (``flatten``, the backend's own code).
A StatusNotifierItem host gets the ARGB32 pixmap (``argb_pixmap``, the item's own code) and
draws it on the panel; Windows gets the RGBA image (an .ico with alpha) and does the same.
"""

from __future__ import annotations

from PIL import Image

from heartbeat_tray.tray.icon_art import PULSE_FRAMES, XORG_BACKING, flatten, render
from heartbeat_tray.tray.presenter import IconState
from heartbeat_tray.tray.sni import argb_pixmap

PANELS = {"dark": (30, 30, 34), "light": (240, 240, 240)}
BACKENDS = ("xorg", "sni", "win32")


def icons() -> dict[str, Image.Image]:
    """Every state's icon at the size the tray gets, and the pulse's largest frame."""
    shown = {state.value: render(state) for state in IconState}
    shown["pulse"] = render(IconState.HEALTHY, pulse=len(PULSE_FRAMES) // 2)
    return shown


def backing(backend: str, panel: tuple[int, int, int]) -> tuple[int, int, int]:
    """What is behind the icon's transparent pixels."""
    return XORG_BACKING if backend == "xorg" else panel


def as_shown(
    backend: str, icon: Image.Image, size: int, panel: tuple[int, int, int]
) -> Image.Image:
    """The pixels a user sees in a ``size`` px slot of a panel of colour ``panel``."""
    if backend == "xorg":  # drawn over its own backing, whatever the panel
        return flatten(icon, size, size, XORG_BACKING).convert("RGB")
    if backend == "sni":
        width, height, data = argb_pixmap(icon, size)
        a, r, g, b = Image.frombytes("RGBA", (width, height), data).split()
        image = Image.merge("RGBA", (r, g, b, a))
    else:
        image = icon.convert("RGBA").resize((size, size), Image.Resampling.LANCZOS)
    shown = Image.new("RGBA", image.size, (*panel, 255))
    shown.alpha_composite(image)
    return shown.convert("RGB")


def sheet(sizes: tuple[int, ...] = (16, 22, 24), zoom: int = 4) -> Image.Image:
    """All states side by side: a row per backend and panel colour, a group per size."""
    from PIL import ImageDraw

    shown = icons()
    cell = max(sizes) + 6
    label = 150
    rows = [(b, p) for b in BACKENDS for p in PANELS]
    columns = len(shown) * len(sizes) + len(sizes) - 1
    out = Image.new("RGB", (label + columns * cell * zoom, len(rows) * cell * zoom), "white")
    draw = ImageDraw.Draw(out)
    for y, (backend, panel) in enumerate(rows):
        draw.text((6, y * cell * zoom + cell * zoom // 2 - 6), f"{backend}, {panel}", fill="black")
        x = 0
        for size in sizes:
            for icon in shown.values():
                tile = Image.new("RGB", (cell, cell), PANELS[panel])
                tile.paste(as_shown(backend, icon, size, PANELS[panel]), ((cell - size) // 2,) * 2)
                big = tile.resize((cell * zoom, cell * zoom), Image.Resampling.NEAREST)
                out.paste(big, (label + x * cell * zoom, y * cell * zoom))
                x += 1
            x += 1  # a gap between sizes
    return out
