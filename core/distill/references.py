"""Reference accuracies a distilled set is read against.

- floor:   a random real subset with the same IPC, evaluated exactly like a synthetic set
           (same networks, epochs, DSA); `subsets` different subsets, `eval_nets` each.
           Once per dataset and IPC (:class:`ReferenceConfig`).
- ceiling: the full training split, `epochs` epochs (no augmentation). Once per dataset,
           whatever the IPC (:class:`CeilingConfig`).

`build_references` writes references.json into a directory (the platform's stage cache
builds it once per config hash); `load_references` reads it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.distill._checks import require, resolve_device
from core.distill.augment import DiffAugment
from core.distill.data import DataConfig, Dataset, load_dataset
from core.distill.evaluate import evaluate_set
from core.distill.networks import NetConfig
from core.distill.train import TrainConfig


@dataclass(frozen=True)
class ReferenceConfig:
    """The floor (random real subset) of one dataset and IPC."""

    data: DataConfig = DataConfig()
    """The dataset."""
    ipc: int = 10
    """Samples per class of the random subset."""
    net: NetConfig = NetConfig()
    """Evaluation network (the distillation's eval_arch)."""
    eval_nets: int = 5
    """Networks per random subset."""
    subsets: int = 3
    """Random subsets (seeds 0..subsets-1) the floor averages over."""
    eval_epochs: int = 300
    """Epochs on a random subset (as for a synthetic set)."""
    eval_dsa: bool = True
    """DSA while training on the random subset (as for a synthetic set)."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string."""

    def __post_init__(self) -> None:
        require(self.ipc >= 1, self, "ipc", "must be >= 1")
        require(self.subsets >= 1, self, "subsets", "must be >= 1")


@dataclass(frozen=True)
class CeilingConfig:
    """The ceiling: networks trained on the whole training split of one dataset."""

    data: DataConfig = DataConfig()
    """The dataset."""
    net: NetConfig = NetConfig()
    """Evaluation network (the distillation's eval_arch)."""
    nets: int = 3
    """Networks trained."""
    epochs: int = 30
    """Epochs on the full training split."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string."""

    def __post_init__(self) -> None:
        require(self.epochs >= 1, self, "epochs", "must be >= 1")
        require(self.nets >= 1, self, "nets", "must be >= 1")


def random_subset(data: Dataset, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`ipc` random training samples of each class (all of them if fewer), class order."""
    g = torch.Generator().manual_seed(seed)
    idx = [i[torch.randperm(len(i), generator=g)[:ipc]] for i in data.class_indices()]
    y = torch.cat([torch.full((len(i),), c) for c, i in enumerate(idx)])
    return data.x_train[torch.cat(idx)], y


def compute_references(cfg: ReferenceConfig, data: Dataset | None = None) -> dict[str, float]:
    """The floor: floor/test_acc, floor/test_acc_std, floor/seconds."""
    data = data if data is not None else load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    aug = DiffAugment.for_input(data.input_shape) if cfg.eval_dsa else None
    accs, secs = [], 0.0
    for s in range(cfg.subsets):
        x, y = random_subset(data, cfg.ipc, seed=s)
        r = evaluate_set(x.to(device), y.to(device), data, cfg.net, TrainConfig(epochs=cfg.eval_epochs),
                         cfg.eval_nets, seed=s, augment=aug)
        accs += r.test_accs
        secs += r.seconds
    return {"floor/test_acc": float(np.mean(accs)), "floor/test_acc_std": float(np.std(accs)),
            "floor/seconds": secs}


def compute_ceiling(cfg: CeilingConfig, data: Dataset | None = None) -> dict[str, float]:
    """The ceiling: ceiling/test_acc, ceiling/test_acc_std, ceiling/seconds."""
    data = data if data is not None else load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    r = evaluate_set(data.x_train.to(device), data.y_train.to(device), data, cfg.net,
                     TrainConfig(epochs=cfg.epochs), cfg.nets, seed=0)
    return {"ceiling/test_acc": r.test_mean, "ceiling/test_acc_std": r.test_std, "ceiling/seconds": r.seconds}


def build_references(cfg: ReferenceConfig | CeilingConfig, data: Dataset | None, out_dir: str | Path) -> dict[str, float]:
    """The floor (ReferenceConfig) or the ceiling (CeilingConfig), written to
    out_dir/references.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = compute_ceiling(cfg, data) if isinstance(cfg, CeilingConfig) else compute_references(cfg, data)
    tmp = out / "references.json.tmp"
    tmp.write_text(json.dumps(refs, indent=1))
    os.replace(tmp, out / "references.json")
    return refs


def load_references(out_dir: str | Path) -> dict[str, float]:
    path = Path(out_dir) / "references.json"
    if not path.is_file():
        raise ValueError(f"references: {path} not found; build it with build_references first")
    return json.loads(path.read_text())
