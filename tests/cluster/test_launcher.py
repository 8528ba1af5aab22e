"""`ray up` of the shipped cluster-local.yaml on this machine, then a study as a user submits it.

The node is 127.0.0.1 reached over SSH as a throw-away user (tests/cluster/node.py); the
cluster file is the shipped one with only the addresses and ports, the SSH user and key
and the shared folder changed. Setup runs `make setup` from nothing but the synced tree.
One node only: a second one would share this machine's file system and process table
under the same user (Ray's local provider has one ssh_user), so its `ray stop` would stop
the head; a worker in a network namespace would need its own mount and PID namespaces too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.ablab.helpers import free_port
from tests.conftest import REPO

from . import node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a user and runs sshd: needs root"),
]

# A loopback address of the test's own: Ray swaps 127.0.0.1 for the machine's network
# address, and other Ray instances on this machine use the usual ports there.
HEAD = f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 2}"


def derive_config(shipped: dict, *, user: node.NodeUser, key: Path, ssh_port: int, shared: Path,
                  ports: dict[str, int]) -> dict:
    """The shipped local cluster file, with this machine's address, user, key, ports and shared folder."""
    cfg = json.loads(json.dumps(shipped))
    cfg["cluster_name"] = f"ablab-{user.name}"  # the launcher keeps per-cluster state in /tmp
    cfg["provider"].update(head_ip=HEAD, worker_ips=[])
    cfg["min_workers"] = cfg["max_workers"] = 0
    cfg["auth"] = {"ssh_user": user.name, "ssh_private_key": str(key),
                   "ssh_proxy_command": f"nc %h {ssh_port}"}  # the launcher's SSH has no port option
    (synced,) = cfg["file_mounts"].values()
    cfg["file_mounts"] = {str(user.home / "ablab"): synced}
    swaps = {"/mnt/shared": str(shared), **{f"{k}={v}": f"{k}={ports[k]}" for k, v in
                                           (("RAY_PORT", 6379), ("DASHBOARD_PORT", 8265), ("MLFLOW_PORT", 5000))}}
    for field in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        commands = []
        for command in cfg[field]:
            for old, new in swaps.items():
                command = command.replace(old, new)
            commands.append(command)
        cfg[field] = commands
    return cfg


def launcher(*args: str, log: Path, timeout: float) -> subprocess.CompletedProcess:
    """A `ray` command of the launcher, run from the repository as a user would; output to `log`."""
    with log.open("a") as out:
        out.write(f"\n$ ray {' '.join(args)}\n")
        out.flush()
        return subprocess.run([str(Path(sys.executable).with_name("ray")), *args], cwd=REPO,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def test_ray_up_submit_and_down_on_this_machine(tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobStatus, JobSubmissionClient

    node.ensure_debian_packages()
    log = tmp_path / "launcher.log"
    ports = {"RAY_PORT": free_port(), "DASHBOARD_PORT": free_port(), "MLFLOW_PORT": free_port()}
    ssh_port, forwarded = free_port(), free_port()
    timings = {}
    with node.throwaway_user() as user:
        shared = node.shared_folder(user)
        try:
            (user.home / ".config" / "pip").mkdir(parents=True)
            (user.home / ".config" / "pip" / "pip.conf").write_text(node.pip_config_for_node())
            subprocess.run(["chown", "-R", f"{user.name}:", str(user.home / ".config")], check=True)
            key = node.authorize_key(user, tmp_path)
            shipped = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
            cfg = derive_config(shipped, user=user, key=key, ssh_port=ssh_port, shared=shared, ports=ports)
            cfg_file = tmp_path / "cluster-local.yaml"
            cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))

            with node.sshd(user, HEAD, ssh_port, tmp_path):
                start = time.time()
                up = launcher("up", "-y", "--no-config-cache", str(cfg_file), log=log, timeout=2400)
                timings["ray up"] = time.time() - start
                assert up.returncode == 0, f"ray up failed:\n{tail(log)}"
                try:
                    dashboard = subprocess.Popen(
                        [str(Path(sys.executable).with_name("ray")), "dashboard", "-p", str(forwarded),
                         "--remote-port", str(ports["DASHBOARD_PORT"]), str(cfg_file)],
                        cwd=REPO, stdout=log.open("a"), stderr=subprocess.STDOUT)
                    try:
                        address = f"http://127.0.0.1:{forwarded}"
                        deadline = time.time() + 180
                        while not node.answers(address + "/api/version"):
                            assert time.time() < deadline and dashboard.poll() is None, tail(log)
                            time.sleep(2)
                        start = time.time()
                        submit = launcher(
                            "job", "submit", "--address", address, "--working-dir", ".", "--",
                            "ablab", "run", "sweeps/quickstart.yaml", "--set", "train.epochs=2",
                            "--set", "seeds=1", "--no-live", log=log, timeout=1800)
                        timings["ray job submit"] = time.time() - start
                        jobs = JobSubmissionClient(address).list_jobs()
                        assert [j.status for j in jobs] == [JobStatus.SUCCEEDED], tail(log)
                        assert submit.returncode == 0, tail(log)
                    finally:
                        dashboard.terminate()
                        dashboard.wait(timeout=20)

                    # The job's MLflow is the head's server, reached over HTTP.
                    tracking = f"http://{HEAD}:{ports['MLFLOW_PORT']}"
                    study_dir = shared / "ablab_results" / "quickstart"
                    record = json.loads((study_dir / "study.json").read_text())
                    assert record["tracking_uri"] == tracking
                    client = MlflowClient(tracking)
                    exp = client.get_experiment_by_name(record["experiment"])
                    runs = client.search_runs([exp.experiment_id], max_results=100)
                    parents = [r for r in runs if r.data.tags.get("ablab.role") == "study"]
                    assert len(parents) == 1
                    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
                    assert len(children) == 7  # 7 arms x 1 seed
                    assert all(c.data.tags.get("ablab.state") == "finished" for c in children)

                    # Results in the shared folder, MLflow's store beside them, none in the study folder.
                    assert len(list((study_dir / "trials").glob("*.jsonl"))) == 7
                    assert (study_dir / "report" / "report.md").is_file()
                    assert (shared / "mlflow.db").is_file() and not (study_dir / "mlflow.db").exists()
                finally:
                    start = time.time()
                    down = launcher("down", "-y", str(cfg_file), log=log, timeout=600)
                    timings["ray down"] = time.time() - start
                assert down.returncode == 0, f"ray down failed:\n{tail(log)}"
                ray_left = [cmd for cmd in map(node.cmdline, node.pids_of(user.uid))
                            if "raylet" in cmd or "gcs_server" in cmd]
                assert not ray_left, f"ray down left Ray running on the node: {ray_left}"
        finally:
            node.remove_tree(shared)
            for state in Path("/tmp/ray").glob(f"cluster-ablab-{user.name}.*"):
                state.unlink()  # the launcher's own record of this cluster
    print("launcher timings (s):", {k: round(v) for k, v in timings.items()})
