"""A pool of frozen pre-trained models (PTMs): architectures x initialisations x epochs.

Sub-optimal models are part of the study, so every architecture is trained from `inits`
random initialisations and a checkpoint is kept at each of `epochs`. Each PTM's test
accuracy is recorded, and a pool with a PTM below `min_acc` is refused: a PTM no better
than chance (or than the distilled set it should guide) only adds noise to the term.
`build_pool` is a pure function of its config and the data (seeds derive from `seed`),
so the platform's stage cache can build it once per config hash; `load_pool` reads a
built pool back. `build_pool` writes into the folder it is given; making that atomic is
the caller's job (the platform builds stages in a temporary folder and renames it).

Layout of out_dir:
    pool.json           {"input_shape", "num_classes", "test_n", "ptms": [{name, arch,
                         init, epoch, test_acc, file, net: {NetConfig fields}}, ...]}
    <name>.pt           state_dict of each PTM
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.device import resolve_device
from core.distill._checks import require
from core.distill.data import DataConfig, Dataset, load_dataset
from core.errors import ConfigError
from core.distill.evaluate import StackedNets
from core.distill.networks import Arch, Net, NetConfig, Norm, build_network, seeded_network
from core.distill.train import TrainConfig


@dataclass(frozen=True)
class PTMPoolConfig:
    """Which PTMs to train, and how."""

    data: DataConfig | None = None
    """Dataset the PTMs are trained on; None: the target dataset (the study's `data`)."""
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
    norm: Norm = "instancenorm"
    """Normalisation of every PTM (NetConfig.norm)."""
    seed: int = 0
    """Seed of the initialisations and the shuffling."""
    min_acc: float | None = None
    """Test accuracy every PTM must reach, or the pool build fails; None: twice chance
    (2 / number of classes)."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string. Not part of the result."""

    def __post_init__(self) -> None:
        require(len(self.architectures) >= 1, self, "architectures", "needs at least one")
        require(self.min_acc is None or 0 <= self.min_acc <= 1, self, "min_acc", "must be in [0, 1]")
        require(self.inits >= 1, self, "inits", "must be >= 1")
        require(len(self.epochs) >= 1 and min(self.epochs) >= 1, self, "epochs", "must be >= 1 each")

    @property
    def size(self) -> int:
        """Number of PTMs in the pool."""
        return len(self.architectures) * self.inits * len(set(self.epochs))

    def min_acc_for(self, num_classes: int) -> float:
        """The accuracy floor of a PTM on a dataset of `num_classes` classes."""
        return self.min_acc if self.min_acc is not None else 2.0 / num_classes

    def net(self, arch: str) -> NetConfig:
        """The network of every PTM of architecture `arch`."""
        return NetConfig(arch=arch, norm=self.norm)  # type: ignore[arg-type]


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
    Returns the records written to pool.json. Raises ConfigError (key ptm.min_acc) when a
    PTM's test accuracy is below `cfg.min_acc_for(classes)`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        if cfg.data is None:
            raise ValueError("PTMPoolConfig.data is None: pass the target dataset to build_pool")
        data = load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    keep = sorted(set(cfg.epochs))
    train_cfg = TrainConfig(epochs=keep[-1], lr=cfg.lr, batch_size=cfg.batch_size)
    records: list[dict] = []
    for a, arch in enumerate(cfg.architectures):
        net_cfg = cfg.net(arch)
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
                torch.save(state, out / f"{name}.pt")
                records.append({
                    "name": name, "arch": arch, "init": i, "epoch": epoch,
                    "test_acc": accs[i], "file": f"{name}.pt",
                    "net": dataclasses.asdict(net_cfg),
                    "train_seconds": time.perf_counter() - t0,
                })

        stacked.fit(x, y, train_cfg, gens, augment=None,
                    on_epoch=lambda e: save(e) if e in keep else None)
    floor = cfg.min_acc_for(data.num_classes)
    weak = [r for r in records if r["test_acc"] < floor]
    if weak:
        worst = min(weak, key=lambda r: r["test_acc"])
        raise ConfigError(
            "ptm.min_acc",
            f"{len(weak)} of {len(records)} PTMs are below {floor:.3f} test accuracy (worst: "
            f"{worst['name']} at {worst['test_acc']:.3f}); train them longer (ptm.epochs, ptm.lr), "
            f"choose other ptm.architectures, or lower ptm.min_acc",
        )
    meta = {"input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "test_n": len(data.y_test), "ptms": records}
    (out / "pool.json").write_text(json.dumps(meta, indent=1))
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

