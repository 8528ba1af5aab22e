"""Datasets for distillation: one loader, one tensor layout.

Every dataset comes out as float32 tensors shaped (N, C, L) for 1D signals or (N, C, H, W)
for images, normalised per channel with the mean and std of the training split (after the
validation split is carved out), and int64 labels 0..num_classes-1. The validation split is
carved from train (stratified, `split_seed`) for early stopping; the test split is only for
reported accuracy.

Sources:
- ``mnist1d``: generated offline by the `mnist1d` package's own generator with its default
  arguments (4000 train / 1000 test, length 40). Nothing is downloaded or written to disk.
- ``digits``: scikit-learn's 8x8 digits (ships with sklearn); a fixed stratified 20% test
  split (seed 0, independent of `split_seed` so that every run shares one test set).
- ``npz``: a file with arrays x_train, y_train, x_test, y_test. x of shape (N, L) is a 1D
  signal, (N, C, L) is not accepted (ambiguous with grey images), (N, H, W) a grey image,
  (N, C, H, W) or (N, H, W, C) with C in {1, 3} an image.
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``: torchvision datasets under
  `path`; downloaded only when `download` is true.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.distill._checks import require

DatasetName = Literal["mnist1d", "digits", "npz", "mnist", "fashion_mnist", "cifar10", "cifar100"]

_TORCHVISION = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to split it."""

    name: DatasetName = "mnist1d"
    """Dataset: mnist1d (default, offline), digits (sklearn), npz (a file), or a torchvision
    dataset (mnist, fashion_mnist, cifar10, cifar100) whose files are under `path`."""
    path: str = ""
    """The .npz file for name=npz; the torchvision root directory for torchvision datasets."""
    val_fraction: float = 0.1
    """Share of each class of the training split held out for validation (early stopping)."""
    download: bool = False
    """torchvision datasets only: download the files into `path` if missing. Off unless asked."""
    split_seed: int = 0
    """Seed of the stratified train/validation split."""

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, self, "val_fraction", "must be in [0, 1)")
        require(
            self.name not in ("npz", *_TORCHVISION) or bool(self.path),
            self,
            "path",
            f"is required for name={self.name!r}",
        )


@dataclass(frozen=True)
class Dataset:
    """Normalised tensors of the three splits; x float32, y int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    """(C, L) for 1D signals, (C, H, W) for images."""

    def class_indices(self) -> list[torch.Tensor]:
        """Indices into x_train of each class, in class order."""
        return [torch.nonzero(self.y_train == c).flatten() for c in range(self.num_classes)]


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split and normalise the dataset `cfg` names. ValueError on a missing file or key."""
    x_tr, y_tr, x_te, y_te = _load_raw(cfg)
    x_tr, x_te = _to_layout(x_tr, cfg), _to_layout(x_te, cfg)
    y_tr = torch.tensor(np.asarray(y_tr), dtype=torch.long)
    y_te = torch.tensor(np.asarray(y_te), dtype=torch.long)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"{_where(cfg)}: train and test samples differ in shape: "
                         f"{tuple(x_tr.shape[1:])} vs {tuple(x_te.shape[1:])}")
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError(f"{_where(cfg)}: x and y differ in length")
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    if y_tr.min() < 0:
        raise ValueError(f"{_where(cfg)}: labels must be integers 0..num_classes-1")

    train_idx, val_idx = _stratified_split(y_tr, cfg.val_fraction, cfg.split_seed)
    x_val, y_val = x_tr[val_idx], y_tr[val_idx]
    x_tr, y_tr = x_tr[train_idx], y_tr[train_idx]

    # per-channel statistics of the training split only
    dims = [0] + list(range(2, x_tr.dim()))
    mean = x_tr.mean(dim=dims, keepdim=True)
    std = x_tr.std(dim=dims, keepdim=True).clamp_min(1e-8)
    norm = lambda x: ((x - mean) / std).contiguous()  # noqa: E731
    return Dataset(
        x_train=norm(x_tr), y_train=y_tr,
        x_val=norm(x_val), y_val=y_val,
        x_test=norm(x_te), y_test=y_te,
        num_classes=num_classes,
        input_shape=tuple(x_tr.shape[1:]),
    )


