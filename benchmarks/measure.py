"""Runs one command and prints its wall time and peak RSS as JSON.

A small launcher of its own, because a child forked straight from the (large) benchmark process
would report the parent's memory as its own peak: ru_maxrss keeps the pre-exec high-water mark.

    python benchmarks/measure.py CMD [ARGS...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

started = time.monotonic()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(
    json.dumps(
        {
            "wall": time.monotonic() - started,
            "peak_mib": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status),
        }
    )
)
