import sys

from heartbeat_tray.tray import menu_window


def _main() -> int:
    if sys.argv[1:2] == [menu_window.COMMAND]:
        # the tray's menu process: Tk and the standard library only, drawn in about 70 ms
        return menu_window.main(sys.argv[2:])
    from heartbeat_tray.cli import main

    return main()


sys.exit(_main())
