import sys

from heartbeat_tray.cli import main

sys.exit(main())
