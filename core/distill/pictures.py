"""A picture of a synthetic set: per-class curves for 1D signals, an image grid for 2D."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def save_picture(
    x: torch.Tensor, y: torch.Tensor, path: str | Path, title: str = "", max_per_class: int = 10
) -> Path:
    """Write a PNG of (x, y) to `path` and return the path.

    1D (N, C, L): one panel per class, every sample of the class a curve (channel 0).
    2D (N, C, H, W): one row per class, up to `max_per_class` images, each min-max scaled.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = x.detach().cpu().float(), y.detach().cpu()
    classes = sorted(set(y.tolist()))
    if x.dim() == 3:
        fig = _curves(x, y, classes, max_per_class)
    elif x.dim() == 4:
        fig = _grid(x, y, classes, max_per_class)
    else:
        raise ValueError(f"save_picture: x must be (N, C, L) or (N, C, H, W), got {tuple(x.shape)}")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def _curves(x: torch.Tensor, y: torch.Tensor, classes: list[int], max_per_class: int):
    cols = min(5, len(classes))
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.8 * rows), sharex=True, sharey=True, squeeze=False)
    lo, hi = float(x[:, 0].min()), float(x[:, 0].max())
    for ax in axes.flat:
        ax.axis("off")
    for ax, c in zip(axes.flat, classes):
        ax.axis("on")
        for s in x[y == c][:max_per_class]:
            ax.plot(s[0].numpy(), linewidth=0.9, alpha=0.8)
        ax.set_title(f"class {c}", fontsize=8)
        ax.set_ylim(lo, hi)
        ax.tick_params(labelsize=6)
    return fig


def _grid(x: torch.Tensor, y: torch.Tensor, classes: list[int], max_per_class: int):
    n = max(min(int((y == c).sum()), max_per_class) for c in classes)
    fig, axes = plt.subplots(len(classes), n, figsize=(0.9 * n, 0.9 * len(classes)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, c in enumerate(classes):
        for j, img in enumerate(x[y == c][:n]):
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)  # (C, H, W) in [0, 1]
            img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
            axes[r, j].imshow(img.numpy(), cmap="gray" if img.dim() == 2 else None, interpolation="nearest")
        axes[r, 0].set_title(f"{c}", fontsize=7, loc="left")
    return fig
