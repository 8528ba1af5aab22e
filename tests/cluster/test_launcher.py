"""`ray up` of the shipped cluster-local.yaml on this machine, then a study as a user submits it.

Two nodes, both this machine, reached over SSH as one throw-away user (tests/cluster/node.py):
the head on this end of a veth pair, the worker in a network namespace (and a PID namespace,
so its `ray stop` sees only its own processes) at the other end. They share the home folder,
as nodes with an NFS home do: the worker's `make setup` finds the head's install done. The
cluster file is the shipped one with only the addresses, ports, SSH user and key and the
shared folder changed. The head's setup runs `make setup` in the synced tree, which finds the
environment in place, as on nodes whose image has it (`node.seed_venv`: this test's own
venv, hard-linked): unpacking it again was most of this test's time, and CI's own
`make setup` builds one from nothing on every run.
"""

from __future__ import annotations

import json
import os
import shutil
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
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a user, a network namespace and sshds: needs root"),
]

RAY = str(Path(sys.executable).with_name("ray"))
SHIPPED_PORTS = {"RAY_PORT": 6379, "DASHBOARD_PORT": 8265, "AGENT_PORT": 52365, "MLFLOW_PORT": 5000}


def derive_config(shipped: dict, *, user: node.NodeUser, key: Path, head: str, worker: str, ssh_port: int,
                  shared: Path, ports: dict[str, int]) -> dict:
    """The shipped local cluster file with this machine's addresses, user, key, ports and shared folder."""
    cfg = json.loads(json.dumps(shipped))
    cfg["cluster_name"] = f"ablab-{user.name}"  # the launcher keeps per-cluster state in /tmp/ray
    cfg["provider"].update(head_ip=head, worker_ips=[worker])
    cfg["min_workers"] = cfg["max_workers"] = 1
    cfg["auth"] = {"ssh_user": user.name, "ssh_private_key": str(key),
                   "ssh_proxy_command": f"nc %h {ssh_port}"}  # the launcher's SSH has no port option
    (synced,) = cfg["file_mounts"].values()
    cfg["file_mounts"] = {str(user.home / "ablab"): synced}
    swaps = {"/mnt/shared": str(shared), **{f"{k}={v}": f"{k}={ports[k]}" for k, v in SHIPPED_PORTS.items()}}
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
        return subprocess.run([RAY, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def wait_for(what: str, ready, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s\n{tail(log)}"
        time.sleep(2)


def alive_nodes(address: str) -> dict[str, str]:
    """node IP -> Ray node id of every live node."""
    from ray.util.state import list_nodes

    try:
        return {n.node_ip: n.node_id for n in list_nodes(address=address, filters=[("state", "=", "ALIVE")])}
    except Exception:  # the state API answers only once the head is fully up
        return {}


def test_ray_up_submit_and_down_on_this_machine(tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobStatus, JobSubmissionClient

    node.ensure_debian_packages()
    log = tmp_path / "launcher.log"
    ports = {name: free_port() for name in SHIPPED_PORTS}
    ssh_port, forwarded = free_port(), free_port()
    timings = {}
    with node.throwaway_user() as user, node.namespace_link() as link:
        head, worker = link.here, link.there
        shared = node.shared_folder(user)
        try:
            pip_conf = user.home / ".config" / "pip" / "pip.conf"
            pip_conf.parent.mkdir(parents=True)
            pip_conf.write_text(node.pip_config_for_node())
            subprocess.run(["chown", "-R", f"{user.name}:", str(user.home / ".config")], check=True)
            key = node.authorize_key(user, tmp_path)
            timings["venv seeded"] = node.seed_venv(user, Path(sys.prefix), REPO)
            shipped = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
            cfg = derive_config(shipped, user=user, key=key, head=head, worker=worker, ssh_port=ssh_port,
                                shared=shared, ports=ports)
            cfg_file = tmp_path / "cluster-local.yaml"
            cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))

            with node.sshd(user, head, ssh_port, tmp_path), \
                    node.sshd(user, worker, ssh_port, tmp_path, namespace=link.namespace):
                start = time.time()
                up = launcher("up", "-y", "--no-config-cache", str(cfg_file), log=log, timeout=2400)
                timings["ray up"] = time.time() - start
                assert up.returncode == 0, f"ray up failed:\n{tail(log)}"
                dashboard = subprocess.Popen(
                    [RAY, "dashboard", "-p", str(forwarded), "--remote-port", str(ports["DASHBOARD_PORT"]),
                     str(cfg_file)], cwd=REPO, stdout=log.open("a"), stderr=subprocess.STDOUT)
                try:
                    address = f"http://127.0.0.1:{forwarded}"
                    wait_for("the dashboard through `ray dashboard`", lambda: node.answers(address + "/api/version"),
                             180, log)
                    # the head's autoscaler starts the worker after `ray up` returns
                    wait_for("the worker joining", lambda: set(alive_nodes(address)) == {head, worker}, 900, log)
                    node_ids = set(alive_nodes(address).values())
                    timings["worker up"] = time.time() - start
                    start = time.time()
                    # The head's job agent registers a little after the dashboard answers (later on
                    # a loaded machine); Ray then refuses the job with "No available agent ... please
                    # try again later", and a user tries again: so does the test, for up to 3 minutes.
                    for attempt in range(18):
                        seen = len(log.read_text())
                        submit = launcher(
                            "job", "submit", "--address", address, "--working-dir", ".", "--",
                            "ablab", "run", "sweeps/quickstart.yaml", "--set", "train.epochs=2",
                            "--set", "seeds=1", "--no-live", log=log, timeout=1800)
                        if submit.returncode == 0 or "No available agent" not in log.read_text()[seen:]:
                            break
                        time.sleep(10)
                    timings["ray job submit"] = time.time() - start
                    jobs = JobSubmissionClient(address).list_jobs()
                    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED], tail(log)
                    assert submit.returncode == 0, tail(log)
                    # the head's MLflow server runs without MLflow's job runners (cluster-node.sh)
                    runners = [c for c in map(node.cmdline, node.pids_of(user.uid)) if "huey" in c]
                    assert not runners, runners
                finally:
                    dashboard.terminate()
                    dashboard.wait(timeout=20)
                    start = time.time()
                    down = launcher("down", "-y", str(cfg_file), log=log, timeout=600)
                    timings["ray down"] = time.time() - start

                # The job tracked to the head's MLflow server, queried over HTTP.
                tracking = f"http://{head}:{ports['MLFLOW_PORT']}"
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

                # Results in the shared folder, MLflow's store beside them, none in the study folder;
                # trials ran on both nodes.
                records = list((study_dir / "trials").glob("*.jsonl"))
                assert len(records) == 7
                assert (study_dir / "report" / "report.md").is_file()
                assert (shared / "mlflow.db").is_file() and not (study_dir / "mlflow.db").exists()
                events = [json.loads(line) for r in records for line in r.read_text().splitlines()]
                assert {e["node"] for e in events if e["event"] == "result"} == node_ids

                assert down.returncode == 0, f"ray down failed:\n{tail(log)}"
                ray_left = [cmd for cmd in map(node.cmdline, node.pids_of(user.uid))
                            if "raylet" in cmd or "gcs_server" in cmd]
                assert not ray_left, f"ray down left Ray running: {ray_left}"
        finally:
            for logs in user.home.glob("tmp-*/ray/session_latest/logs"):  # each node's, for a failure's reader
                shutil.copytree(logs, tmp_path / f"logs-{logs.parents[2].name}", dirs_exist_ok=True,
                                ignore_dangling_symlinks=True)
            node.remove_tree(shared)
            for state in Path("/tmp/ray").glob(f"cluster-ablab-{user.name}.*"):
                state.unlink()  # the launcher's own record of this cluster
    print("launcher timings (s):", {k: round(v) for k, v in timings.items()})
