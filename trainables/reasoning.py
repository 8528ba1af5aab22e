"""Compute-optimal sampling for LLM reasoners (Bansal et al. 2024), one trial.

Config in, `trial.report` out; all stages come from core/reasoning/experiment.py. Shared
stages (the WC/SE zoo, each generator x budget x seed sample set, the verifiers) go
through `trial.stage`, so the filtering ablation samples once and filters four ways.
Reports after the data stages (step 0), at every SFT evaluation, and the test metrics
last; resumes from its checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablab import trial
from core.reasoning.experiment import ExperimentConfig

METRICS = {
    # the generator's samples of the training problems (k = all samples of a problem)
    "data/coverage": "max",
    "data/diversity": "max",
    "data/fpr": "min",
    "data/samples": "max",
    "data/samples_per_problem": "max",
    "data/correct": "max",
    "data/tokens": "min",
    "data/tokens_per_s": "max",
    # the kept set
    "filter/kept": "max",
    "filter/kept_frac": "max",
    "filter/coverage": "max",
    "filter/diversity": "max",
    "filter/fpr": "min",
    "filter/precision": "max",
    "filter/recall": "max",
    # the student
    "train/loss": "min",
    "time/train_s": "min",
    "val/pass_at_1": "max",
    "val/best_pass_at_1": "max",
    "test/pass_at_1": "max",
    "test/pass_at_1_sampled": "max",
    "test/maj_at_1": "max",
    "test/maj_at_4": "max",
    "test/maj_at_8": "max",
    "test/maj_at_16": "max",
}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Every field of core.reasoning.experiment.ExperimentConfig (paradigm, zoo, sampling,
    filter, rm, sft, eval, val_size, seed); keys in sweep files are its dotted fields,
    e.g. ``filter.method`` or ``sampling.s_se``."""


def train(cfg: Config) -> None:
    import torch

    from core.reasoning.experiment import run

    torch.set_num_threads(1)  # one CPU per trial (resources.cpu in the sweep files)
    state = trial.restore()
    for step, metrics, runner_state in run(cfg, stage=trial.stage, state=state and state["sft"]):
        # undefined metrics (e.g. FPR of a set without a correct answer) are NaN: not reported
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        trial.report(finite, step=step, state={"sft": runner_state})
