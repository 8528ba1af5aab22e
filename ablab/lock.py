"""One `ablab run` per study: a lock on the study folder, held for the whole run.

The lock is an OS file lock (`fcntl.flock`) on `run.lock`, so the kernel releases it
when the holder dies, however it dies. The file also names the holder (pid, host,
command) for the message a second run gets; a name left by a dead holder is stale and
is taken over with a message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from ablab.errors import UserError
from ablab.types import StudyPaths


@dataclass
class StudyLock:
    """A held lock; `release()` (or the holder's death) frees it."""

    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)  # a clean end leaves no name behind to take over
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def _read(path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def holder(paths: StudyPaths) -> dict[str, Any] | None:
    """Who runs the study now (pid, host, ...), or None when nobody does."""
    if not paths.lock_file.exists():
        return None
    try:
        fd = os.open(paths.lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(paths.lock_file) or {"pid": "?"}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def busy(paths: StudyPaths, who: dict[str, Any]) -> UserError:
    return UserError(
        f"study {paths.name!r} is being run by pid {who.get('pid', '?')} on {who.get('host', '?')} "
        f"(since {who.get('since', '?')})", key="name",
        hint="wait for it to end, or stop that process; two runs of one study would run every trial twice",
    )


def acquire(paths: StudyPaths, command: str) -> StudyLock:
    """Take the study's lock, or raise a UserError naming the run that holds it."""
    paths.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(3):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # a reader (`ablab status`) holds it shared for an instant; a run holds it for good
            if attempt == 2:
                os.close(fd)
                raise busy(paths, _read(paths.lock_file)) from None
            time.sleep(0.2)
    previous = _read(paths.lock_file)
    if previous.get("pid"):
        here = previous.get("host") == socket.gethostname()
        print(f"taking over the lock of pid {previous['pid']} on {previous.get('host', '?')}, which "
              f"{'is no longer running' if here else 'no longer holds it'}", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}).encode(), 0)
    return StudyLock(fd)
