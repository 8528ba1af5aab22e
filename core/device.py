"""Where tensors go: one resolver for both cores, so "auto" means the same everywhere."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> cuda when a device is visible, else cpu; anything else as torch reads it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
