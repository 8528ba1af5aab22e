"""The whole experiment on a toy zoo: stages built once and shared, every filter, resume."""

from dataclasses import replace

import pytest

from core.reasoning.evaluate import EvalConfig
from core.reasoning.experiment import ExperimentConfig, local_stage, run
from core.reasoning.filters import FilterConfig
from core.reasoning.models import TinyLMConfig, load_causal_lm, num_params
from core.reasoning.pipeline import SamplingConfig
from core.reasoning.rewards import RMConfig
from core.reasoning.sft import SFTConfig
from core.reasoning.tasks import ArithConfig
from core.reasoning.zoo import ZooConfig, read_zoo

TOY = ExperimentConfig(
    zoo=ZooConfig(task=ArithConfig(steps=2, digits=1), wc=TinyLMConfig(32, 1), se=TinyLMConfig(64, 1),
                  train=SFTConfig(max_steps=30, eval_every=15, batch_size=16, warmup_steps=5,
                                  max_new_tokens=12), val_size=10),
    sampling=SamplingConfig(n_problems=8, s_se=1, max_new_tokens=12),
    rm=RMConfig(steps=5, batch_size=8, n_problems=4, samples_per_problem=2),
    sft=SFTConfig(max_steps=4, eval_every=2, batch_size=8, warmup_steps=1, max_new_tokens=12),
    eval=EvalConfig(n_problems=8, ks=(1, 2), max_new_tokens=12),
    val_size=8,
)


def test_toy_experiment_every_filter_shares_stages(tmp_path):
    stage = local_stage(tmp_path)
    for filt in ["final_answer", "process", "orm", "none"]:
        cfg = replace(TOY, filter=FilterConfig(method=filt, top_k=1))
        out = list(run(cfg, stage, device="cpu", log=lambda *_: None))
        step0, last = out[0][1], out[-1][1]
        assert 0.0 <= step0["data/coverage"] <= 1.0 and "filter/kept" in step0
        assert {"test/pass_at_1", "test/maj_at_2", "test/pass_at_1_sampled"} <= set(last)
        if filt == "none":
            assert step0["filter/kept"] == step0["data/samples"]
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == ["orm", "samples", "zoo"]  # one zoo, one sample set, one verifier
    zoo = read_zoo(next(tmp_path.glob("zoo-*")))
    assert zoo["param_ratio"] >= 3
    # the zoo's models are plain HF directories
    model, _ = load_causal_lm(next(tmp_path.glob("zoo-*")) / "se")
    assert num_params(model) == zoo["models"]["se"]["params"]
    # weak-to-strong samples WC at the compute-matched budget
    w2s = next(iter(run(TOY, stage, device="cpu", log=lambda *_: None)))[1]
    assert w2s["data/samples_per_problem"] == round(zoo["param_ratio"] * TOY.sampling.s_se)


def test_toy_experiment_resumes_from_state(tmp_path):
    stage = local_stage(tmp_path)
    full = list(run(TOY, stage, device="cpu", log=lambda *_: None))
    first_two = []
    for item in run(TOY, stage, device="cpu", log=lambda *_: None):
        first_two.append(item)
        if len(first_two) == 2:
            break
    resumed = list(run(TOY, stage, state=first_two[-1][2], device="cpu", log=lambda *_: None))
    assert [s for s, _, _ in first_two + resumed] == [s for s, _, _ in full]
    assert resumed[-1][1]["test/pass_at_1"] == pytest.approx(full[-1][1]["test/pass_at_1"])


def test_one_backend_per_generator_serves_samples_and_verifier(tmp_path, monkeypatch):
    """The trial's sampling backend (a vLLM engine on a GPU) is built once and serves both
    the training samples and the verifier's samples."""
    import core.reasoning.sampling as sampling

    built = []
    real = sampling.make_backend

    def counting(name, model_dir, **kw):
        built.append((name, str(model_dir)))
        return real(name, model_dir, **kw)

    monkeypatch.setattr(sampling, "make_backend", counting)
    cfg = replace(TOY, filter=FilterConfig(method="orm", top_k=1))
    list(run(cfg, local_stage(tmp_path), device="cpu", log=lambda *_: None))
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == ["orm", "samples", "zoo"]  # both sampling stages were built here
    assert len(built) == 1 and built[0][1].endswith("/wc"), built
