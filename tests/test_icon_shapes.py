"""Health at a glance: every icon state tells itself apart by shape, not only by colour, at
tray sizes, on a dark and a light panel, as each backend really shows it.

A person glancing at a 16 px icon sees light, dark and coloured areas; hue aside (colour-blind
users, a dim screen), that map of light/dark/colour is the icon's shape. Each state's symbol
must be light (white) on every panel, and every two states must differ in a fair share of that
map. Before the symbols were painted white, over a dark panel (and always on the xorg backend,
which draws over a dark backing) the "?" of needs-setup was a dark crack like not-ingested's.
"""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from testkit.icon_views import PANELS, as_shown, backing, icons

SIZES = (16, 22, 24)
PANEL, SYMBOL, DARK, BODY = range(4)
MIN_SHARE_APART = 0.10  # of the pixels either icon covers; the closest pair today: 0.12
MIN_SYMBOL_PIXELS = 5  # at 16 px: a trace, "!", "?" or crack a glance can see
ICONS = icons()


def glance(image: Image.Image, panel: tuple[int, int, int]) -> list[int]:
    """Each pixel as panel, light symbol, dark outline or coloured body; hue is ignored."""
    light_panel = sum(panel) / 3 > 200
    classes = []
    data = image.tobytes()
    for r, g, b in zip(data[0::3], data[1::3], data[2::3], strict=True):
        lum = 0.299 * r + 0.587 * g + 0.114 * b
        if lum >= (246 if light_panel else 200):  # whiter than a light panel
            classes.append(SYMBOL)
        elif max(abs(r - panel[0]), abs(g - panel[1]), abs(b - panel[2])) < 24:
            classes.append(PANEL)
        elif lum <= 60:
            classes.append(DARK)
        else:
            classes.append(BODY)
    return classes


CASES = [
    (backend, panel, size)
    for backend in ("xorg", "sni", "win32")
    for panel in PANELS
    for size in SIZES
    if not (backend == "xorg" and panel == "light")  # xorg looks the same on any panel
]


@pytest.mark.parametrize(("backend", "panel", "size"), CASES)
def test_every_state_differs_from_every_other_by_shape(backend: str, panel: str, size: int) -> None:
    colour = backing(backend, PANELS[panel])
    maps = {
        name: glance(as_shown(backend, icon, size, colour), colour) for name, icon in ICONS.items()
    }
    for name in ("healthy", "failing", "needs-setup", "not-ingested", "pulse"):
        symbol = maps[name].count(SYMBOL)
        assert symbol >= MIN_SYMBOL_PIXELS, f"{name}: its symbol is not light ({symbol} px)"
    for a, b in itertools.combinations(maps, 2):
        covered = sum(1 for x, y in zip(maps[a], maps[b], strict=True) if x or y)
        apart = sum(1 for x, y in zip(maps[a], maps[b], strict=True) if x != y)
        assert apart / covered >= MIN_SHARE_APART, f"{a} and {b} look alike ({apart} px)"
