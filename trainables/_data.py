"""Datasets as a shared stage: generated (or read and normalised) once per config, then loaded."""

from __future__ import annotations

import dataclasses

from ablab import trial
from core.distill.data import DataConfig, Dataset


def cached_dataset(cfg: DataConfig, device=None) -> Dataset:
    import torch

    from core.distill.data import load_dataset

    def build(folder):
        torch.save(dataclasses.asdict(load_dataset(cfg)), folder / "data.pt")

    folder = trial.stage("dataset", cfg, build)
    data = Dataset(**torch.load(folder / "data.pt", weights_only=False))
    if device is None or str(device) == "cpu":
        return data
    return dataclasses.replace(data, **{k: getattr(data, k).to(device) for k in
                                        ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")})
