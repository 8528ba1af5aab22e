"""Shared fixtures: one real local Ray instance (2 CPUs) for the session, study folders in tmp."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no auth token for throw-away test clusters
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def write_sweep(tmp_path):
    """Write a sweep file whose storage is in tmp_path; returns its path."""

    def write(text: str, name: str = "sweep.yaml") -> Path:
        body = textwrap.dedent(text)
        if "storage:" not in body:
            body += f"\nstorage: {tmp_path / 'results'}\n"
        path = tmp_path / name
        path.write_text(body)
        return path

    return write


@pytest.fixture
def mlflow_server(tmp_path):
    from tests.ablab.helpers import free_port

    port = free_port()
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


