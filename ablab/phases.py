"""Timestamps of the driver's phases, for benchmarks/overhead.py.

With ABLAB_PHASES=<file> set, `mark(name)` appends one JSON line {"phase", "t"} to that
file (time.time(), the clock of the trial records); without it, it does nothing.
"""

from __future__ import annotations

import json
import os
import time

ENV = "ABLAB_PHASES"


def mark(name: str) -> None:
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"phase": name, "t": round(time.time(), 3)}) + "\n")
