"""The distillation loop: the synthetic set and everything that updates it, one step at a time.

    d = Distiller(cfg, data, ptms=[p.net for p in load_pool(pool_dir)], seed=0)
    for _ in range(cfg.iterations):
        losses = d.step()                     # one iteration; losses, gradient ratio, cost
    x_syn, y_syn = d.synthetic_set()

One iteration of DM: draw a fresh network, draw `batch_real` real samples per class, apply
one DSA transform with the same parameters to the real and synthetic samples of each class,
L = L_DM + w * L_ptm (guidance.py), one SGD step on the synthetic set. One iteration of
DC is one outer loop of the DC paper (fresh network; `dc_outer_loop` matching steps, each
followed by `dc_inner_loop` network updates on the synthetic set).

The two terms' gradients on x_syn are taken apart, so every step knows how strong the PTM
term is: it returns ||w * grad L_ptm|| and ||grad L_base||, and `grad_ratio` of a run of
steps is the ratio of their means (`distill/ptm_grad_ratio`; a mean of per-step ratios
would be dominated by the steps where L_base's gradient happens to be small). Under
alpha_mode absolute w = alpha; under relative, w = alpha * (running mean of
||grad L_base||) / (running mean of ||grad L_ptm||), which holds that ratio near alpha.

`state_dict()` holds everything needed to resume bit-for-bit: the synthetic set, its
optimiser, the random generator, the running estimate and the iteration.
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F
from torch import nn

from core.device import resolve_device
from core.distill.augment import DiffAugment
from core.distill.config import DistillConfig
from core.distill.data import Dataset
from core.distill.guidance import PTMGuidance
from core.distill.methods import dc_loss, dm_loss
from core.distill.networks import seeded_network
from core.distill.train import autocast

NORM_DECAY = 0.5
"""Decay of the running means of ||grad L_base|| and ||grad L_ptm|| (relative alpha). A
single step's norms vary with the network and the PTM drawn; normalising by them alone
would make the PTM term a unit-norm direction, a different method. The memory is short
because both norms drift as the set converges (the PTM's as its loss falls): measured
over 30 DM steps on MNIST-1D, windows of 10, all four formulations, random and trained
PTMs, the window ratio stayed within 0.84-1.06 of its target at 0.5, but fell to 0.73
(trained PTMs, ce) at 0.9, whose estimate lags the drift."""


def grad_ratio(steps: list[dict[str, float]]) -> float:
    """||w * grad L_ptm|| / ||grad L_base|| over a run of steps: the ratio of their means."""
    base = sum(s["distill/base_grad_norm"] for s in steps)
    return sum(s["distill/ptm_grad_norm"] for s in steps) / base if base > 0 else 0.0


class Distiller:
    """The synthetic set and everything that updates it, one `step()` at a time."""

    def __init__(self, cfg: DistillConfig, data: Dataset, ptms: list[nn.Module] | None = None, seed: int = 0):
        self.cfg, self.data, self.seed = cfg, data, seed
        self.device = resolve_device(cfg.device)
        self.gen = torch.Generator().manual_seed(seed)  # CPU: the same draws on any device
        self.x_real = data.x_train.to(self.device)
        self.class_idx = [i.to(self.device) for i in data.class_indices()]
        c = data.num_classes
        # the scale `syn_norm` holds every synthetic sample at
        self.sample_std = float(self.x_real.flatten(1).std(1).mean())

        # synthetic set: (C * ipc, *input_shape), labels 0,0,..,1,1,..
        self.y_syn = torch.arange(c, device=self.device).repeat_interleave(cfg.ipc)
        if cfg.init == "real":
            x0 = torch.cat([self.x_real[self._draw(c_, cfg.ipc)] for c_ in range(c)])
        else:
            x0 = torch.randn(c * cfg.ipc, *data.input_shape, generator=self.gen).to(self.device)
        self.x_syn = x0.detach().clone().requires_grad_(True)
        self.syn_std0 = float(x0.std())
        self.opt = torch.optim.SGD([self.x_syn], lr=cfg.lr_img, momentum=cfg.momentum_img)
        self.aug = DiffAugment.for_input(data.input_shape, cfg.dsa_strategy or None) if cfg.dsa else None

        self.guidance: PTMGuidance | None = None
        if cfg.uses_ptm:
            if not ptms:
                raise ValueError(f"DistillConfig.ptm_loss={cfg.ptm_loss!r} needs a PTM pool, got none")
            self.guidance = PTMGuidance(
                [p.to(self.device) for p in ptms], self.x_real, data.y_train.to(self.device), c,
                cfg.ptm_loss, cfg.ptm_aggregation, cfg.temperature, cfg.cosine_on,  # type: ignore[arg-type]
            )
        # running means of ||grad L_base|| and ||grad L_ptm||; they share their start-up
        # bias, which cancels in their ratio
        self.norm_means = (0.0, 0.0)
        self.iteration = 0

    # --- the loop --------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One distillation iteration. Returns loss/base, loss/ptm, loss/total,
        distill/base_grad_norm, distill/ptm_grad_norm (of the weighted term),
        distill/ptm_weight, time/sec_per_iter, time/ptm_sec, cost/ptm_forwards."""
        t0 = time.perf_counter()
        out = self._step_dm() if self.cfg.method == "dm" else self._step_dc()
        if self.cfg.syn_norm == "sample":
            self._renormalise()
        self.iteration += 1
        _sync(self.device)
        out["time/sec_per_iter"] = time.perf_counter() - t0
        return out

    def _step_dm(self) -> dict[str, float]:
        c = self.data.num_classes
        net = self._fresh_net().requires_grad_(False)  # only x_syn learns
        x_real, y_real = self._real_batch()
        x_real, x_syn = self._augment(x_real, y_real, self.x_syn, self.y_syn)
        with autocast(self.device, self.cfg.precision):
            base = dm_loss(net, x_real, y_real, x_syn, self.y_syn, c).float()
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
            with autocast(self.device, cfg.precision):
                base = dc_loss(net, x_real, y_real, x_syn, self.y_syn, c).float()
            out = self._update(base, x_syn, self.y_syn)
            for k, v in out.items():  # losses and norms averaged, costs summed
                totals[k] = totals.get(k, 0.0) + (v if k.startswith(("time/", "cost/")) else v / outer)
            if ol == outer - 1:
                break
            x_det = self.x_syn.detach()
            for _ in range(inner):  # train the network on the synthetic set
                xb = self.aug(x_det, self.gen) if self.aug is not None else x_det
                with autocast(self.device, cfg.precision):
                    loss = F.cross_entropy(net(xb), self.y_syn)
                net_opt.zero_grad(set_to_none=True)
                loss.backward()
                net_opt.step()
        return totals

    def _update(self, base: torch.Tensor, x_syn: torch.Tensor, y_syn: torch.Tensor) -> dict[str, float]:
        """x_syn <- SGD step on L_base + w * L_ptm; the two gradients taken apart to measure
        their ratio, the PTM part timed on its own."""
        self.opt.zero_grad(set_to_none=True)
        ptm_val, forwards, ptm_sec, weight, n_base, n_ptm = 0.0, 0, 0.0, 0.0, 0.0, 0.0
        if self.guidance is None:
            base.backward()
            n_base = float(self.x_syn.grad.norm())
        else:
            # x_syn's augmentation graph is shared by both terms
            (g_base,) = torch.autograd.grad(base, self.x_syn, retain_graph=True)
            _sync(self.device)
            t = time.perf_counter()
            with autocast(self.device, self.cfg.precision):
                ptm, forwards = self.guidance(x_syn, y_syn, self.gen)
            ptm = ptm.float()
            (g_ptm,) = torch.autograd.grad(ptm, self.x_syn)
            _sync(self.device)
            ptm_sec, ptm_val = time.perf_counter() - t, float(ptm.detach())
            n_base, n_ptm = float(g_base.norm()), float(g_ptm.norm())
            weight = self._ptm_weight(n_base, n_ptm)
            self.x_syn.grad = g_base + weight * g_ptm
        self.opt.step()
        base_val = float(base.detach())
        return {
            "loss/base": base_val,
            "loss/ptm": ptm_val,
            "loss/total": base_val + weight * ptm_val,
            "distill/base_grad_norm": n_base,
            "distill/ptm_grad_norm": weight * n_ptm,
            "distill/ptm_weight": weight,
            "time/ptm_sec": ptm_sec,
            "cost/ptm_forwards": float(forwards),
        }

    def _ptm_weight(self, n_base: float, n_ptm: float) -> float:
        """The weight of L_ptm this step: alpha, or alpha times the ratio of the running means."""
        if self.cfg.alpha_mode == "absolute":
            return self.cfg.alpha
        # this step's norms enter the means before they are used, so the first step has some
        mean_base, mean_ptm = (NORM_DECAY * m + (1 - NORM_DECAY) * n
                               for m, n in zip(self.norm_means, (n_base, n_ptm)))
        self.norm_means = (mean_base, mean_ptm)
        return self.cfg.alpha * mean_base / max(mean_ptm, 1e-12)

    @torch.no_grad()
    def _renormalise(self) -> None:
        """Every synthetic sample back to the real data's per-sample std, about its own mean."""
        flat = self.x_syn.view(len(self.x_syn), -1)  # (N, D)
        mean = flat.mean(1, keepdim=True)
        flat.sub_(mean).mul_(self.sample_std / flat.std(1, keepdim=True).clamp_min(1e-8)).add_(mean)

    # --- state -----------------------------------------------------------------------

    def synthetic_set(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(x_syn, y_syn), detached copies."""
        return self.x_syn.detach().clone().to(device), self.y_syn.clone().to(device)

    def statistics(self) -> dict[str, float]:
        """The synthetic set's drift: distill/syn_mean, distill/syn_std and
        distill/syn_std_ratio (std now / std at initialisation)."""
        x = self.x_syn.detach()
        std = float(x.std())
        return {"distill/syn_mean": float(x.mean()), "distill/syn_std": std,
                "distill/syn_std_ratio": std / max(self.syn_std0, 1e-12)}

    def state_dict(self) -> dict:
        """Everything needed to resume: synthetic set, optimiser, generator, iteration."""
        return {
            "x_syn": self.x_syn.detach().cpu().clone(),
            "optimizer": _to_cpu(self.opt.state_dict()),
            "generator": self.gen.get_state(),
            "norm_means": self.norm_means,
            "syn_std0": self.syn_std0,
            "iteration": self.iteration,
            "config": dataclasses.asdict(self.cfg),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.x_syn.copy_(state["x_syn"].to(self.device))
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        self.norm_means = tuple(state["norm_means"])
        self.syn_std0 = state["syn_std0"]
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
