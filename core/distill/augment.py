"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021), for 2D images and 1D signals.

Every transform is differentiable with respect to the input, so it can sit between the
synthetic set and the loss. As in the reference code's default mode ("S"), each call applies
ONE transform drawn from the strategy, with parameters drawn per sample:

- color:  brightness + U(-0.5, 0.5); saturation x U(0, 2) around the channel mean;
          contrast x U(0.5, 1.5) around the sample mean.
- crop:   translation by up to 1/8 of each side (zero padding), whole pixels.
- cutout: a zeroed square of half the side at a random centre (2D); in 1D a zeroed segment
          of a quarter of the length (half of a 40-sample MNIST-1D signal often erases the
          whole digit pattern).
- flip:   horizontal flip with probability 1/2 (2D only).
- scale:  each axis stretched by U(1/1.2, 1.2) (bilinear resampling).
- rotate: up to +-15 degrees (2D only).

1D signals (N, C, L) use color, crop, cutout and scale along the length (no flip, no
rotation: a reversed MNIST-1D digit is not the same digit). "Siamese" means real and
synthetic samples see the same transform: `sample` draws parameters for n groups (for DM,
one per class) and `apply(x, params, groups)` uses the parameters of each sample's group.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

STRATEGY_2D = "color_crop_cutout_flip_scale_rotate"
STRATEGY_1D = "color_crop_cutout_scale"
_OPS_1D = {"color", "crop", "cutout", "scale"}
_OPS_2D = _OPS_1D | {"flip", "rotate"}

Params = dict[str, object]


class DiffAugment:
    """DSA for inputs of one dimensionality; `strategy` is ops joined by "_"."""

    def __init__(self, spatial_dims: int, strategy: str | None = None):
        if spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}")
        strategy = strategy or (STRATEGY_1D if spatial_dims == 1 else STRATEGY_2D)
        ops = tuple(strategy.split("_"))
        allowed = _OPS_1D if spatial_dims == 1 else _OPS_2D
        bad = [o for o in ops if o not in allowed]
        if bad:
            raise ValueError(f"DSA strategy {strategy!r}: unknown ops {bad} for "
                             f"{spatial_dims}D inputs; allowed: {sorted(allowed)}")
        self.spatial_dims = spatial_dims
        self.ops = ops

    @classmethod
    def for_input(cls, input_shape: tuple[int, ...], strategy: str | None = None) -> DiffAugment:
        return cls(len(input_shape) - 1, strategy)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch, independent parameters per sample."""
        return self.apply(x, self.sample(len(x), generator))

    def sample(self, n: int, generator: torch.Generator) -> Params:
        """Parameters for n samples (or n groups): one op for all, per-sample values (CPU)."""
        g = generator
        op = self.ops[int(torch.randint(len(self.ops), (1,), generator=g))]
        u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
        p: Params = {"op": op}
        if op == "color":
            p["brightness"], p["saturation"], p["contrast"] = u(n) - 0.5, u(n) * 2.0, u(n) + 0.5
        elif op == "crop":
            p["shift"] = u(n, self.spatial_dims)  # fraction in [0, 1) -> +-1/8 of the side
        elif op == "cutout":
            p["centre"] = u(n, self.spatial_dims)
        elif op == "flip":
            p["flip"] = u(n) < 0.5
        elif op == "scale":
            p["scale"] = u(n, self.spatial_dims) * (1.2 - 1 / 1.2) + 1 / 1.2
        elif op == "rotate":
            p["angle"] = (u(n) - 0.5) * 2 * 15 / 180 * math.pi
        return p

    def apply(self, x: torch.Tensor, params: Params, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Transform x (N, C, *spatial) with `params`; groups[i] picks sample i's parameters."""
        p = {k: (v if k == "op" else v.to(x.device)) for k, v in params.items()}
        if groups is not None:
            p = {k: (v if k == "op" else v[groups.to(x.device)]) for k, v in p.items()}
        op = p["op"]
        squeeze = self.spatial_dims == 1
        if squeeze:
            x = x.unsqueeze(2)  # (N, C, L) -> (N, C, 1, L): one 2D code path
        x = getattr(self, "_" + op)(x, p)
        return x.squeeze(2) if squeeze else x

    # --- ops on (N, C, H, W); 1D inputs have H = 1 and only touch the last axis ---------

    def _color(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        x = x + p["brightness"].view(-1, 1, 1, 1)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * p["saturation"].view(-1, 1, 1, 1) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * p["contrast"].view(-1, 1, 1, 1) + m

    def _crop(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        n, c, h, w = x.shape
        sides = (w,) if self.spatial_dims == 1 else (h, w)
        pads = [int(s * 0.125 + 0.5) for s in sides]
        # integer shift in [-pad, pad] per axis
        shift = [(p["shift"][:, i] * (2 * pad + 1)).long() - pad for i, pad in enumerate(pads)]
        if self.spatial_dims == 1:
            (sw,), (pw,) = shift, pads
            xp = F.pad(x, (pw, pw))
            idx = (torch.arange(w, device=x.device)[None] + pw - sw[:, None])  # (N, W)
            return xp.gather(3, idx.view(n, 1, 1, w).expand(n, c, h, w))
        (sh, sw), (ph, pw) = shift, pads
        xp = F.pad(x, (pw, pw, ph, ph))
        idx_h = torch.arange(h, device=x.device)[None] + ph - sh[:, None]  # (N, H)
        xp = xp.gather(2, idx_h.view(n, 1, h, 1).expand(n, c, h, w + 2 * pw))
        idx_w = torch.arange(w, device=x.device)[None] + pw - sw[:, None]  # (N, W)
        return xp.gather(3, idx_w.view(n, 1, 1, w).expand(n, c, h, w))

    def _cutout(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        n, _, h, w = x.shape
        centre = p["centre"]
        ratio = 0.25 if self.spatial_dims == 1 else 0.5

        def keep(size: int, col: int) -> torch.Tensor:  # (N, size): False inside the hole
            half = int(size * ratio + 0.5) / 2
            pos = torch.arange(size, device=x.device)[None].float()
            c = (centre[:, col] * size).floor()[:, None]
            return (pos - c).abs() >= half
        if self.spatial_dims == 1:
            mask = keep(w, 0).view(n, 1, 1, w)
        else:
            mask = (keep(h, 0).view(n, 1, h, 1) | keep(w, 1).view(n, 1, 1, w))
        return x * mask.to(x.dtype)

    def _flip(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        return torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(3), x)

    def _scale(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        s = p["scale"]
        theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = s[:, -1]  # x axis (length / width)
        theta[:, 1, 1] = s[:, 0] if self.spatial_dims == 2 else 1.0
        return self._warp(x, theta)

    def _rotate(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        a = p["angle"].to(x.dtype)
        theta = torch.stack(
            [torch.stack([a.cos(), -a.sin(), torch.zeros_like(a)], 1),
             torch.stack([a.sin(), a.cos(), torch.zeros_like(a)], 1)], 1
        )  # (N, 2, 3)
        return self._warp(x, theta)

    def _warp(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 1:  # H = 1: x' = theta_00 * x + theta_02 on [-1, 1], y = 0
            n, _, _, w = x.shape
            pos = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
            gx = theta[:, 0, 0, None] * pos[None] + theta[:, 0, 2, None]  # (N, W)
            grid = torch.stack([gx, torch.zeros_like(gx)], -1).view(n, 1, w, 2)
        else:
            grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)
