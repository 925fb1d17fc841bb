"""``history``: the lag of the last 24 h as a picture, in a window or a PNG file (headless).

It only reads the state file, like ``status``: it creates, locks and moves nothing there.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heartbeat_tray.cli.context import EXIT_OK, Context, UserError, answer
from heartbeat_tray.cli.status import running_settings
from heartbeat_tray.core.settings import IngestionSettings
from heartbeat_tray.ingestion.store import read_history
from heartbeat_tray.system.atomic_file import write_atomically

if TYPE_CHECKING:
    from PIL.Image import Image


def cmd_history(ctx: Context) -> int:
    from heartbeat_tray.dialog.history_chart import WIDTH, render

    settings = _settings_in_use(ctx)
    state_file = ctx.paths.outbox_file

    def picture(width: int = WIDTH) -> Image:
        try:
            history = read_history(
                state_file,
                datetime.now(UTC),
                slow_after_seconds=int(settings.get("slow_after_seconds") or 0),
                host=str(settings.get("host") or ""),
            )
        except sqlite3.Error as exc:
            raise UserError(
                f"The state file {state_file} cannot be read ({exc}); try again in a moment."
            ) from None
        return render(history, width)

    if ctx.args.png:
        target = Path(ctx.args.png)
        if target.is_dir():
            raise UserError(f"{target} is a folder; give a file name such as history.png.")
        if not target.parent.is_dir():
            raise UserError(
                f"The folder {target.parent} does not exist; create it or choose another."
            )
        image = picture()
        data = io.BytesIO()
        image.save(data, format="PNG")
        try:
            write_atomically(target, data.getvalue())
        except OSError as exc:
            raise UserError(
                f"Could not write {target} ({exc.strerror or exc}); choose a folder you can "
                "write to."
            ) from None
        answer(f"Wrote the ingestion lag of the last 24 h to {target}.", ok=True)
        return EXIT_OK
    return _show(picture)


def _settings_in_use(ctx: Context) -> dict[str, Any]:
    """The host and slow threshold of the running app (its overrides too), else the file's."""
    running = running_settings(ctx)
    if running is None:
        settings = ctx.loaded.settings
        return {"host": settings.host, "slow_after_seconds": settings.ingestion.slow_after_seconds}
    ingestion = running.get("ingestion") or {}
    return {
        "host": running.get("host"),
        "slow_after_seconds": ingestion.get(
            "slow_after_seconds", IngestionSettings().slow_after_seconds
        ),
    }


def _show(picture: Callable[[int], Image]) -> int:
    from heartbeat_tray.system.display import NoDisplay

    try:
        from heartbeat_tray.dialog.history_window import run_history_window
    except ImportError as exc:  # a Python without Tk, or Pillow without ImageTk
        raise UserError(
            f"The History window needs Tk ({exc}); use 'heartbeat-tray history --png FILE'."
        ) from None
    try:
        return run_history_window(picture)
    except NoDisplay as exc:
        raise UserError(str(exc)) from None
