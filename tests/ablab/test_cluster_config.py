"""cluster.yaml and cluster-local.yaml pass Ray's own cluster-config validation (nothing launched)."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_cluster_file_is_valid_for_ray(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / name).read_text())
    validate_config(prepare_config(config))
    assert any("make setup" in c for c in config["setup_commands"])  # installed as the README does
    starts = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in starts and "--dashboard-host=127.0.0.1" in starts
    assert "ABLAB_STORAGE=/mnt/shared" in starts
