"""Reading a finished study back: its MLflow runs and its trial records."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from mlflow.tracking import MlflowClient

from ablab.records import StudyPaths


def study_paths(sweep: Path, name: str) -> StudyPaths:
    return StudyPaths(sweep.parent / "results", name)


def mlflow_runs(paths: StudyPaths):
    """(parent run, children) of the study, from its own tracking store."""
    record = json.loads(paths.study_file.read_text())
    client = MlflowClient(record["tracking_uri"])
    exp = client.get_experiment_by_name(record["experiment"])
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get("ablab.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return client, parents, children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
