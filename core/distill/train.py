"""Plain supervised training of one network: the optimiser recipe of the distillation
literature (SGD, momentum 0.9, lr 0.01, weight decay 5e-4, lr x0.1 at half the epochs).

Used to train PTMs and, one network at a time, as the sequential reference that the
batched evaluation (core.distill.evaluate) must match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from core.device import native_bf16
from core.distill._checks import require

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""augment(x, generator) -> x of the same shape; differentiable where it matters."""

Precision = Literal["auto", "fp32", "bf16"]


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """auto -> bf16 where `device` computes bfloat16 in hardware (core.device.native_bf16),
    else fp32; fp32 and bf16 as they are."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision in ("fp32", "bf16"):
        return precision
    raise ValueError(f"precision: {precision!r} is not allowed; allowed values: {', '.join(get_args(Precision))}")


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """bf16: torch.autocast on `device`'s type (cpu or cuda) in bfloat16; fp32: nothing;
    auto: one of the two for `device` (resolve_precision)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained on a (real or synthetic) training set."""

    epochs: int = 300
    """Passes over the training set (300 for evaluation on a synthetic set, as in DC/DM)."""
    lr: float = 0.01
    """SGD learning rate."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay (L2)."""
    batch_size: int = 256
    """Minibatch size; a synthetic set smaller than this is one batch per epoch."""
    lr_decay_at_half: bool = True
    """Multiply the learning rate by 0.1 after half of the epochs, as in the literature."""
    precision: Precision = "auto"
    """auto, fp32 or bf16: forward and loss under bfloat16 autocast (parameters, gradients
    and the optimiser stay float32) for bf16, and for auto where the device computes
    bfloat16 in hardware. See DistillConfig.precision."""

    def __post_init__(self) -> None:
        require(self.epochs >= 1, self, "epochs", "must be >= 1")
        require(self.lr > 0, self, "lr", "must be > 0")
        require(self.batch_size >= 1, self, "batch_size", "must be >= 1")
        require(self.precision in get_args(Precision), self, "precision", f"must be one of {get_args(Precision)}")

    @property
    def milestones(self) -> list[int]:
        """Epochs after which the lr is multiplied by 0.1 (scheduler stepped once per epoch)."""
        return [self.epochs // 2] if self.lr_decay_at_half and self.epochs >= 2 else []


def make_optimizer(
    net: nn.Module | list[torch.Tensor], cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD over `net`'s parameters (or a list of tensors) and its per-epoch lr schedule."""
    params = list(net.parameters()) if isinstance(net, nn.Module) else list(net)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=0.1)
    return opt, sched


def train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: Augment | None = None,
    precision: Precision = "fp32",
) -> float:
    """One shuffled pass over (x, y); returns the mean training loss."""
    net.train()
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    total, n = x.new_zeros((), dtype=torch.float32), 0  # summed on the device: no sync per step
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator)
        with autocast(x.device, precision):
            loss = F.cross_entropy(net(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().float() * len(idx)
        n += len(idx)
    return float(total) / n


def train_network(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    augment: Augment | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> float:
    """Train `net` for cfg.epochs; `on_epoch(epoch, net)` after each (1-based). Final loss."""
    opt, sched = make_optimizer(net, cfg)
    loss = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        loss = train_epoch(net, opt, x, y, cfg.batch_size, generator, augment, cfg.precision)
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch, net)
    return loss


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Share of (x, y) that `net` classifies correctly, in eval mode (train mode restored)."""
    was_training = net.training
    net.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    net.train(was_training)
    return correct / max(len(x), 1)
