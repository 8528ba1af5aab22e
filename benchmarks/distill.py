"""Distillation speed on MNIST-1D, side by side.

1. eval:    K fresh ConvNets trained on a random real IPC-10 subset, batched (one vmapped
            forward for all K) vs one after another, same seeds; time and accuracies.
2. distill: DM throughput at IPC 10 (iterations/s) without and with the PTM term (CE,
            single and ensemble over a small pool), and the share of each iteration spent
            in the PTM term.

    .venv/bin/python benchmarks/distill.py                       # K=10, 300 epochs (slow)
    .venv/bin/python benchmarks/distill.py --epochs 30 --iters 20 # a quick look

Prints one JSON object per measurement. Run it on an otherwise idle machine: the numbers
are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.distill.augment import DiffAugment  # noqa: E402
from core.distill.data import DataConfig, load_dataset  # noqa: E402
from core.distill.config import DistillConfig  # noqa: E402
from core.distill.distiller import Distiller  # noqa: E402
from core.distill.evaluate import evaluate_set  # noqa: E402
from core.distill.networks import NetConfig  # noqa: E402
from core.distill.ptm import PTMPoolConfig, build_pool, load_pool  # noqa: E402
from core.distill.references import random_subset  # noqa: E402
from core.distill.train import TrainConfig  # noqa: E402
from roofline import matmul_flops  # noqa: E402


def step_flops(data, x, y) -> float:
    """FLOPs of one training step (forward + backward) of one ConvNet on (x, y), counted by
    torch's own FLOP counter."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from core.distill.networks import seeded_network

    net = seeded_network(NetConfig(), data.input_shape, data.num_classes, 0)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    return float(counter.get_total_flops())


def bench_eval(data, k: int, epochs: int, dsa: bool) -> None:
    x, y = random_subset(data, ipc=10, seed=0)
    aug = DiffAugment.for_input(data.input_shape) if dsa else None
    # what batching could gain at most: the sequential path's share of the matmul rate
    flops, peak = step_flops(data, x, y), matmul_flops()
    print(json.dumps({"bench": "eval", "step_gflop_per_net": round(flops / 1e9, 3),
                      "matmul_gflop_per_s": round(peak / 1e9, 1)}), flush=True)
    rows = {}
    for batched in (True, False):
        r = evaluate_set(x, y, data, NetConfig(), TrainConfig(epochs=epochs), k, seed=0,
                         augment=aug, batched=batched)
        rows["batched" if batched else "sequential"] = r
        print(json.dumps({"bench": "eval", "mode": "batched" if batched else "sequential", "K": k,
                          "epochs": epochs, "dsa": dsa, "seconds": round(r.seconds, 2),
                          "test_acc_mean": round(r.test_mean, 4), "test_acc_std": round(r.test_std, 4),
                          "test_accs": [round(a, 4) for a in r.test_accs]}), flush=True)
    b, s = rows["batched"], rows["sequential"]
    steps = k * epochs * -(-len(x) // TrainConfig().batch_size)  # network updates in all
    rate = {m: flops * steps / r.seconds for m, r in rows.items()}
    print(json.dumps({"bench": "eval", **{f"{m}_gflop_per_s": round(v / 1e9, 1) for m, v in rate.items()},
                      **{f"{m}_share_of_matmul": round(v / peak, 3) for m, v in rate.items()},
                      "most_any_batching_can_gain": round(peak / rate["sequential"], 2)}), flush=True)
    print(json.dumps({"bench": "eval", "speedup": round(s.seconds / b.seconds, 2),
                      "max_abs_acc_diff": round(max(abs(p - q) for p, q in zip(b.test_accs, s.test_accs)), 4)}),
          flush=True)


def bench_distill(data, iters: int, batch_real: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # a speed measurement: the PTMs need not be good, so the accuracy floor is off
        pool_cfg = PTMPoolConfig(architectures=("convnet", "mlp"), inits=2, epochs=(2, 5), min_acc=0.0)
        build_pool(pool_cfg, data, folder)
        ptms = [p.net for p in load_pool(folder)]
        for name, kw in (("dm", {}), ("dm+ce single", {"ptm_loss": "ce"}),
                         ("dm+ce ensemble", {"ptm_loss": "ce", "ptm_aggregation": "ensemble"})):
            cfg = DistillConfig(ipc=10, iterations=iters, batch_real=batch_real, **kw)
            d = Distiller(cfg, data, ptms)
            d.step()  # warm-up
            t0 = time.perf_counter()
            outs = [d.step() for _ in range(iters)]
            wall = time.perf_counter() - t0
            ptm = sum(o["time/ptm_sec"] for o in outs)
            print(json.dumps({"bench": "distill", "variant": name, "ipc": 10, "batch_real": batch_real,
                              "iters": iters, "iters_per_sec": round(iters / wall, 3),
                              "sec_per_iter": round(wall / iters, 4), "ptm_share": round(ptm / wall, 4),
                              "ptm_forwards_per_iter": outs[-1]["cost/ptm_forwards"],
                              "pool_size": len(ptms)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=10, help="evaluation networks")
    p.add_argument("--epochs", type=int, default=300, help="epochs per evaluation network")
    p.add_argument("--no-dsa", action="store_true", help="evaluate without augmentation")
    p.add_argument("--iters", type=int, default=50, help="DM iterations timed per variant")
    p.add_argument("--batch-real", type=int, default=256, help="real samples per class per iteration")
    p.add_argument("--only", choices=["eval", "distill"], default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}), flush=True)
    data = load_dataset(DataConfig())
    if a.only in (None, "eval"):
        bench_eval(data, a.k, a.epochs, dsa=not a.no_dsa)
    if a.only in (None, "distill"):
        bench_distill(data, a.iters, a.batch_real)


if __name__ == "__main__":
    main()
