"""A pool of frozen pre-trained models (PTMs): architectures x initialisations x epochs.

Sub-optimal models are part of the study, so every architecture is trained from `inits`
random initialisations and a checkpoint is kept at each of `epochs`. Each PTM's test
accuracy is recorded. `build_pool` is a pure function of its config and the data (seeds
derive from `seed`), so the platform's stage cache can build it once per config hash;
`load_pool` reads a built pool back.

Layout of out_dir:
    pool.json           {"input_shape", "num_classes", "ptms": [{name, arch, init, epoch,
                         test_acc, file, net: {NetConfig fields}}, ...]}
    <name>.pt           state_dict of each PTM
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from core.distill._checks import check_config, require, resolve_device
from core.distill.data import DataConfig, Dataset, load_dataset
from core.distill.evaluate import StackedNets
from core.distill.networks import Arch, Net, NetConfig, build_network, seeded_network
from core.distill.train import TrainConfig


@dataclass(frozen=True)
class PTMPoolConfig:
    """Which PTMs to train, and how."""

    data: DataConfig = DataConfig()
    """Source dataset the PTMs are trained on (the target dataset by default)."""
    architectures: tuple[Arch, ...] = ("convnet",)
    """Architectures in the pool (NetConfig defaults otherwise, with `norm` below)."""
    inits: int = 2
    """Random initialisations per architecture."""
    epochs: tuple[int, ...] = (5, 20)
    """Training epochs at which a checkpoint joins the pool; training runs to the largest."""
    lr: float = 0.01
    """SGD learning rate (momentum 0.9, weight decay 5e-4, x0.1 at half of the last epoch)."""
    batch_size: int = 256
    """Minibatch size."""
    norm: Literal["instancenorm", "batchnorm", "none"] = "instancenorm"
    """Normalisation of every PTM (NetConfig.norm)."""
    seed: int = 0
    """Seed of the initialisations and the shuffling."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string. Not part of the result."""

    def __post_init__(self) -> None:
        check_config(self)
        require(len(self.architectures) >= 1, self, "architectures", "needs at least one")
        require(self.inits >= 1, self, "inits", "must be >= 1")
        require(len(self.epochs) >= 1 and min(self.epochs) >= 1, self, "epochs", "must be >= 1 each")

    @property
    def size(self) -> int:
        """Number of PTMs in the pool."""
        return len(self.architectures) * self.inits * len(set(self.epochs))


@dataclass
class PTM:
    """One frozen pre-trained model and where it came from."""

    name: str
    arch: str
    init: int
    epoch: int
    test_acc: float
    net: Net


def build_pool(cfg: PTMPoolConfig, data: Dataset | None, out_dir: str | Path) -> list[dict]:
    """Train the pool `cfg` describes on `data` (load_dataset(cfg.data) if None) into out_dir.

    Networks of one architecture are trained together (batched, one per initialisation).
    Returns the records written to pool.json.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    keep = sorted(set(cfg.epochs))
    train_cfg = TrainConfig(epochs=keep[-1], lr=cfg.lr, batch_size=cfg.batch_size)
    records: list[dict] = []
    for a, arch in enumerate(cfg.architectures):
        net_cfg = NetConfig(arch=arch, norm=cfg.norm)  # type: ignore[arg-type]
        seeds = [cfg.seed * 10_000 + a * 100 + i for i in range(cfg.inits)]
        nets = [seeded_network(net_cfg, data.input_shape, data.num_classes, s).to(device) for s in seeds]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        stacked = StackedNets(nets)
        t0 = time.perf_counter()

        def save(epoch: int) -> None:
            accs = stacked.accuracy(x_test, y_test)
            for i in range(cfg.inits):
                name = f"{arch}_init{i}_ep{epoch}"
                state = {k: v[i].detach().cpu().clone() for k, v in {**stacked.params, **stacked.buffers}.items()}
                _atomic_save(state, out / f"{name}.pt")
                records.append({
                    "name": name, "arch": arch, "init": i, "epoch": epoch,
                    "test_acc": accs[i], "file": f"{name}.pt",
                    "net": dataclasses.asdict(net_cfg),
                    "train_seconds": time.perf_counter() - t0,
                })

        stacked.fit(x, y, train_cfg, gens, augment=None,
                    on_epoch=lambda e: save(e) if e in keep else None)
    meta = {"input_shape": list(data.input_shape), "num_classes": data.num_classes, "ptms": records}
    tmp = out / "pool.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "pool.json")
    return records


def load_pool(pool_dir: str | Path, device: str | torch.device = "cpu") -> list[PTM]:
    """The PTMs of a built pool, frozen (eval mode, no gradients), on `device`."""
    d = Path(pool_dir)
    meta_path = d / "pool.json"
    if not meta_path.is_file():
        raise ValueError(f"PTM pool: {meta_path} not found; build it with build_pool first")
    meta = json.loads(meta_path.read_text())
    shape, num_classes = tuple(meta["input_shape"]), meta["num_classes"]
    ptms = []
    for r in meta["ptms"]:
        net = build_network(NetConfig(**r["net"]), shape, num_classes)
        net.load_state_dict(torch.load(d / r["file"], map_location="cpu", weights_only=True))
        net.to(device).eval().requires_grad_(False)
        ptms.append(PTM(r["name"], r["arch"], r["init"], r["epoch"], r["test_acc"], net))
    return ptms


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
