"""A real two-node Ray cluster on this machine: trials spread over both nodes; a node lost mid-study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ablab.records import TrialState, load_records

from .helpers import mlflow_runs, study_paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a second node, each 1 CPU, as separate raylets; stopped exactly (no `ray stop`).
    One cluster for the module (a start-up is seconds): the spread test leaves it as it
    found it, and the test that removes the worker comes last."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    # Cluster records its head as this machine's latest `ray start` (/tmp/ray/ray_current_cluster),
    # which `ray.init()` without an address joins: an `ablab run` of a test on the other xdist
    # worker would run its study here, and lose it when this module stops the cluster. These
    # tests pass the address themselves.
    from ray._common.utils import reset_ray_address

    reset_ray_address()
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def _run(sweep, address: str) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen([sys.executable, "-m", "ablab.cli", "run", str(sweep), "--address", address, "--no-live"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_trials_land_on_both_nodes_tracked_by_a_server(two_nodes, mlflow_server, write_sweep):
    cluster, worker = two_nodes
    sweep = write_sweep(f"""
        name: spread
        trainable: synthetic
        base: {{steps: 4, sleep_seconds: 0.5}}
        grid: {{quality: [0.5, 0.6, 0.7, 0.8]}}
        metric: val/score
        mode: max
        tracking: {{uri: "{mlflow_server}"}}
    """)
    proc = _run(sweep, cluster.address)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    records = load_records(study_paths(sweep, "spread"))
    assert all(r.state == TrialState.FINISHED for r in records)
    nodes = set().union(*(r.nodes for r in records))
    assert nodes == {cluster.head_node.node_id, worker.node_id}
    _, parents, children = mlflow_runs(study_paths(sweep, "spread"))
    assert len(parents) == 1 and len(children) == 4


def test_node_removed_mid_study_trials_rescheduled(two_nodes, write_sweep):
    cluster, worker = two_nodes
    sweep = write_sweep("""
        name: lost
        trainable: synthetic
        base: {steps: 8, sleep_seconds: 0.5}
        grid: {quality: [0.5, 0.6, 0.7]}
        metric: val/score
        mode: max
        max_failures: 3
    """)
    paths = study_paths(sweep, "lost")
    proc = _run(sweep, cluster.address)
    deadline = time.time() + 300

    def on_worker() -> bool:
        for f in paths.trials_dir.glob("*.jsonl") if paths.trials_dir.exists() else []:
            for line in f.read_text().splitlines():
                e = json.loads(line)
                if e.get("node") == worker.node_id and e["event"] == "result" and e["step"] >= 2:
                    return True
        return False

    while not on_worker() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None
    cluster.remove_node(worker, allow_graceful=False)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    records = load_records(paths)
    assert all(r.state == TrialState.FINISHED and r.steps == list(range(1, 9)) for r in records)
    assert sum(r.retries for r in records) >= 1  # the lost trial was retried on the head
    _, _, children = mlflow_runs(paths)
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
