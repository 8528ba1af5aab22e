"""Quickstart: a small classifier on MNIST-1D, one report per epoch.

Config in, `trial.report` out; the model, data and training step come from core/distill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ablab import trial
from trainables._data import cached_dataset
from core.distill.data import DataConfig
from core.distill.networks import NetConfig
from core.distill.train import TrainConfig

METRICS = {"train/loss": "min", "val/acc": "max", "test/acc": "max"}


@dataclass(frozen=True)
class Config:
    """A network trained on a dataset; every field can be ablated from the sweep file."""

    seed: int = 0
    """Seeds the network's initialisation and the batch order."""
    data: DataConfig = field(default_factory=DataConfig)
    model: NetConfig = field(default_factory=lambda: NetConfig(arch="mlp", width=64, depth=2))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.05, batch_size=128))
    device: str = "auto"
    """auto (CUDA when the trial has a GPU, else CPU), cpu, or cuda."""


def train(cfg: Config) -> None:
    import torch

    from core.distill._checks import resolve_device
    from core.distill.networks import seeded_network
    from core.distill.train import accuracy, make_optimizer, train_epoch

    device = resolve_device(cfg.device)
    data = cached_dataset(cfg.data, device)
    net = seeded_network(cfg.model, data.input_shape, data.num_classes, cfg.seed).to(device)
    opt, sched = make_optimizer(net, cfg.train)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    state = trial.restore()
    if state is not None:
        net.load_state_dict(state["model"])  # saved from the same device
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start = state["epoch"]
    for epoch in range(start + 1, cfg.train.epochs + 1):
        loss = train_epoch(net, opt, data.x_train, data.y_train, cfg.train.batch_size, gen)
        sched.step()
        metrics = {
            "train/loss": loss,
            "val/acc": accuracy(net, data.x_val, data.y_val),
            "test/acc": accuracy(net, data.x_test, data.y_test),
            # the examples behind each accuracy: the report counts the test set's own noise
            "val/acc:n": len(data.y_val), "test/acc:n": len(data.y_test),
        }
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "generator": gen.get_state(), "epoch": epoch}
        trial.report(metrics, step=epoch, state=state)
