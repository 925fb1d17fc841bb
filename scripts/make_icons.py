"""Writes assets/ and docs/icon-states.png from heartbeat_tray/icon_art.py, the one source of
the icon art.

    .venv-test/bin/python scripts/make_icons.py

PNGs of every state at the usual tray and launcher sizes, the pulse frames, a multi-size .ico
(Windows build) and an .icns (macOS bundle). tests/test_icon_art.py fails when assets/ and the
code disagree, so run this after changing the art.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from heartbeat_tray.tray.icon_art import PULSE_FRAMES, IconState, render  # noqa: E402

SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def expected_files() -> dict[str, object]:
    """Every asset by file name, as an image (or list of images for .ico/.icns)."""
    files: dict[str, object] = {}
    for state in IconState:
        for size in SIZES:
            files[f"{state.value}-{size}.png"] = render(state, size)
    for frame in range(len(PULSE_FRAMES)):
        files[f"pulse-{frame}-64.png"] = render(IconState.HEALTHY, 64, pulse=frame)
    files["heartbeat-tray.png"] = render(IconState.HEALTHY, 256)
    return files


def main(target: Path = ROOT / "assets") -> None:
    target.mkdir(exist_ok=True)
    for name, image in expected_files().items():
        image.save(target / name)  # type: ignore[attr-defined]
    largest = render(IconState.HEALTHY, 256)
    largest.save(
        target / "heartbeat-tray.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[render(IconState.HEALTHY, s) for s in ICO_SIZES],
    )
    render(IconState.HEALTHY, 1024).save(
        target / "heartbeat-tray.icns",
        append_images=[render(IconState.HEALTHY, s) for s in ICNS_SIZES[:-1]],
    )
    print(f"wrote {len(list(target.iterdir()))} files to {target}")
    from testkit.icon_views import sheet

    sheet().save(ROOT / "docs" / "icon-states.png")
    print("wrote docs/icon-states.png (every state as each backend shows it)")


if __name__ == "__main__":
    main()
