"""The machine's matmul rate: the ceiling the benchmarks read their figures against."""

from __future__ import annotations

import time


def matmul_flops(size: int = 1024, repeats: int = 10, dtype: str = "float32") -> float:
    """The best `dtype` (float32 or bfloat16) matmul rate of this process's torch (all its
    threads), FLOP/s. On a CPU without AVX512_BF16/AMX, bfloat16 is converted in software
    and runs slower than float32 (this machine: about 4x; BENCHMARKS.md)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(size, size).to(dt), torch.randn(size, size).to(dt)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best
