"""Datasets as a shared stage: generated (or read and normalised) once per config, then loaded."""

from __future__ import annotations

import dataclasses

from ablab import trial
from core.distill.data import DataConfig, Dataset


def cached_dataset(cfg: DataConfig) -> Dataset:
    import torch

    from core.distill.data import load_dataset

    def build(folder):
        torch.save(dataclasses.asdict(load_dataset(cfg)), folder / "data.pt")

    folder = trial.stage("dataset", cfg, build)
    return Dataset(**torch.load(folder / "data.pt", weights_only=False))
