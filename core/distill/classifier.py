"""A classifier trained on a dataset, one metric window per epoch (the quickstart study).

    for epoch, metrics, state in run(ClassifierConfig(), stage=my_cache):
        print(epoch, metrics["val/acc"])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from core.device import resolve_device
from core.distill.data import DataConfig, Stage, staged_dataset
from core.distill.networks import NetConfig, seeded_network
from core.distill.train import TrainConfig, accuracy, make_optimizer, train_epoch

METRICS = {"train/loss": "min", "val/acc": "max", "test/acc": "max"}
"""val/acc and test/acc are reported with `:n`, the evaluation examples behind them."""


@dataclass(frozen=True)
class ClassifierConfig:
    """A network trained on a dataset; every field can be ablated from a sweep file."""

    seed: int = 0
    """Seeds the network's initialisation and the batch order."""
    data: DataConfig = field(default_factory=DataConfig)
    """The dataset."""
    model: NetConfig = field(default_factory=lambda: NetConfig(arch="mlp", width=64, depth=2))
    """The network."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.05, batch_size=128))
    """The training recipe."""
    device: str = "auto"
    """auto (CUDA when the trial has a GPU, else CPU), cpu, or cuda."""


def run(cfg: ClassifierConfig, stage: Stage, state: dict | None = None) -> Iterator[tuple[int, dict[str, float], dict]]:
    """(epoch, metrics, state) after every epoch; resumes from a yielded state."""
    device = resolve_device(cfg.device)
    data = staged_dataset(cfg.data, stage)
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    net = seeded_network(cfg.model, data.input_shape, data.num_classes, cfg.seed).to(device)
    opt, sched = make_optimizer(net, cfg.train)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    if state is not None:
        net.load_state_dict(state["model"])  # saved from the same device
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start = state["epoch"]
    for epoch in range(start + 1, cfg.train.epochs + 1):
        loss = train_epoch(net, opt, x, y, cfg.train.batch_size, gen)
        sched.step()
        metrics = {
            "train/loss": loss,
            "val/acc": accuracy(net, x_val, y_val), "val/acc:n": float(len(y_val)),
            "test/acc": accuracy(net, x_test, y_test), "test/acc:n": float(len(y_test)),
        }
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "generator": gen.get_state(), "epoch": epoch}
        yield epoch, metrics, state
