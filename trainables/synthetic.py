"""A trainable with no model: core/synthetic's seeded learning curve, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.synthetic.experiment import METRICS, SyntheticConfig, run

__all__ = ["METRICS", "Config", "train"]


@dataclass(frozen=True)
class Config(SyntheticConfig):
    """Every field of core.synthetic.experiment.SyntheticConfig (steps, quality, knob, eval_n...)."""


def train(cfg: Config) -> None:
    for step, metrics, state in run(cfg, state=trial.restore(), artifacts=trial.artifact_dir()):
        trial.report(metrics, step=step, state=state)
