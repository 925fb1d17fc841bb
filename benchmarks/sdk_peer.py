"""The obvious alternative to Heartbeat Tray: a loop around the official posthog-python SDK.

python benchmarks/sdk_peer.py loop HOST INTERVAL      capture + flush every INTERVAL s
python benchmarks/sdk_peer.py sleep-loop HOST INTERVAL N [no-flush]   N beats, a sleep between
python benchmarks/sdk_peer.py backlog HOST N           send N events, then exit
python benchmarks/sdk_peer.py once HOST                one event, then exit
"""

from __future__ import annotations

import sys
import time

from posthog import Posthog

KEY = "phc_benchmarkPeerKey0123456789abcdefghijklmn"


def main() -> None:
    mode, host = sys.argv[1], sys.argv[2]
    client = Posthog(KEY, host=host)
    if mode == "loop":
        interval = float(sys.argv[3])
        while True:
            client.capture("heartbeat", distinct_id="sdk-peer", properties={"peer": True})
            client.flush()
            time.sleep(interval)
    elif mode == "sleep-loop":
        # "no-flush": as the SDK's documentation shows it, capture() queues and the SDK's
        # background thread sends; else each beat is flushed before the sleep.
        interval, beats = float(sys.argv[3]), int(sys.argv[4])
        flush = sys.argv[5:6] != ["no-flush"]
        for n in range(1, beats + 1):
            client.capture("heartbeat", distinct_id="sdk-peer", properties={"sequence": n})
            if flush:
                client.flush()
            time.sleep(interval)
    elif mode == "backlog":
        for n in range(1, int(sys.argv[3]) + 1):
            client.capture("heartbeat", distinct_id="sdk-peer", properties={"sequence": n})
        client.flush()
    elif mode == "once":
        client.capture("heartbeat", distinct_id="sdk-peer")
        client.flush()
    client.shutdown()


if __name__ == "__main__":
    main()
