"""Evaluation of a (synthetic) training set: train K fresh networks on it, test on real data.

`evaluate_set` trains and tests K networks of one architecture; `evaluate_synthetic` is the
evaluation protocol of a DistillConfig (the IPC accuracy and the cross-architecture ones).

The hot loop of the whole study. The K networks are trained batched: their parameters are
stacked (torch.func.stack_module_state) and one vmapped functional forward trains all K at
once, each on its own shuffling and augmentation, so the result is the same as K
sequential runs with the same seeds, up to floating-point reordering. SGD is elementwise,
so one SGD over the stacked tensors is K independent SGDs.

Reported accuracy is the FINAL-epoch accuracy of each network on the real test set (and on
the validation split, for early stopping), mean and std over the K networks; never the
best accuracy over training, which would select on the test set. std is the population
std (ddof=0), as in the DC/DM reference code.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from core.distill.augment import DiffAugment
from core.distill.config import DistillConfig
from core.distill.data import Dataset
from core.distill.networks import NetConfig, seeded_network
from core.distill.train import Augment, TrainConfig, accuracy, autocast, make_optimizer, train_network


@dataclass(frozen=True)
class EvalResult:
    """Final-epoch accuracies of K networks trained on one training set."""

    test_accs: tuple[float, ...]
    val_accs: tuple[float, ...]
    train_loss: float
    """Mean over the K networks of the last epoch's training loss."""
    seconds: float = field(default=0.0, compare=False)

    @property
    def test_mean(self) -> float:
        return float(np.mean(self.test_accs))

    @property
    def test_std(self) -> float:
        return float(np.std(self.test_accs))

    @property
    def val_mean(self) -> float:
        return float(np.mean(self.val_accs)) if self.val_accs else float("nan")


def evaluate_set(
    x: torch.Tensor,
    y: torch.Tensor,
    data: Dataset,
    net_cfg: NetConfig,
    train_cfg: TrainConfig,
    num_nets: int,
    seed: int,
    augment: Augment | None = None,
    batched: bool | None = None,
) -> EvalResult:
    """Train `num_nets` fresh `net_cfg` networks on (x, y), test them on data's val/test.

    Network k is initialised from seed `seed * 1000 + k` and shuffled/augmented by a
    generator with the same seed, in both the batched and the sequential path, so both
    give the same networks. `batched=None` picks by device: batched (one vmapped forward
    for all K) on a GPU, where small kernels are launch-bound; one after another on the
    CPU, where they are compute-bound and the vmapped grouped convolutions measured slower
    (0.68x at 1 thread, 0.77x at 2; benchmarks/distill.py, BENCHMARKS.md).
    """
    t0 = time.perf_counter()
    device = x.device
    seeds = [seed * 1000 + k for k in range(num_nets)]
    nets = [seeded_network(net_cfg, data.input_shape, data.num_classes, s).to(device) for s in seeds]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    x, y = x.detach(), y.detach()

    if batched is None:
        batched = device.type == "cuda"
    if batched:
        stacked = StackedNets(nets)
        loss = stacked.fit(x, y, train_cfg, gens, augment)
        test_accs = stacked.accuracy(x_test, y_test)
        val_accs = stacked.accuracy(x_val, y_val) if len(x_val) else []
    else:
        losses = [train_network(n, x, y, train_cfg, g, augment) for n, g in zip(nets, gens)]
        loss = float(np.mean(losses))
        test_accs = [accuracy(n, x_test, y_test) for n in nets]
        val_accs = [accuracy(n, x_val, y_val) for n in nets] if len(x_val) else []
    return EvalResult(
        test_accs=tuple(test_accs), val_accs=tuple(val_accs), train_loss=loss,
        seconds=time.perf_counter() - t0,
    )


