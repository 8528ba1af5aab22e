"""A core's ConfigError: a user error naming the ablation at validate time; inside a trial,
one recorded failure that Ray does not retry."""

from __future__ import annotations

import pytest

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import study_paths

SWEEP = """
name: checked
trainable: tests.ablab.checked_trainable
base: {{width: 8}}
ablations:
  - part: {part}
    baseline: {baseline}
    replacements: [{replacement}]
metric: score
mode: max
max_failures: 3
"""


def test_check_names_the_ablation_that_set_the_value(write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(part="width", baseline=8, replacement=128))
    assert main(["validate", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "width: too wide for the input; allowed: at most 64" in err
    assert "set by ablation `width` (variant width=128)" in err and err.count("\n") == 1


def test_check_in_base_names_base(write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(part="works", baseline="true", replacement="false").replace(
        "width: 8", "width: 100"))
    assert main(["validate", str(sweep)]) == 2
    assert "base.width: too wide for the input" in capsys.readouterr().err


@pytest.mark.slow
def test_a_config_error_in_a_trial_fails_it_once_without_retries(ray_session, write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(part="works", baseline="true", replacement="false"))
    assert main(["run", str(sweep), "--no-live"]) == 1  # some trials failed
    records = {r.spec.variant: r for r in load_records(study_paths(sweep, "checked"))}
    assert records["baseline"].state == TrialState.FINISHED
    failed = records["works=False"]
    assert failed.state == TrialState.FAILED and failed.retries == 0
    assert "this config cannot work" in failed.error


def test_a_partial_nested_setting_keeps_the_parents_defaults_for_the_rest():
    """`sft: {lr: ...}` (a tuned key) must not rebuild the SFT config from SFTConfig's own
    defaults: the experiment gives its student other ones (300 steps, warm-up 20)."""
    from ablab import configs
    from core.reasoning.experiment import ExperimentConfig
    from core.reasoning.sft import SFTConfig

    parent = ExperimentConfig().sft
    assert parent != SFTConfig()  # the premise: the parent's defaults differ from the class's
    built = configs.build(ExperimentConfig, {"sft": {"lr": 2e-4}}).sft
    assert built.lr == 2e-4
    assert (built.max_steps, built.warmup_steps, built.eval_every, built.patience) == \
        (parent.max_steps, parent.warmup_steps, parent.eval_every, parent.patience)
    # two levels down (zoo.train) as well, and an unknown key is still refused with its path
    zoo = configs.build(ExperimentConfig, {"zoo": {"train": {"lr": 1e-2}}}).zoo
    assert zoo.train.lr == 1e-2 and zoo.train.max_steps == ExperimentConfig().zoo.train.max_steps
    with pytest.raises(Exception, match=r"sft\.lrr: unknown key"):
        configs.build(ExperimentConfig, {"sft": {"lrr": 1.0}})
