"""``tray`` and ``settings``: the desktop front ends, imported only when asked for."""

from __future__ import annotations

from heartbeat_tray.cli.context import Context, UserError


def cmd_tray(ctx: Context) -> int:
    from heartbeat_tray.system.display import NoDisplay
    from heartbeat_tray.tray.app import run_tray

    ctx.require_state_folder()
    try:
        return run_tray(ctx.paths, ctx.loaded, ctx.overrides, autostart=ctx.args.autostart)
    except NoDisplay as exc:
        raise UserError(str(exc)) from None


def cmd_settings(ctx: Context) -> int:
    from heartbeat_tray.system.display import NoDisplay

    try:
        from heartbeat_tray.dialog.view import run_dialog
    except ImportError as exc:  # a Python built without Tk (embedded builds, no python3-tk)
        raise UserError(
            f"The settings dialog needs Tk, which this Python lacks ({exc}); use "
            "'heartbeat-tray key set' and edit the settings file instead."
        ) from None

    try:
        return run_dialog(ctx.paths)
    except NoDisplay as exc:
        raise UserError(str(exc)) from None
