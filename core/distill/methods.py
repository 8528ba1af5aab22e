"""Base distillation objectives: DM (distribution matching) and DC (gradient matching).

DM (Zhao & Bilen, WACV 2023): under a freshly initialised network each iteration, match
the per-class mean embedding of real and synthetic samples:
    L_DM = sum_c || mean_{x in real_c} h(x) - mean_{s in syn_c} h(s) ||^2
All classes go through ONE forward (instance norm is per sample, so mixing classes in a
batch changes nothing); the class means come from an index_add over the labels.

DC (Zhao, Mopuri & Bilen, ICLR 2021): match, per class, the gradient of the classification
loss with respect to the network weights on real and on synthetic samples, layer by layer
with the paper's distance (sum over output units of 1 - cosine similarity; bias and
normalisation parameters skipped):
    L_DC = sum_c sum_layers d(grad_W CE(real_c), grad_W CE(syn_c))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_means(emb: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, D) mean of emb (N, D) over the samples of each class."""
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device, dtype=emb.dtype)
    sums = sums.index_add(0, y, emb)
    counts = torch.bincount(y, minlength=num_classes).clamp_min(1).to(emb.dtype)
    return sums / counts[:, None]


def dm_loss(
    net: nn.Module,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    x_syn: torch.Tensor,
    y_syn: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """L_DM: squared distance of per-class mean embeddings, summed over classes."""
    with torch.no_grad():
        mu_real = class_means(net.embed(x_real), y_real, num_classes)  # (C, D)
    mu_syn = class_means(net.embed(x_syn), y_syn, num_classes)  # (C, D)
    present = torch.bincount(y_syn, minlength=num_classes) > 0
    return ((mu_real - mu_syn)[present] ** 2).sum()


def gradient_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """DC's layer distance: sum over output units of 1 - cos; 0 for 1D (bias/norm) tensors."""
    if g_real.dim() == 1:
        return g_real.new_zeros(())
    a, b = g_real.flatten(1), g_syn.flatten(1)  # (out, in * k...)
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)).sum()


def dc_loss(
    net: nn.Module,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    x_syn: torch.Tensor,
    y_syn: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """L_DC: per-class gradient matching, summed over classes and layers."""
    params = [p for p in net.parameters() if p.requires_grad]
    total = x_syn.new_zeros(())
    for c in range(num_classes):
        real_c, syn_c = x_real[y_real == c], x_syn[y_syn == c]
        if len(real_c) == 0 or len(syn_c) == 0:
            continue
        g_real = torch.autograd.grad(F.cross_entropy(net(real_c), y_real[y_real == c]), params)
        g_syn = torch.autograd.grad(
            F.cross_entropy(net(syn_c), y_syn[y_syn == c]), params, create_graph=True
        )
        total = total + sum(gradient_distance(gr.detach(), gs) for gr, gs in zip(g_real, g_syn))
    return total


# The DC paper's outer/inner loop counts per IPC (outer: matching steps per fresh network,
# inner: network updates on the synthetic set between them).
DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def dc_loops(ipc: int) -> tuple[int, int]:
    """(outer_loop, inner_loop) of the DC paper for `ipc` (nearest listed IPC below)."""
    key = max([k for k in DC_LOOPS if k <= ipc], default=1)
    return DC_LOOPS[key]
