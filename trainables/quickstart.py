"""Quickstart: a small classifier, one report per epoch (core/distill/classifier.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.distill.classifier import METRICS, ClassifierConfig, run

__all__ = ["METRICS", "Config", "train"]


@dataclass(frozen=True)
class Config(ClassifierConfig):
    """Every field of core.distill.classifier.ClassifierConfig (seed, data, model, train, device)."""


def train(cfg: Config) -> None:
    for epoch, metrics, state in run(cfg, stage=trial.stage, state=trial.restore()):
        trial.report(metrics, step=epoch, state=state)
