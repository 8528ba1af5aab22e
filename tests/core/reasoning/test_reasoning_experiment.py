"""The whole experiment on a toy zoo: stages built once and shared (the platform's stage
cache in its local mode), every filter, resume, derived seeds, the counts beside the
proportions."""

from dataclasses import replace

import pytest

from ablab import trial
from core.errors import ConfigError
from core.reasoning.evaluate import EvalConfig
from core.reasoning.experiment import (ExperimentConfig, ModelsConfig, resolve_models, run,
                                       samples_stage)
from core.reasoning.filters import FilterConfig
from core.reasoning.models import TinyLMConfig, load_causal_lm, num_params
from core.reasoning.pipeline import Backends
from core.reasoning.sampling import Generator, SamplingConfig
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


def _stages(root):
    """{stage name: number of built stages of that name} under the local trial's root."""
    return {d.name: sum(s.is_dir() for s in d.iterdir()) for d in sorted((root / "stages").iterdir())
            if d.is_dir()}


def test_toy_experiment_every_filter_shares_stages(tmp_path):
    with trial.local(tmp_path):
        for filt in ["final_answer", "process", "process_oracle", "orm", "none"]:
            cfg = replace(TOY, filter=FilterConfig(method=filt, top_k=1))
            out = list(run(cfg, trial.stage, device="cpu", log=lambda *_: None))
            step0, last = out[0][1], out[-1][1]
            assert 0.0 <= step0["data/coverage"] <= 1.0 and "filter/kept" in step0
            # every valid chain of the procedural task is one text: at most 1 per problem
            assert step0["data/diversity_valid"] <= min(1.0, step0["data/diversity"])
            assert step0["filter/diversity_valid"] <= step0["filter/diversity"]
            if filt == "process_oracle" and step0["filter/kept"]:
                assert step0["filter/fpr"] == 0.0 and step0["filter/precision"] == 1.0
            # the student and what it started from, side by side
            assert last["val/checkpoint_pass_at_1"] == step0["val/pass_at_1"]
            if step0["filter/kept"]:
                assert last["sft/beat_checkpoint"] == float(
                    last["val/best_pass_at_1"] > last["val/checkpoint_pass_at_1"])
                assert last["sft/best_step"] in (2.0, 4.0)  # an SFT evaluation, never the checkpoint
            else:  # nothing to fine-tune on: no student, and it says so
                assert last["sft/best_step"] == 0.0 and last["sft/beat_checkpoint"] == 0.0
                assert "val/best_pass_at_1" not in last
            assert {"test/pass_at_1", "test/maj_at_2", "test/pass_at_1_sampled"} <= set(last)
            if filt == "none":
                assert step0["filter/kept"] == step0["data/samples"]
            # beside each proportion, the number of examples it is a share of
            assert step0["data/coverage:n"] == TOY.sampling.n_problems
            assert step0["filter/kept_frac:n"] == step0["data/samples"]
            assert step0["val/pass_at_1:n"] == TOY.val_size
            for k in ("test/pass_at_1", "test/maj_at_2", "test/pass_at_1_sampled"):
                assert last[f"{k}:n"] == TOY.eval.n_problems, k
            assert step0["data/tokens_estimated"] == 0.0  # the hf backend counts tokens
            assert all(v == v for s in out for v in s[1].values())  # NaN never reported
        assert _stages(tmp_path) == {"orm": 1, "prm": 1, "samples": 1, "zoo": 1}  # each built once
        zoo_dir = next(d for d in (tmp_path / "stages" / "zoo").iterdir() if d.is_dir())
        zoo = read_zoo(zoo_dir)
        assert zoo["param_ratio"] >= 3
        # the zoo's models are plain HF directories
        model, _ = load_causal_lm(zoo_dir / "se")
        assert num_params(model) == zoo["models"]["se"]["params"]
        # weak-to-strong samples WC at the compute-matched budget
        w2s = next(iter(run(TOY, trial.stage, device="cpu", log=lambda *_: None)))[1]
        assert w2s["data/samples_per_problem"] == round(zoo["param_ratio"] * TOY.sampling.s_se)


def test_toy_experiment_resumes_from_state(tmp_path):
    with trial.local(tmp_path):
        _resumes(trial.stage)


