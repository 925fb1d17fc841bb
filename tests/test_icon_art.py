"""The icon art: states told apart by shape (not colour alone), a visible pulse, assets in step."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from heartbeat_tray.tray.icon_art import PULSE_FRAMES, IconState, icon_set, render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_icons import ICO_SIZES, expected_files  # noqa: E402


def shape(image: Image.Image) -> Image.Image:
    """What macOS keeps of a template icon: the alpha channel, thresholded."""
    return image.getchannel("A").point(lambda a: 255 if a > 127 else 0)


def differing_share(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a, b)
    return sum(1 for p in diff.tobytes() if p) / (a.width * a.height)


@pytest.mark.parametrize("size", [16, 24, 64])
def test_every_state_has_its_own_shape(size: int) -> None:
    shapes = {state: shape(render(state, size)) for state in IconState}
    for a, b in itertools.combinations(IconState, 2):
        assert differing_share(shapes[a], shapes[b]) > 0.02, (a, b)


@pytest.mark.parametrize("size", [16, 24, 64])
def test_every_pulse_frame_changes_the_shape(size: int) -> None:
    rest = shape(render(IconState.HEALTHY, size))
    for frame in range(len(PULSE_FRAMES)):
        assert differing_share(shape(render(IconState.HEALTHY, size, pulse=frame)), rest) > 0.05


def test_icons_are_rendered_once() -> None:
    assert icon_set() is icon_set()
    icons = icon_set()
    assert set(icons.states) == set(IconState)
    assert len(icons.pulse) == len(PULSE_FRAMES)


@pytest.mark.parametrize("size", [16, 256])
def test_icons_are_crisp_rgba_at_every_size(size: int) -> None:
    image = render(IconState.HEALTHY, size)
    assert image.mode == "RGBA" and image.size == (size, size)
    alpha = image.getchannel("A")
    assert alpha.getextrema() == (0, 255)  # fully transparent corners, a fully opaque body


def test_committed_assets_match_the_code() -> None:
    for name, image in expected_files().items():
        committed = Image.open(ROOT / "assets" / name).convert("RGBA")
        assert committed.size == image.size, name  # type: ignore[attr-defined]
        diff = ImageChops.difference(committed, image)  # type: ignore[arg-type]
        assert max(high for _, high in diff.getextrema()) <= 3, f"{name}: run make_icons.py"
    ico = Image.open(ROOT / "assets" / "heartbeat-tray.ico")
    assert {(s, s) for s in ICO_SIZES} <= set(ico.info["sizes"])
    icns = Image.open(ROOT / "assets" / "heartbeat-tray.icns")
    assert icns.size == (1024, 1024)
