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
