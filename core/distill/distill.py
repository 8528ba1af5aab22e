"""PTM-guided dataset distillation, top to bottom: setup, step, evaluate, save.

    cfg = DistillConfig(ipc=10, ptm_loss="ce", alpha=0.1)
    data = load_dataset(DataConfig())
    d = Distiller(cfg, data, ptms=[p.net for p in load_pool(pool_dir)])
    for it in range(cfg.iterations):
        losses = d.step()                      # one iteration; losses and cost
        if (it + 1) % cfg.eval_every == 0:
            metrics = d.evaluate()             # K fresh networks on the synthetic set
    save_picture(*d.synthetic_set(), "syn.png")

`Distiller.state_dict()` holds everything needed to resume bit-for-bit: the synthetic set,
its optimiser, the random generator and the iteration. `run` does the whole loop for a
notebook; the trainable drives `step`/`evaluate` itself to report and checkpoint.

One iteration of DM: draw a fresh network, draw `batch_real` real samples per class, apply
one DSA transform with the same parameters to the real and synthetic samples of each class,
L = L_DM + alpha * L_ptm (guidance.py), one SGD step on the synthetic set. One iteration of
DC is one outer loop of the DC paper (fresh network; `dc_outer_loop` matching steps, each
followed by `dc_inner_loop` network updates on the synthetic set).

Optimiser settings from the papers: synthetic set by SGD with momentum 0.5; lr_img 1.0
(DM) or 0.1 (DC; set it); DC network lr 0.01; real batch 256 per class (DM) / 256 (DC).
Evaluation: SGD 0.01, momentum 0.9, weight decay 5e-4, 300 epochs, lr x0.1 at half, DSA.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.distill._checks import check_config, require, resolve_device
from core.distill.augment import DiffAugment
from core.distill.data import Dataset
from core.distill.evaluate import EvalResult, evaluate_set
from core.distill.guidance import CosineOn, PTMAggregation, PTMGuidance, PTMLoss
from core.distill.methods import dc_loops, dc_loss, dm_loss
from core.distill.networks import Arch, NetConfig, seeded_network
from core.distill.train import TrainConfig


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run: base method, synthetic set, PTM term, evaluation."""

    method: Literal["dm", "dc"] = "dm"
    """Base objective: dm (distribution matching) or dc (gradient matching)."""
    ipc: int = 10
    """Synthetic images (samples) per class."""
    iterations: int = 1000
    """Distillation iterations (DM: one SGD step each; DC: one outer loop each)."""
    lr_img: float = 1.0
    """Learning rate of the synthetic set (DM paper: 1.0; DC paper: 0.1). Under instance norm
    the embedding is scale-invariant, so the synthetic set's norm only grows; at IPC 1 on
    MNIST-1D its std reaches ~7 within 30 iterations at 1.0 (~2 at 0.1)."""
    momentum_img: float = 0.5
    """SGD momentum of the synthetic set (both papers)."""
    batch_real: int = 256
    """Real samples drawn per class each iteration."""
    init: Literal["real", "noise"] = "real"
    """Initialise the synthetic set from random real samples of each class, or N(0, 1) noise."""
    dsa: bool = True
    """Differentiable Siamese augmentation while distilling."""
    dsa_strategy: str = ""
    """DSA ops joined by "_"; empty = the default for the input (see augment.py)."""
    net: NetConfig = NetConfig()
    """Network drawn fresh each iteration to distil with (the literature's ConvNet)."""
    ptm_loss: PTMLoss = "none"
    """PTM guidance formulation: none (base method alone), ce (CLoM), kl, mse, cosine."""
    ptm_aggregation: PTMAggregation = "single"
    """single: one random PTM per iteration; ensemble: mean of the losses of all PTMs."""
    alpha: float = 0.1
    """Weight of the PTM term (ignored when ptm_loss is none)."""
    temperature: float = 1.0
    """Temperature T of the kl formulation (targets and predictions alike)."""
    cosine_on: CosineOn = "logits"
    """cosine formulation on the PTM's logits or on its penultimate features."""
    dc_outer_loop: int = 0
    """DC: matching steps per fresh network; 0 = the DC paper's value for this IPC."""
    dc_inner_loop: int = 0
    """DC: network updates between matching steps; 0 = the DC paper's value for this IPC."""
    dc_lr_net: float = 0.01
    """DC: learning rate of the network updated on the synthetic set."""
    eval_every: int = 200
    """Iterations between evaluations (read by the driver of the loop)."""
    eval_arch: Arch = "convnet"
    """Architecture the IPC accuracy is measured with (the same as `net` in the literature)."""
    cross_arch: tuple[Arch, ...] = ()
    """Other architectures to evaluate on (cross-architecture generalisation)."""
    eval_nets: int = 5
    """Fresh networks trained on the synthetic set per evaluation (mean +- std over them)."""
    cross_arch_nets: int = 0
    """Networks per cross-architecture evaluation; 0 = eval_nets. Fewer is cheaper: the
    error bars of a study come from its seeds, one network per seed is a valid sample."""
    eval_epochs: int = 300
    """Epochs each evaluation network is trained (lr x0.1 at half)."""
    eval_dsa: bool = True
    """DSA while training the evaluation networks (as DSA/DM evaluate)."""
    seed: int = 0
    """Seed of everything: synthetic init, real batches, networks, augmentation, evaluation."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string."""

    def __post_init__(self) -> None:
        check_config(self)
        require(self.ipc >= 1, self, "ipc", "must be >= 1")
        require(self.iterations >= 0, self, "iterations", "must be >= 0")
        require(self.lr_img > 0, self, "lr_img", "must be > 0")
        require(self.batch_real >= 1, self, "batch_real", "must be >= 1")
        require(self.alpha >= 0, self, "alpha", "must be >= 0")
        require(self.temperature > 0, self, "temperature", "must be > 0")
        require(self.eval_every >= 0, self, "eval_every", "must be >= 0")
        require(self.eval_nets >= 1, self, "eval_nets", "must be >= 1")
        require(self.cross_arch_nets >= 0, self, "cross_arch_nets", "must be >= 0")
        require(self.eval_epochs >= 1, self, "eval_epochs", "must be >= 1")
        if self.dsa_strategy:  # unknown ops fail here; 2D-only ops on 1D data fail in Distiller
            try:
                DiffAugment(2, self.dsa_strategy)
            except ValueError as exc:
                raise ValueError(f"DistillConfig.dsa_strategy: {exc}") from None

    @property
    def uses_ptm(self) -> bool:
        """Whether the PTM term is on (a pool is needed)."""
        return self.ptm_loss != "none" and self.alpha > 0

    @property
    def dc_loops(self) -> tuple[int, int]:
        """(outer, inner) loop counts of DC, with 0 replaced by the paper's value."""
        outer, inner = dc_loops(self.ipc)
        return (self.dc_outer_loop or outer, self.dc_inner_loop or inner)

    def eval_net(self, arch: str) -> NetConfig:
        """The NetConfig an evaluation on `arch` uses: `net` itself, or `arch` with its norm."""
        if arch == self.net.arch:
            return self.net
        return NetConfig(arch=arch, norm=self.net.norm, activation=self.net.activation)  # type: ignore[arg-type]

    @property
    def eval_train(self) -> TrainConfig:
        """The recipe every evaluation network is trained with."""
        return TrainConfig(epochs=self.eval_epochs)


