"""Tracking to a real `mlflow server` process on 127.0.0.1 instead of SQLite in-process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import mlflow_runs, study_paths

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(1)
        yield url
    finally:
        proc.terminate()  # exactly the process we started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
