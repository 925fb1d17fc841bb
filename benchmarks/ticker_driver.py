"""Runs Heartbeat Tray's real ticker (system clock, real HTTP client, real outbox) at an interval
the settings file does not allow (below 1 s), for the schedule-accuracy benchmark. Runs until
SIGTERM.

    python benchmarks/ticker_driver.py HOST INTERVAL STATE_DIR
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from heartbeat_tray.core.app_state import AppState  # noqa: E402
from heartbeat_tray.core.outbox import Outbox  # noqa: E402
from heartbeat_tray.core.settings import Settings  # noqa: E402
from heartbeat_tray.core.ticker import Ticker, TickerConfig  # noqa: E402
from heartbeat_tray.posthog.capture import PostHogClient  # noqa: E402

KEY = "phc_benchmarkOursKey0123456789abcdefghijklmno"


def main() -> None:
    host, interval, state_dir = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(host=host, interval_seconds=interval)  # type: ignore[arg-type]
    ticker = Ticker(
        TickerConfig(settings, "ticker-driver"),
        key_source=lambda: KEY,
        outbox=Outbox(state_dir / "outbox.sqlite3"),
        client=PostHogClient(),
        state=AppState(),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ticker.start()
    stop.wait()
    ticker.stop()


if __name__ == "__main__":
    main()