def _resumes(stage):
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
    import core.reasoning.pipeline as pipeline

    built = []
    real = pipeline.make_backend

    def counting(cfg, role, model_dir, device=None):
        built.append((role, str(model_dir)))
        return real(cfg, role, model_dir, device)

    monkeypatch.setattr(pipeline, "make_backend", counting)
    cfg = replace(TOY, filter=FilterConfig(method="orm", top_k=1))
    with trial.local(tmp_path):
        list(run(cfg, trial.stage, device="cpu", log=lambda *_: None))
    assert _stages(tmp_path) == {"orm": 1, "samples": 1, "zoo": 1}  # both sampling stages built here
    assert len(built) == 1 and built[0][1].endswith("/wc"), built


def test_nested_seeds_are_derived_from_the_trial_seed_and_cannot_be_set():
    cfg = replace(TOY, seed=3)
    assert {cfg.seeded(p).seed for p in ("sampling", "rm", "sft", "eval")} == {3}
    assert cfg.sampling.seed == 0  # derived where used, never written into the config
    with pytest.raises(ConfigError, match="sampling.seed") as e:
        replace(TOY, sampling=SamplingConfig(seed=5))
    assert e.value.key == "sampling.seed"


def test_filters_need_a_task_with_the_step_labels_they_use():
    gsm8k = replace(TOY.task, kind="gsm8k", gsm8k=replace(TOY.task.gsm8k, train_path="a", test_path="b"))
    gym = replace(TOY.task, kind="reasoning_gym", gym_dataset="chain_sum")
    with pytest.raises(ConfigError, match="process_oracle needs task.kind arith, not gsm8k") as e:
        replace(TOY, task=gsm8k, filter=FilterConfig("process_oracle"))
    assert set(e.value.allowed) == {"calculator", "process", "final_answer", "orm", "none"}
    with pytest.raises(ConfigError, match="calculator needs task.kind gsm8k, not arith"):
        replace(TOY, filter=FilterConfig("calculator"))
    with pytest.raises(ConfigError, match="process needs task.kind arith or gsm8k"):
        replace(TOY, task=gym, filter=FilterConfig("process"))
    # the learned PRM trains on GSM8K's calculator labels; the calculator checks them
    for method in ("process", "calculator"):
        assert replace(TOY, task=gsm8k, filter=FilterConfig(method)).filter.method == method


def test_a_student_that_never_beats_its_checkpoint_says_so(tmp_path):
    """At learning rate 0 the fine-tuned student is its checkpoint: it does not beat it,
    and the reported student is an SFT evaluation, not the checkpoint posing as one."""
    cfg = replace(TOY, sft=replace(TOY.sft, lr=0.0))
    with trial.local(tmp_path):
        out = list(run(cfg, trial.stage, device="cpu", log=lambda *_: None))
    step0, last = out[0][1], out[-1][1]
    assert last["val/best_pass_at_1"] == last["val/checkpoint_pass_at_1"] == step0["val/pass_at_1"]
    assert last["sft/beat_checkpoint"] == 0.0 and last["sft/best_step"] == 2.0


def test_samples_are_keyed_by_what_determines_them(tiny_lm_dir, tmp_path):
    """The model's content, the decoding settings and the seed key the samples; the
    model's path and the server's address do not."""
    import shutil

    copy = shutil.copytree(tiny_lm_dir, tmp_path / "copy")
    base = replace(TOY, models=ModelsConfig(str(tiny_lm_dir), str(tiny_lm_dir)))

    def sample(cfg) -> int:
        models = resolve_models(cfg, trial.stage, "cpu")
        with Backends(cfg.seeded("sampling"), "cpu") as backends:
            samples_stage(cfg, "wc", models, trial.stage, backends)
        return _stages(tmp_path / "root")["samples"]

    with trial.local(tmp_path / "root"):
        assert sample(base) == 1
        assert sample(replace(base, models=ModelsConfig(str(copy), str(copy)))) == 1
        elsewhere = replace(base.sampling, base_url="http://10.0.0.7:9000/v1", api_key_env="K",
                            wc=Generator(base_url="http://10.0.0.8:8000/v1"))
        assert sample(replace(base, sampling=elsewhere)) == 1
        assert sample(replace(base, sampling=replace(base.sampling, temperature=1.0))) == 2
        assert sample(replace(base, seed=1)) == 3
        served = replace(base.sampling, wc=Generator(model="served-name", revision="r1"))
        assert sample(replace(base, sampling=served)) == 4
