"""The PTM guidance term: supervision of the synthetic set by frozen pre-trained models.

    L = L_base(x_syn) + alpha * L_ptm(x_syn)

`ptm_loss` chooses the formulation of L_ptm for one PTM f (logits f(x), penultimate
features h(x)), with y_syn the synthetic labels and T the temperature (`none`, the REMOVE
ablation, is the base method alone: the config decides that, see DistillConfig.uses_ptm,
and no guidance is built):

- ce:     CE(f(x_syn), y_syn), the CLoM baseline of Lu et al. (2023).
- kl:     KL(p_class || softmax(f(x_syn) / T)), where p_class = mean over the real training
          samples of the class of softmax(f(x) / T) (the same T, so the loss is 0 exactly when
          the synthetic sample's tempered prediction equals the class's mean prediction).
          Averaged over synthetic samples; no T^2 factor.
- js:     Jensen-Shannon divergence between softmax(f(x_syn) / T) and p_class (as for kl):
          symmetric and bounded by ln 2, so a confidently wrong PTM cannot blow the term up.
- mse:    mean squared error between f(x_syn) and z_class, the mean logits of the PTM over
          the real training samples of the class.
- cosine: 1 - cos(f(x_syn), z_class), averaged over synthetic samples; on logits by default,
          on penultimate features h (and the class-mean features) with cosine_on="features".

Class targets (p_class, z_class, mean features) are computed once per PTM, on the real
training split, when the guidance is built.

`ptm_aggregation` chooses how a pool of PTMs is used each iteration:
- single:   one PTM drawn uniformly at random (the baseline; 1 PTM forward pass).
- ensemble: the mean of the losses of all PTMs (len(pool) forward passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

Formulation = Literal["ce", "kl", "js", "mse", "cosine"]
PTMLoss = Literal["none", Formulation]
PTMAggregation = Literal["single", "ensemble"]
CosineOn = Literal["logits", "features"]


@dataclass(frozen=True)
class ClassTargets:
    """Per-class statistics of one PTM on the real training set."""

    logits: torch.Tensor
    """(num_classes, num_classes): mean logits z_class."""
    probs: torch.Tensor
    """(num_classes, num_classes): mean softmax(logits / T) p_class."""
    features: torch.Tensor
    """(num_classes, D): mean penultimate features."""


@torch.no_grad()
def class_targets(
    ptm: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    temperature: float = 1.0,
    batch_size: int = 1024,
) -> ClassTargets:
    """Mean logits, tempered softmax and features of `ptm` per class of (x, y)."""
    sums_z = sums_p = sums_h = None
    counts = torch.bincount(y, minlength=num_classes).to(x.dtype).clamp_min(1)[:, None]  # (C, 1)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        h = ptm.embed(xb)  # (B, D)
        z = ptm.classifier(h)  # (B, C)
        p = F.softmax(z / temperature, dim=1)
        if sums_z is None:
            sums_z = torch.zeros(num_classes, z.shape[1], device=x.device)
            sums_p = torch.zeros_like(sums_z)
            sums_h = torch.zeros(num_classes, h.shape[1], device=x.device)
        sums_z.index_add_(0, yb, z)
        sums_p.index_add_(0, yb, p)
        sums_h.index_add_(0, yb, h)
    return ClassTargets(logits=sums_z / counts, probs=sums_p / counts, features=sums_h / counts)


def ptm_loss(
    kind: Formulation,
    logits: torch.Tensor,
    y: torch.Tensor,
    targets: ClassTargets | None = None,
    temperature: float = 1.0,
    features: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_ptm for one PTM's outputs on the synthetic batch (see the module docstring).

    logits: (N, C) PTM logits of x_syn; y: (N,) labels; features: (N, D), only for
    cosine on features (pass features instead of None to select it).
    """
    if kind == "ce":
        return F.cross_entropy(logits, y)
    if targets is None:
        raise ValueError(f"ptm_loss={kind!r} needs class targets")
    if kind == "kl":
        log_q = F.log_softmax(logits / temperature, dim=1)
        return F.kl_div(log_q, targets.probs[y], reduction="batchmean")  # KL(p_class || q)
    if kind == "js":
        q, p = F.softmax(logits / temperature, dim=1), targets.probs[y]
        log_m = (0.5 * (p + q)).clamp_min(1e-12).log()
        # JS = (KL(p || m) + KL(q || m)) / 2; kl_div(log_m, t) is KL(t || m)
        return 0.5 * (F.kl_div(log_m, p, reduction="batchmean") + F.kl_div(log_m, q, reduction="batchmean"))
    if kind == "mse":
        return F.mse_loss(logits, targets.logits[y])
    if kind == "cosine":
        v, t = (logits, targets.logits) if features is None else (features, targets.features)
        return (1 - F.cosine_similarity(v, t[y], dim=1)).mean()
    raise ValueError(f"ptm_loss: {kind!r} is not allowed; allowed values: {', '.join(get_args(Formulation))}")


class PTMGuidance:
    """The guidance term over a pool of frozen PTMs, with class targets computed once each."""

    def __init__(
        self,
        ptms: list[nn.Module],
        x_real: torch.Tensor,
        y_real: torch.Tensor,
        num_classes: int,
        loss: Formulation = "ce",
        aggregation: PTMAggregation = "single",
        temperature: float = 1.0,
        cosine_on: CosineOn = "logits",
    ):
        if not ptms:
            raise ValueError(f"ptm_loss={loss!r} needs a PTM pool, got none")
        self.ptms = list(ptms)
        for p in self.ptms:
            p.eval()
            p.requires_grad_(False)
        self.loss, self.aggregation = loss, aggregation
        self.temperature, self.cosine_on = temperature, cosine_on
        self.targets: list[ClassTargets | None] = [
            class_targets(p, x_real, y_real, num_classes, temperature) if loss != "ce" else None
            for p in self.ptms
        ]

    def loss_of(self, i: int, x_syn: torch.Tensor, y_syn: torch.Tensor) -> torch.Tensor:
        """L_ptm under PTM i alone."""
        ptm = self.ptms[i]
        h = ptm.embed(x_syn)
        logits = ptm.classifier(h)
        feats = h if (self.loss == "cosine" and self.cosine_on == "features") else None
        return ptm_loss(self.loss, logits, y_syn, self.targets[i], self.temperature, feats)

    def __call__(
        self, x_syn: torch.Tensor, y_syn: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        """(L_ptm aggregated over the pool, number of PTM forward passes)."""
        if self.aggregation == "single":
            i = int(torch.randint(len(self.ptms), (1,), generator=generator))
            return self.loss_of(i, x_syn, y_syn), 1
        losses = [self.loss_of(i, x_syn, y_syn) for i in range(len(self.ptms))]
        return torch.stack(losses).mean(), len(losses)