class Distiller:
    """The synthetic set and everything that updates it, one `step()` at a time."""

    def __init__(self, cfg: DistillConfig, data: Dataset, ptms: list[nn.Module] | None = None):
        self.cfg, self.data = cfg, data
        self.device = resolve_device(cfg.device)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on any device
        self.x_real = data.x_train.to(self.device)
        self.class_idx = [i.to(self.device) for i in data.class_indices()]
        c = data.num_classes

        # synthetic set: (C * ipc, *input_shape), labels 0,0,..,1,1,..
        self.y_syn = torch.arange(c, device=self.device).repeat_interleave(cfg.ipc)
        if cfg.init == "real":
            x0 = torch.cat([self.x_real[self._draw(c_, cfg.ipc)] for c_ in range(c)])
        else:
            x0 = torch.randn(c * cfg.ipc, *data.input_shape, generator=self.gen).to(self.device)
        self.x_syn = x0.detach().clone().requires_grad_(True)
        self.opt = torch.optim.SGD([self.x_syn], lr=cfg.lr_img, momentum=cfg.momentum_img)
        self.aug = DiffAugment.for_input(data.input_shape, cfg.dsa_strategy or None) if cfg.dsa else None

        self.guidance: PTMGuidance | None = None
        if cfg.uses_ptm:
            if not ptms:
                raise ValueError(f"DistillConfig.ptm_loss={cfg.ptm_loss!r} needs a PTM pool, got none")
            ptms = [p.to(self.device) for p in ptms]
            self.guidance = PTMGuidance(
                ptms, self.x_real, data.y_train.to(self.device), c,
                cfg.ptm_loss, cfg.ptm_aggregation, cfg.temperature, cfg.cosine_on,
            )
        self.iteration = 0

    # --- the loop --------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One distillation iteration. Returns losses and cost:
        loss/base, loss/ptm, loss/total, time/sec_per_iter, time/ptm_sec, cost/ptm_forwards."""
        t0 = time.perf_counter()
        if self.cfg.method == "dm":
            out = self._step_dm()
        else:
            out = self._step_dc()
        self.iteration += 1
        _sync(self.device)
        out["time/sec_per_iter"] = time.perf_counter() - t0
        return out

    def _step_dm(self) -> dict[str, float]:
        c = self.data.num_classes
        net = self._fresh_net().requires_grad_(False)  # only x_syn learns
        x_real, y_real = self._real_batch()
        x_real, x_syn = self._augment(x_real, y_real, self.x_syn, self.y_syn)
        base = dm_loss(net, x_real, y_real, x_syn, self.y_syn, c)
        return self._update(base, x_syn, self.y_syn)

    def _step_dc(self) -> dict[str, float]:
        cfg, c = self.cfg, self.data.num_classes
        outer, inner = cfg.dc_loops
        net = self._fresh_net()
        net_opt = torch.optim.SGD(net.parameters(), lr=cfg.dc_lr_net)
        totals: dict[str, float] = {}
        for ol in range(outer):
            x_real, y_real = self._real_batch()
            x_real, x_syn = self._augment(x_real, y_real, self.x_syn, self.y_syn)
            out = self._update(dc_loss(net, x_real, y_real, x_syn, self.y_syn, c), x_syn, self.y_syn)
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + (v / outer if k.startswith("loss/") else v)
            if ol == outer - 1:
                break
            x_det = self.x_syn.detach()
            for _ in range(inner):  # train the network on the synthetic set
                xb = self.aug(x_det, self.gen) if self.aug is not None else x_det
                loss = F.cross_entropy(net(xb), self.y_syn)
                net_opt.zero_grad(set_to_none=True)
                loss.backward()
                net_opt.step()
        return totals

    def _update(self, base: torch.Tensor, x_syn: torch.Tensor, y_syn: torch.Tensor) -> dict[str, float]:
        """x_syn <- SGD step on base + alpha * L_ptm; the PTM part timed on its own."""
        self.opt.zero_grad(set_to_none=True)
        ptm_val, forwards, ptm_sec = 0.0, 0, 0.0
        if self.guidance is None:
            base.backward()
        else:
            base.backward(retain_graph=True)  # x_syn's augmentation graph is shared
            _sync(self.device)
            t = time.perf_counter()
            ptm, forwards = self.guidance(x_syn, y_syn, self.gen)
            (self.cfg.alpha * ptm).backward()
            _sync(self.device)
            ptm_sec, ptm_val = time.perf_counter() - t, float(ptm.detach())
        self.opt.step()
        base_val = float(base.detach())
        return {
            "loss/base": base_val,
            "loss/ptm": ptm_val,
            "loss/total": base_val + self.cfg.alpha * ptm_val,
            "time/ptm_sec": ptm_sec,
            "cost/ptm_forwards": float(forwards),
        }

    # --- evaluation ------------------------------------------------------------------

    def evaluate(self, archs: tuple[str, ...] | None = None) -> dict[str, float]:
        """Train cfg.eval_nets fresh networks on the synthetic set per architecture.

        Metrics: val/acc, test/acc, test/acc_std (eval_arch), and test/acc_<arch>,
        test/acc_std_<arch> for eval_arch and every arch of `archs` (default cfg.cross_arch).
        Evaluation draws from its own seed (seed, iteration), so it does not change the
        distillation's random stream, and every variant is evaluated by the same networks.
        """
        cfg = self.cfg
        archs = cfg.cross_arch if archs is None else archs
        x, y = self.synthetic_set(device=self.device)
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for arch in dict.fromkeys((cfg.eval_arch, *archs)):  # ordered, no duplicates
            r = self.evaluate_arch(arch, x, y)
            metrics[f"test/acc_{arch}"] = r.test_mean
            metrics[f"test/acc_std_{arch}"] = r.test_std
            if arch == cfg.eval_arch:
                metrics["test/acc"], metrics["test/acc_std"] = r.test_mean, r.test_std
                metrics["val/acc"] = r.val_mean
        metrics["time/eval_sec"] = time.perf_counter() - t0
        return metrics

    def evaluate_arch(self, arch: str, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> EvalResult:
        cfg = self.cfg
        if x is None or y is None:
            x, y = self.synthetic_set(device=self.device)
        aug = DiffAugment.for_input(self.data.input_shape, cfg.dsa_strategy or None) if cfg.eval_dsa else None
        data = _on_device(self.data, self.device)
        nets = cfg.eval_nets if arch == cfg.eval_arch else (cfg.cross_arch_nets or cfg.eval_nets)
        return evaluate_set(
            x, y, data, cfg.eval_net(arch), cfg.eval_train, nets,
            seed=cfg.seed * 100_003 + self.iteration, augment=aug,
        )

    # --- state -----------------------------------------------------------------------

    def synthetic_set(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(x_syn, y_syn), detached copies."""
        return self.x_syn.detach().clone().to(device), self.y_syn.clone().to(device)

    def state_dict(self) -> dict:
        """Everything needed to resume: synthetic set, optimiser, generator, iteration."""
        return {
            "x_syn": self.x_syn.detach().cpu().clone(),
            "optimizer": _to_cpu(self.opt.state_dict()),
            "generator": self.gen.get_state(),
            "iteration": self.iteration,
            "config": dataclasses.asdict(self.cfg),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.x_syn.copy_(state["x_syn"].to(self.device))
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        self.iteration = int(state["iteration"])

    # --- helpers ---------------------------------------------------------------------

    def _draw(self, c: int, n: int) -> torch.Tensor:
        """n random indices (without replacement, at most all) into x_real of class c."""
        idx = self.class_idx[c]
        perm = torch.randperm(len(idx), generator=self.gen)[:n].to(self.device)
        return idx[perm]

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """batch_real real samples of every class, (C * B, ...), labels in class order."""
        idx = [self._draw(c, self.cfg.batch_real) for c in range(self.data.num_classes)]
        y = torch.cat([torch.full((len(i),), c, device=self.device) for c, i in enumerate(idx)])
        return self.x_real[torch.cat(idx)], y

    def _fresh_net(self) -> nn.Module:
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.gen))
        return seeded_network(self.cfg.net, self.data.input_shape, self.data.num_classes, seed).to(self.device)

    def _augment(
        self, x_real: torch.Tensor, y_real: torch.Tensor, x_syn: torch.Tensor, y_syn: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same DSA transform, parameters shared per class (Siamese), on real and synthetic."""
        if self.aug is None:
            return x_real, x_syn
        params = self.aug.sample(self.data.num_classes, self.gen)
        return self.aug.apply(x_real, params, y_real), self.aug.apply(x_syn, params, y_syn)


def run(
    cfg: DistillConfig, data: Dataset, ptms: list[nn.Module] | None = None, out_dir: str | Path | None = None
) -> dict[str, float]:
    """Distil for cfg.iterations, evaluate at the end; save the picture to out_dir if given."""
    d = Distiller(cfg, data, ptms)
    secs, ptm_secs = [], []
    for _ in range(cfg.iterations):
        out = d.step()
        secs.append(out["time/sec_per_iter"])
        ptm_secs.append(out["time/ptm_sec"])
    metrics = d.evaluate()
    if secs:
        metrics["time/sec_per_iter"] = sum(secs) / len(secs)
        metrics["time/ptm_share"] = sum(ptm_secs) / max(sum(secs), 1e-12)
    if out_dir is not None:
        from core.distill.pictures import save_picture

        save_picture(*d.synthetic_set(), Path(out_dir) / "synthetic.png")
    return metrics


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _on_device(data: Dataset, device: torch.device) -> Dataset:
    if data.x_train.device == device:
        return data
    return dataclasses.replace(
        data, **{f: getattr(data, f).to(device) for f in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    )
