"""trainables/reasoning.py driven directly (no Ray), configured as a sweep file would be:
GSM8K-format files and reasoning-gym problems with models from plain Hugging Face
directories (what a researcher runs on a GPU cluster), at toy scale on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablab import configs, trial
from ablab.errors import UserError
from core.reasoning.models import TinyLMConfig, build_model, count_params, save_hf_dir
from core.reasoning.tokenizer import build_char_tokenizer
from trainables import reasoning as trainable

GSM8K = Path(__file__).parents[1] / "core" / "reasoning" / "data" / "gsm8k_tiny.jsonl"
TOY = {
    "sampling": {"s_se": 1, "n_problems": 4, "max_new_tokens": 12},
    "rm": {"steps": 3, "batch_size": 4, "n_problems": 3, "samples_per_problem": 2},
    "sft": {"max_steps": 2, "eval_every": 2, "batch_size": 4, "warmup_steps": 1, "max_new_tokens": 12},
    "eval": {"n_problems": 3, "ks": [1, 2], "max_new_tokens": 12},
    "val_size": 2,
}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Two random Llamas of different sizes as plain HF directories (WC, SE)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf_models")
    tok = build_char_tokenizer()
    return {role: str(save_hf_dir(build_model(TinyLMConfig(d_model=d, n_layers=1), tok, seed=0), tok, root / role))
            for role, d in (("wc", 32), ("se", 64))}


def _config(**sections) -> trainable.Config:
    return configs.build(trainable.Config, {**TOY, **sections})  # as `ablab validate` builds it


def test_gsm8k_files_with_hf_models_sample_filter_finetune_and_test(hf_dirs, tmp_path):
    """The learned PRM (process filter) trains on the calculator labels of problems apart
    from the filtered ones."""
    cfg = _config(task={"kind": "gsm8k", "gsm8k": {"train_path": str(GSM8K), "test_path": str(GSM8K),
                                                   "val_size": 2, "pretrain_size": 2,
                                                   "keep_calculator": True}},
                  models={"wc_dir": hf_dirs["wc"], "se_dir": hf_dirs["se"]},
                  filter={"method": "process"})
    with trial.local(tmp_path) as session:
        trainable.train(cfg)
    (step0, first), (_, last) = session.reports[0], session.reports[-1]
    assert step0 == 0
    # weak-to-strong: WC samples at the compute-matched budget of the directories' sizes
    ratio = count_params(hf_dirs["se"]) / count_params(hf_dirs["wc"])
    assert ratio > 2 and first["data/samples_per_problem"] == round(ratio)
    # 6 lines: 2 to sample and train on, 2 for the verifier, 2 for validation
    assert first["data/samples"] == 2 * round(ratio)
    assert {"test/pass_at_1", "test/maj_at_2", "sft/beat_checkpoint", "data/diversity_valid"} <= set(last)
    # no zoo was trained: the given directories are the models
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == ["prm", "samples"]


def test_reasoning_gym_problems_with_an_orm_filter(hf_dirs, tmp_path):
    cfg = _config(task={"kind": "reasoning_gym", "gym_dataset": "basic_arithmetic"},
                  models={"wc_dir": hf_dirs["wc"], "se_dir": hf_dirs["se"]},
                  filter={"method": "orm", "top_k": 1})
    with trial.local(tmp_path) as session:
        trainable.train(cfg)
    first, last = session.reports[0][1], session.reports[-1][1]
    assert first["filter/kept"] == 4  # top-1 of each of the 4 problems
    assert "test/pass_at_1" in last
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == ["orm", "samples"]


def test_bad_task_and_model_settings_fail_at_validation(hf_dirs):
    with pytest.raises(UserError, match="process_oracle needs task.kind arith"):
        _config(task={"kind": "gsm8k", "gsm8k": {"train_path": str(GSM8K), "test_path": str(GSM8K)}},
                filter={"method": "process_oracle"})
    with pytest.raises(UserError, match="needs gsm8k.train_path"):
        _config(task={"kind": "gsm8k"})
    with pytest.raises(UserError, match="both wc_dir and se_dir"):
        _config(models={"wc_dir": hf_dirs["wc"]})
    with pytest.raises(UserError, match="allowed"):
        _config(task={"kind": "math500"})


def test_a_nested_seed_is_refused_not_overwritten():
    with pytest.raises(UserError, match="sampling.seed: is derived from the trial's seed"):
        _config(sampling={"seed": 4})
    cfg = configs.build(trainable.Config, {**TOY, "seed": 4})
    assert cfg.seeded("sft").seed == cfg.seeded("sampling").seed == 4
