"""On a machine with a GPU: `resources.gpu` reaches the trial, which trains on CUDA."""

from __future__ import annotations

import pytest
import torch

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import study_paths

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]


def test_quickstart_trial_gets_a_gpu(write_sweep):
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    sweep = write_sweep("""
        name: gpu
        trainable: quickstart
        base: {train: {epochs: 2}, device: cuda}
        seeds: 1
        metric: val/acc
        mode: max
        resources: {cpu: 1, gpu: 1}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0
    (rec,) = load_records(study_paths(sweep, "gpu"))
    assert rec.state == TrialState.FINISHED and rec.steps == [1, 2]