class StackedNets:
    """K networks of one architecture as stacked parameters, run by one vmapped forward."""

    def __init__(self, nets: list[torch.nn.Module]):
        self.k = len(nets)
        self.params, self.buffers = stack_module_state(nets)  # name -> (K, ...)
        self.base = copy.deepcopy(nets[0]).to("meta")  # structure only, no storage

        def fwd(params, buffers, xb):
            return functional_call(self.base, (params, buffers), (xb,))

        self.fwd_each = vmap(fwd)  # x: (K, B, ...) -> (K, B, classes)
        self.fwd_shared = vmap(fwd, in_dims=(0, 0, None))  # x: (B, ...) -> (K, B, classes)

    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        cfg: TrainConfig,
        gens: list[torch.Generator],
        augment: Augment | None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> float:
        """Train all K for cfg.epochs; the same per-network draws as `train_epoch`.

        `on_epoch(epoch)` runs after each epoch (1-based). Returns the mean last-epoch loss.
        """
        self.base.train()
        opt, sched = make_optimizer(list(self.params.values()), cfg)
        n = len(x)
        loss_k = torch.zeros(self.k)
        for epoch in range(1, cfg.epochs + 1):
            perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(x.device)  # (K, N)
            total, seen = torch.zeros(self.k, device=x.device), 0
            for i in range(0, n, cfg.batch_size):
                idx = perms[:, i : i + cfg.batch_size]  # (K, B)
                xb, yb = x[idx], y[idx]  # (K, B, ...), (K, B)
                if augment is not None:
                    xb = torch.stack([augment(xb[j], g) for j, g in enumerate(gens)])
                with autocast(x.device, cfg.precision):
                    logits = self.fwd_each(self.params, self.buffers, xb)  # (K, B, classes)
                    # per-network mean loss; their sum gives each network its own gradient
                    per_net = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
                    per_net = per_net.float().view(self.k, -1).mean(1)  # (K,)
                opt.zero_grad(set_to_none=True)
                per_net.sum().backward()
                opt.step()
                total += per_net.detach() * idx.shape[1]
                seen += idx.shape[1]
            sched.step()
            loss_k = total / seen
            if on_epoch is not None:
                on_epoch(epoch)
        return float(loss_k.mean())

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> list[float]:
        self.base.eval()
        correct = torch.zeros(self.k, device=x.device)
        for i in range(0, len(x), batch_size):
            logits = self.fwd_shared(self.params, self.buffers, x[i : i + batch_size])  # (K, B, C)
            correct += (logits.argmax(-1) == y[i : i + batch_size]).sum(1)
        self.base.train()
        return (correct / max(len(x), 1)).tolist()


def evaluate_synthetic(
    cfg: DistillConfig,
    data: Dataset,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    archs: tuple[str, ...] = (),
) -> dict[str, float]:
    """The evaluation protocol of `cfg` on the synthetic set (x, y).

    Metrics: val/acc, test/acc, test/acc_std (cfg.eval_arch); test/acc_<arch> and
    test/acc_std_<arch> for eval_arch and every arch of `archs`; test/acc_cross, their mean
    over `archs` (so a difference to the baseline is the cross-architecture gain);
    time/eval_sec. Beside every accuracy `m`, `m:n` is the number of evaluation examples
    behind it (the split's size: the networks are averaged on the same examples).
    Networks are drawn from `seed` only, so every variant is evaluated by the same ones.
    """
    device = x.device
    aug = DiffAugment.for_input(data.input_shape, cfg.dsa_strategy or None) if cfg.eval_dsa else None
    n_test, n_val = float(len(data.y_test)), float(len(data.y_val))
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    for arch in dict.fromkeys((cfg.eval_arch, *archs)):  # ordered, no duplicates
        r = evaluate_set(x, y, _on_device(data, device), cfg.eval_net(arch), cfg.eval_train,
                         cfg.eval_nets_of(arch), seed=seed, augment=aug)
        metrics[f"test/acc_{arch}"], metrics[f"test/acc_{arch}:n"] = r.test_mean, n_test
        metrics[f"test/acc_std_{arch}"] = r.test_std
        if arch == cfg.eval_arch:
            metrics["test/acc"], metrics["test/acc:n"], metrics["test/acc_std"] = r.test_mean, n_test, r.test_std
            metrics["val/acc"], metrics["val/acc:n"] = r.val_mean, n_val
    if archs:
        metrics["test/acc_cross"] = sum(metrics[f"test/acc_{a}"] for a in archs) / len(archs)
        metrics["test/acc_cross:n"] = n_test
    metrics["time/eval_sec"] = time.perf_counter() - t0
    return metrics


def _on_device(data: Dataset, device: torch.device) -> Dataset:
    if data.x_train.device == device:
        return data
    return dataclasses.replace(
        data, **{f: getattr(data, f).to(device) for f in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    )
