"""Tracking to a real `mlflow server` process on 127.0.0.1 instead of SQLite in-process."""

from __future__ import annotations

import pytest

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import free_port as _free_port
from .helpers import mlflow_runs, study_paths

pytestmark = pytest.mark.slow


def test_study_tracks_to_an_mlflow_server(ray_session, mlflow_server, write_sweep):
    sweep = write_sweep(f"""
        name: served
        trainable: synthetic
        base: {{steps: 3}}
        ablations:
          - part: quality
            baseline: 0.9
            replacements: [0.5]
        seeds: 2
        metric: val/score
        mode: max
        tracking: {{uri: "{mlflow_server}", experiment: served-exp}}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0
    paths = study_paths(sweep, "served")
    assert not paths.mlflow_db.exists()  # nothing went to the SQLite default
    assert all(r.state == TrialState.FINISHED for r in load_records(paths))
    client, parents, children = mlflow_runs(paths)
    assert client.tracking_uri == mlflow_server
    assert len(parents) == 1 and len(children) == 4
    assert all(c.info.status == "FINISHED" and c.data.metrics["val/score"] > 0 for c in children)


def test_unreachable_server_refuses_to_start(write_sweep, capsys):
    port = _free_port()  # nothing listens here
    sweep = write_sweep(f"""
        name: noserver
        trainable: synthetic
        metric: val/score
        mode: max
        tracking: {{uri: "http://127.0.0.1:{port}"}}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 2
    err = capsys.readouterr().err
    assert f"tracking.uri: the MLflow tracking server at http://127.0.0.1:{port} is unreachable" in err
    assert not (study_paths(sweep, "noserver").dir / "study.json").exists()
