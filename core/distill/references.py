"""Reference accuracies a distilled set is read against.

- floor:   random real subsets with the same IPC, each evaluated exactly like a synthetic
           set (same networks, epochs, DSA); `subsets` different subsets, `eval_nets`
           networks each. Its std is the spread between subsets (of their mean accuracy):
           how much the choice of IPC real samples alone moves the result. Once per
           dataset and IPC (:class:`ReferenceConfig`).
- ceiling: the full training split under the evaluation protocol (same recipe, epochs
           and DSA), stopped early on the validation split: the test accuracy at the
           epoch of best validation accuracy. Once per dataset (:class:`CeilingConfig`).

A ceiling at or below the floor means the protocol does not fit the full set (too few
epochs, no augmentation): the platform reports it as `ref/ceiling_below_floor`.

`build_references` writes references.json into the folder it is given (the platform's
stage cache builds it once per config hash, atomically); `load_references` reads it back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.device import resolve_device
from core.distill._checks import require
from core.distill.augment import DiffAugment
from core.distill.data import DataConfig, Dataset, load_dataset
from core.distill.evaluate import evaluate_set
from core.distill.networks import NetConfig, seeded_network
from core.distill.train import TrainConfig, accuracy, make_optimizer, train_epoch


@dataclass(frozen=True)
class ReferenceConfig:
    """The floor (random real subsets) of one dataset and IPC."""

    data: DataConfig = DataConfig()
    """The dataset."""
    ipc: int = 10
    """Samples per class of a random subset."""
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
    nets: int = 1
    """Networks trained."""
    epochs: int = 300
    """Most epochs on the full training split (the evaluation protocol's; lr x0.1 at half)."""
    patience: int = 20
    """Stop a network once its validation accuracy has not improved for this many epochs
    (0, or no validation split: train all epochs and take the last one)."""
    dsa: bool = True
    """DSA while training (as the evaluation protocol)."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string."""

    def __post_init__(self) -> None:
        require(self.epochs >= 1, self, "epochs", "must be >= 1")
        require(self.nets >= 1, self, "nets", "must be >= 1")
        require(self.patience >= 0, self, "patience", "must be >= 0")


def random_subset(data: Dataset, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`ipc` random training samples of each class (all of them if fewer), class order."""
    g = torch.Generator().manual_seed(seed)
    idx = [i[torch.randperm(len(i), generator=g)[:ipc]] for i in data.class_indices()]
    y = torch.cat([torch.full((len(i),), c) for c, i in enumerate(idx)])
    return data.x_train[torch.cat(idx)], y


def compute_floor(cfg: ReferenceConfig, data: Dataset | None = None) -> dict[str, float]:
    """The floor: floor/test_acc (mean over subsets), floor/test_acc_std (between subsets),
    floor/test_n, floor/seconds."""
    data = data if data is not None else load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    aug = DiffAugment.for_input(data.input_shape) if cfg.eval_dsa else None
    means, secs = [], 0.0
    for s in range(cfg.subsets):
        x, y = random_subset(data, cfg.ipc, seed=s)
        r = evaluate_set(x.to(device), y.to(device), data, cfg.net, TrainConfig(epochs=cfg.eval_epochs),
                         cfg.eval_nets, seed=s, augment=aug)
        means.append(r.test_mean)
        secs += r.seconds
    return {"floor/test_acc": float(np.mean(means)), "floor/test_acc_std": float(np.std(means)),
            "floor/test_n": float(len(data.y_test)), "floor/seconds": secs}


def compute_ceiling(cfg: CeilingConfig, data: Dataset | None = None) -> dict[str, float]:
    """The ceiling: ceiling/test_acc, ceiling/test_acc_std (between networks),
    ceiling/epochs (mean epoch of best validation accuracy), ceiling/test_n, ceiling/seconds."""
    data = data if data is not None else load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    aug = DiffAugment.for_input(data.input_shape) if cfg.dsa else None
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    recipe = TrainConfig(epochs=cfg.epochs)
    early = cfg.patience > 0 and len(x_val) > 0  # without a validation split: the last epoch
    tests, epochs = [], []
    for k in range(cfg.nets):
        net = seeded_network(cfg.net, data.input_shape, data.num_classes, k).to(device)
        gen = torch.Generator().manual_seed(k)
        opt, sched = make_optimizer(net, recipe)
        best_val, best_test, best_epoch = -1.0, 0.0, 0
        for epoch in range(1, cfg.epochs + 1):
            train_epoch(net, opt, x, y, recipe.batch_size, gen, aug)
            sched.step()
            if not early:
                if epoch == cfg.epochs:
                    best_test, best_epoch = accuracy(net, x_test, y_test), epoch
                continue
            val = accuracy(net, x_val, y_val)
            if val > best_val:
                best_val, best_test, best_epoch = val, accuracy(net, x_test, y_test), epoch
            elif epoch - best_epoch >= cfg.patience:
                break
        tests.append(best_test)
        epochs.append(best_epoch)
    return {"ceiling/test_acc": float(np.mean(tests)), "ceiling/test_acc_std": float(np.std(tests)),
            "ceiling/epochs": float(np.mean(epochs)), "ceiling/test_n": float(len(data.y_test)),
            "ceiling/seconds": time.perf_counter() - t0}


def build_references(cfg: ReferenceConfig | CeilingConfig, data: Dataset | None, out_dir: str | Path) -> dict[str, float]:
    """The floor (ReferenceConfig) or the ceiling (CeilingConfig), written to
    out_dir/references.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = compute_ceiling(cfg, data) if isinstance(cfg, CeilingConfig) else compute_floor(cfg, data)
    (out / "references.json").write_text(json.dumps(refs, indent=1))
    return refs


def load_references(out_dir: str | Path) -> dict[str, float]:
    path = Path(out_dir) / "references.json"
    if not path.is_file():
        raise ValueError(f"references: {path} not found; build it with build_references first")
    return json.loads(path.read_text())
