"""Compute-optimal sampling for LLM reasoners (Bansal et al. 2024), one trial: the stages,
metrics and resumption are core/reasoning/experiment.py's; shared stages (the zoo, the
sample sets, the verifiers) go through `trial.stage`, so the filtering ablation samples
once and filters four ways."""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.reasoning.experiment import METRICS, ExperimentConfig, run

__all__ = ["METRICS", "Config", "train"]


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Every field of core.reasoning.experiment.ExperimentConfig; keys in sweep files are
    its dotted fields, e.g. ``filter.method`` or ``sampling.s_se``."""


def train(cfg: Config) -> None:
    state = trial.restore()
    for step, metrics, sft_state in run(cfg, stage=trial.stage, state=state and state["sft"]):
        trial.report(metrics, step=step, state={"sft": sft_state})
