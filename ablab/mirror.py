"""MLflow calls on one thread of their own, in order, behind the trial records.

The trial records are the study's truth and are written by the driver as events arrive;
MLflow mirrors them. Opening MLflow costs seconds of the driver's Python time (importing
it alone is 3 s of CPU on this kind of machine), and while a thread imports it the GIL
and the import lock hold back Ray Tune's controller, so the first trials would wait for
it. So the mirror opens only once the first trials have started (`start`), and every
MLflow call the callbacks make is queued behind the opening and run on the same thread:
one thread keeps SQLite's single writer, and the order of a trial's calls.

A call that fails (after the tracker's own retries) stops the mirror: the calls after it
are skipped, the trials go on (their records are complete), and `close` raises the
error, so the run ends with it; the next run of the study mends MLflow from the records.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Mirror(Generic[T]):
    def __init__(self, open_: Callable[[], T]):
        self._open = open_
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ablab-mlflow")
        self._lock = threading.Lock()
        self._started = False
        self._pending: list[Callable[[T], object]] = []  # calls made before `start`
        self._opened: T | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Open MLflow now, then make the calls queued so far (once; later calls do nothing)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._pool.submit(self._run, None)
            for call in self._pending:
                self._pool.submit(self._run, call)
            self._pending.clear()

    def submit(self, call: Callable[[T], object]) -> None:
        """`call(opened)` on the mirror's thread, after the opening and every earlier call."""
        with self._lock:
            if not self._started:
                self._pending.append(call)
                return
            self._pool.submit(self._run, call)

    def _run(self, call: Callable[[T], object] | None) -> None:
        """On the mirror's one thread: the opening (call None), or a call."""
        if self._error is not None:
            return
        try:
            if call is None:
                self._opened = self._open()
            else:
                call(self._opened)
        except BaseException as exc:  # noqa: BLE001 - kept, and raised by close()
            self._error = exc
            print(f"warning: MLflow stopped mirroring the study ({type(exc).__name__}: {exc}); the trials go "
                  "on and their records are complete; the next run of the study mends MLflow from them",
                  file=sys.stderr)

    def close(self) -> T:
        """Opens MLflow if nothing did yet, waits for every queued call; returns what the
        opening returned, or raises the first error."""
        self.start()
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error
        return self._opened
