"""`ablab ui`: the MLflow UI on a study's tracking store, opened at the study's runs view.

The view (columns, grouping by arm) is saved in the experiment, where the MLflow UI
restores it from the URL's `viewStateShareKey`; see ablab.tracking.runs_view.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ablab.errors import UserError
from ablab.records import StudyPaths, read_study_file

START_TIMEOUT_S = 180  # the MLflow server imports a lot; a busy 2-core machine takes a while


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # the server binds with SO_REUSEADDR too: a port in TIME_WAIT is free for it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mlflow_server_env() -> dict[str, str]:
    """The environment for an MLflow server that ablab starts: without MLflow's job runners
    (GenAI jobs, trace roll-ups; ablab uses none). With them, MLflow 3 starts eight more
    processes beside the server: 1.8 GB and 16 s of CPU for nothing. A user's own setting
    of MLFLOW_SERVER_ENABLE_JOB_EXECUTION wins."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def study_url(paths: StudyPaths, base: str) -> str:
    """The runs view of the study, saved (again) in its experiment so the URL resolves."""
    from ablab.analysis import load_study_of
    from ablab.tracking import Tracker, arms_view, runs_url

    record = read_study_file(paths)
    tracker = Tracker(record["tracking_uri"], record["experiment"])
    tracker.save_view(record["parent_run_id"], arms_view(load_study_of(paths), record["parent_run_id"]))
    return runs_url(base, tracker.experiment_id, record["parent_run_id"])


def serve(paths: StudyPaths, host: str, port: int, open_browser: bool = False) -> int:
    record = read_study_file(paths)
    uri = record["tracking_uri"]
    if uri.startswith(("http://", "https://")):  # a tracking server already serves the UI
        url = study_url(paths, uri)
        print(f"this study tracks to the MLflow server {uri}; its runs, grouped by arm:\n{url}", flush=True)
        _open(url, open_browser)
        return 0
    if not port_free(host, port):
        raise UserError(f"port {port} on {host} is already in use", key="--port", value=port,
                        hint=f"stop what listens there, or pick another port: --port {free_port(host)} is free now")
    base = f"http://{host}:{port}"
    url = study_url(paths, base)
    log = paths.dir / "mlflow-ui.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    print(f"starting the MLflow UI for {paths.name} on {base} (log: {log}) ...", flush=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(mlflow), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
             "--workers", "1"],  # one user: more workers only slow the start
            stdout=out, stderr=subprocess.STDOUT, env=mlflow_server_env(),
        )
    # a `kill` of this command stops the server it started, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if not _wait_healthy(base, proc):
            tail = log.read_text().strip().splitlines()[-5:]
            raise UserError(f"the MLflow UI did not start on {base}", key="--port", value=port,
                            hint="its log ends with: " + " / ".join(tail) if tail else None)
        print(f"runs of {paths.name}, grouped by arm (Ctrl-C to stop):\n{url}", flush=True)
        _open(url, open_browser)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()  # the server this command started, nothing else
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def _wait_healthy(base: str, proc: subprocess.Popen) -> bool:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _open(url: str, wanted: bool) -> None:
    if wanted:
        import webbrowser

        if not webbrowser.open(url):
            print("no web browser found here: open the URL above yourself", file=sys.stderr)
