"""Samples drawn through a vLLM server are cached by what determines them, not by where the
server is: the same model served again on another port (started with the README's
command, ``benchmarks/vllm_cpu.py serve``) reuses the samples stage and gets no request.
The token counts come from the server's token ids, exact."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from ablab import trial
from benchmarks.vllm_cpu import REPO, free_port, stop_server, wait_until_up
from core.reasoning.experiment import ExperimentConfig, ModelsConfig, resolve_models, samples_stage
from core.reasoning.pipeline import Backends, sample_metrics
from core.reasoning.sampling import SamplingConfig
from core.reasoning.tasks import ArithConfig
from core.reasoning.zoo import ZooConfig
from tests.vllm.conftest import EAGER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _config(model_dir, url: str) -> ExperimentConfig:
    return ExperimentConfig(
        zoo=ZooConfig(task=ArithConfig(steps=2, digits=1)),
        models=ModelsConfig(str(model_dir), str(model_dir)),
        sampling=SamplingConfig(n_problems=4, s_se=2, max_new_tokens=12, backend="openai",
                                base_url=url))


def _samples(cfg: ExperimentConfig):
    models = resolve_models(cfg, trial.stage, "cpu")
    with Backends(cfg.seeded("sampling"), "cpu") as backends:
        return samples_stage(cfg, "wc", models, trial.stage, backends)[0]


def _completions(log) -> int:
    return log.read_text().count("POST /v1/completions")


def test_samples_stage_is_reused_when_the_server_moves(vllm_served, tiny_llama, tmp_path):
    # first: the session's server (the tiny Llama, --seed 0), shared with test_vllm_cpu.py
    root = tmp_path / "root"
    second_log = tmp_path / "second.log"
    asked_before = _completions(vllm_served.log)
    with trial.local(root):
        first = _samples(_config(tiny_llama, vllm_served.url))
    assert _completions(vllm_served.log) - asked_before == 4  # one request per problem
    # exact counts: the server's token ids, not usage split over the n choices
    m = sample_metrics(first)
    assert m["data/tokens_estimated"] == 0.0 and m["data/tokens"] > 0
    assert m["data/coverage:n"] == 4

    port2 = free_port()
    with open(second_log, "w") as log:  # the README's command, in the foreground there
        proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "vllm_cpu.py"), "serve",
                                 str(tiny_llama), "--port", str(port2), "--", "--seed", "0", *EAGER],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(proc, port2, second_log)
        assert "--max-model-len 256" in second_log.read_text()  # the model's own limit
        with trial.local(root):
            cfg = _config(tiny_llama, f"http://127.0.0.1:{port2}/v1")
            again = _samples(cfg)
            assert _completions(second_log) == 0  # reused: nothing was asked of the server
            assert again.groups == first.groups and again.tokens == first.tokens
            # what does determine the samples still does
            _samples(replace(cfg, sampling=replace(cfg.sampling, temperature=1.0)))
            assert _completions(second_log) == 4
    finally:
        stop_server(proc)
    assert sum(d.is_dir() for d in (root / "stages" / "samples").iterdir()) == 2
