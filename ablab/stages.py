"""Shared, expensive stages computed once: content-addressed, built by one process.

A stage (a pool of pre-trained models, a trained tiny LM, a set of samples) is identified
by a hash of its name, its config and the stages it was built from. The first trial that
asks builds it under a file lock into a temporary folder and renames it into place; the
others wait on the lock and reuse it. Written by hand because no dependency of ours does
this with cross-process safety (functools/joblib caches are per process or unlocked).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from filelock import FileLock, Timeout

from ablab.configs import to_dict

COMPLETE = "stage.json"


class StageRequest(NamedTuple):
    """One stage a trial needs: its name, config, builder and input stages."""

    name: str
    config: Any
    build: Callable[[Path], None]
    inputs: Mapping[str, Path | str] | None = None


def stage_key(name: str, config: Any, inputs: Mapping[str, Path | str] | None = None) -> str:
    payload = {
        "stage": name,
        "config": to_dict(config),
        # an input stage's folder name is its own content hash
        "inputs": {k: Path(v).name for k, v in sorted((inputs or {}).items())},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class StageCache:
    """Stages under `root/<name>/<hash>/`; a finished stage holds `stage.json`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, name: str, config: Any, inputs: Mapping[str, Path | str] | None = None) -> Path:
        return self.root / name / stage_key(name, config, inputs)

    def exists(self, name: str, config: Any, inputs=None) -> bool:
        return (self.path(name, config, inputs) / COMPLETE).exists()

    def get_or_build(
        self,
        name: str,
        config: Any,
        build: Callable[[Path], None],
        inputs: Mapping[str, Path | str] | None = None,
        log: Callable[[str], None] = lambda msg: None,
    ) -> Path:
        """The stage's folder, built by `build(folder)` unless it is there already."""
        return self.get_or_build_many([StageRequest(name, config, build, inputs)], log)[0]

    def get_or_build_many(
        self, requests: Sequence[StageRequest], log: Callable[[str], None] = lambda msg: None
    ) -> list[Path]:
        """The folders of several stages, in order. A stage another process is building is
        skipped for one that nobody is, so two trials that start together build different
        stages side by side instead of one waiting on the other's lock; only when every
        missing stage is being built elsewhere does this wait."""
        finals = [self.path(r.name, r.config, r.inputs) for r in requests]
        pending = [i for i, f in enumerate(finals) if not (f / COMPLETE).exists()]
        while pending:
            for i in pending:
                finals[i].parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(finals[i]) + ".lock", timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue  # being built by another process: try the next one
                with lock:
                    self._build(finals[i], requests[i], log)
                pending.remove(i)
                break
            else:  # all of them are being built elsewhere: wait for the first
                i = pending.pop(0)
                with FileLock(str(finals[i]) + ".lock"):
                    self._build(finals[i], requests[i], log)
        return finals

    @staticmethod
    def _build(final: Path, request: StageRequest, log: Callable[[str], None]) -> None:
        """Build one stage into `final`; the caller holds its lock."""
        if (final / COMPLETE).exists():  # another process built it while we waited
            return
        name, config, build, inputs = request
        tmp = final.parent / f"{final.name}.building-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        log(f"building stage {name} ({final.name})")
        start = time.time()
        try:
            build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest = {
            "stage": name,
            "key": final.name,
            "config": to_dict(config),
            "inputs": {k: str(v) for k, v in (inputs or {}).items()},
            "built_seconds": round(time.time() - start, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        (tmp / COMPLETE).write_text(json.dumps(manifest, indent=2, default=str))
        if final.exists():  # a half-built leftover from a killed build
            shutil.rmtree(final)
        os.replace(tmp, final)
        log(f"built stage {name} in {manifest['built_seconds']:.1f}s")
