"""cluster.yaml and cluster-local.yaml pass Ray's own cluster-config validation and share their
node commands (nothing launched; tests/cluster/test_launcher.py launches cluster-local.yaml)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import REPO

NODE_SCRIPT = REPO / "cluster-node.sh"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_cluster_file_is_valid_for_ray(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(name)
    validate_config(prepare_config(config))
    assert config["setup_commands"][-1] == "~/ablab/cluster-node.sh setup"
    (synced_to,) = config["file_mounts"]
    assert synced_to == f"/home/{config['auth']['ssh_user']}/ablab"  # the script's ~/ablab


def test_both_files_start_nodes_with_the_same_commands():
    aws, local = load("cluster.yaml"), load("cluster-local.yaml")
    for field in ("head_start_ray_commands", "worker_start_ray_commands", "rsync_exclude"):
        assert aws[field] == local[field], field
    assert aws["setup_commands"][-1] == local["setup_commands"][-1]


def test_node_script_is_executable_shell_that_installs_as_the_readme_does():
    assert os.access(NODE_SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(NODE_SCRIPT)], check=True)
    text = NODE_SCRIPT.read_text()
    assert "make setup" in text and "mlflow server" in text and "--dashboard-host=127.0.0.1" in text
    usage = subprocess.run([str(NODE_SCRIPT), "nonsense"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: cluster-node.sh setup|head|worker" in usage.stderr