Stage = Callable[[str, object, Callable[[Path], None]], Path]
"""stage(name, config, build) -> folder: a shared stage built once per config (the caller's
cache; `build` writes into the folder it is given)."""


def staged_dataset(cfg: DataConfig, stage: Stage) -> Dataset:
    """`load_dataset(cfg)` through the caller's stage cache: generated once, then read."""

    def build(folder: Path) -> None:
        torch.save(dataclasses.asdict(load_dataset(cfg)), folder / "data.pt")

    folder = stage("dataset", cfg, build)
    return Dataset(**torch.load(folder / "data.pt", weights_only=False))


# --- sources --------------------------------------------------------------------------


def _where(cfg: DataConfig) -> str:
    return f"dataset {cfg.name!r}" + (f" at {cfg.path!r}" if cfg.path else "")


def _load_raw(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if cfg.name == "mnist1d":
        return _mnist1d()
    if cfg.name == "digits":
        return _digits()
    if cfg.name == "npz":
        return _npz(cfg.path)
    return _torchvision(cfg)


@functools.lru_cache(maxsize=1)
def _mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D from the package's generator (about 4 s), memoised in-process.

    `make_dataset` reseeds numpy's and random's global generators; their states are
    restored afterwards so that loading data does not change anybody else's randomness.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])  # x: (N, 40) float64
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images[:, None, :, :].astype(np.float32)  # (1797, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, d.target, test_size=0.2, random_state=0, stratify=d.target
    )
    return x_tr, y_tr, x_te, y_te


def _npz(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"dataset 'npz': file not found: {path!r} (DataConfig.path)")
    with np.load(p, allow_pickle=False) as f:
        keys = ("x_train", "y_train", "x_test", "y_test")
        missing = [k for k in keys if k not in f.files]
        if missing:
            raise ValueError(
                f"dataset 'npz' at {path!r}: missing arrays {missing}; "
                f"the file must hold {list(keys)} (found {sorted(f.files)})"
            )
        x_tr, y_tr, x_te, y_te = (f[k] for k in keys)
    for name, y in (("y_train", y_tr), ("y_test", y_te)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"dataset 'npz' at {path!r}: {name} must be a 1D integer array, "
                             f"got shape {y.shape} dtype {y.dtype}")
    return x_tr, y_tr, x_te, y_te


def _torchvision(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[cfg.name])
    try:
        train = cls(cfg.path, train=True, download=cfg.download)
        test = cls(cfg.path, train=False, download=cfg.download)
    except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True"
        raise ValueError(
            f"{_where(cfg)}: files not found ({exc}); put them under DataConfig.path "
            f"or set DataConfig.download=true"
        ) from None
    arrays = []
    for ds in (train, test):
        x = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        y = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
        arrays += [x, y]
    return arrays[0], arrays[1], arrays[2], arrays[3]


# --- layout and split -----------------------------------------------------------------


def _to_layout(x: np.ndarray, cfg: DataConfig) -> torch.Tensor:
    """(N, C, L) or (N, C, H, W) float32."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:  # (N, L) signal
        x = x[:, None, :]
    elif x.ndim == 3:  # (N, H, W) grey image
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):  # (N, H, W, C) -> (N, C, H, W)
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise ValueError(f"{_where(cfg)}: images must have 1 or 3 channels, got shape {x.shape}")
    else:
        raise ValueError(f"{_where(cfg)}: x must be (N, L), (N, H, W) or (N, C, H, W); got {x.shape}")
    return torch.from_numpy(np.array(x, dtype=np.float32, order="C", copy=True))


def _stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): round(fraction * n_c) samples of each class go to val."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(fraction * len(idx)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values
