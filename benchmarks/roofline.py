"""The machine's float32 matmul rate: the ceiling the benchmarks read their figures against."""

from __future__ import annotations

import time


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    """The best float32 matmul rate of this process's torch (all its threads), FLOP/s."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best
