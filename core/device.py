"""Where tensors go: one resolver for both cores, so "auto" means the same everywhere."""

from __future__ import annotations

import functools

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> cuda when a device is visible, else cpu; anything else as torch reads it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=None)  # asked at every training step under precision auto
def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 in hardware: a CUDA device that supports it,
    or a CPU with AVX512_BF16 or AMX. Elsewhere torch converts bfloat16 in software, and
    it runs slower than float32 (0.23x for a matmul on an Ice Lake Xeon)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # private helpers of torch.cpu (since 2.3); without them, no claim is made
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False
