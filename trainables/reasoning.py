"""Compute-optimal sampling for LLM reasoners (Bansal et al. 2024), one trial: the stages,
metrics and resumption are core/reasoning/experiment.py's; shared stages (the zoo, the
sample sets, the verifiers) go through `trial.stage`, so the filtering ablation samples
once and filters four ways."""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.reasoning.experiment import ExperimentConfig, run

METRICS = {
    # the generator's samples of the training problems (k = all samples of a problem)
    "data/coverage": "max",
    "data/diversity": "max",
    "data/diversity_valid": "max",  # unique valid solutions (process-correct where labelled)
    "data/fpr": "min",
    "data/samples": "max",
    "data/samples_per_problem": "max",
    "data/correct": "max",
    "data/tokens": "min",
    "data/tokens_per_s": "max",
    "data/tokens_estimated": "min",  # 1: a server gave no token counts, data/tokens is an estimate
    # the kept set
    "filter/kept": "max",
    "filter/kept_frac": "max",
    "filter/coverage": "max",
    "filter/diversity": "max",
    "filter/diversity_valid": "max",
    "filter/fpr": "min",
    "filter/precision": "max",
    "filter/recall": "max",
    # the student
    "train/loss": "min",
    "time/train_s": "min",
    "val/pass_at_1": "max",
    "val/best_pass_at_1": "max",
    "val/checkpoint_pass_at_1": "max",  # the student's starting checkpoint, before SFT
    "sft/beat_checkpoint": "max",  # 1: the fine-tuned student beat its checkpoint on val
    "sft/best_step": "max",  # the SFT step of the student (0: none, the checkpoint)
    "test/pass_at_1": "max",
    "test/pass_at_1_sampled": "max",
    "test/maj_at_1": "max",
    "test/maj_at_4": "max",
    "test/maj_at_8": "max",
    "test/maj_at_16": "max",
}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Every field of core.reasoning.experiment.ExperimentConfig; keys in sweep files are
    its dotted fields, e.g. ``filter.method`` or ``sampling.s_se``."""


def train(cfg: Config) -> None:
    state = trial.restore()
    for step, metrics, sft_state in run(cfg, stage=trial.stage, state=state and state["sft"]):
        trial.report(metrics, step=step, state={"sft": sft_state})
