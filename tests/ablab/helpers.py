"""Reading a finished study back: its MLflow runs and its trial records."""

from __future__ import annotations

import socket
from pathlib import Path

from ablab.recovery import study_runs
from ablab.records import StudyPaths


def study_paths(sweep: Path, name: str) -> StudyPaths:
    return StudyPaths(sweep.parent / "results", name)


def mlflow_runs(paths: StudyPaths):
    """(client, parent runs, children) of the study, from its own tracking store."""
    return study_runs(paths)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_address(ray) -> str:
    """The address of the session's Ray (the ``ray_session`` fixture), for an ``ablab run``
    subprocess to join with ``--address`` instead of starting its own Ray (seconds each).
    Tests of what a driver does with the Ray it started itself (SIGKILL of the process
    group, Ctrl-C) do not join."""
    return ray.get_runtime_context().gcs_address
