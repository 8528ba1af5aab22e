"""Distillation speed on MNIST-1D, side by side, the reference path vs each speed-up.

1. steps:   one training step of each evaluation network (ConvNet, MLP, LeNet; IPC-10 set,
            DSA) and one DM iteration, for: reference (plain torch kernels, fp32), fast
            (sliced pooling, fp32: the default), clconv (+ the opt-in channels-last Conv1d),
            and bf16 autocast. The variants alternate in one process on the same networks; each row
            gives ms per step, the speed-up over the reference, GFLOP/s (torch's FLOP
            counter) and its share of this core's float32 and bfloat16 matmul rates.
2. eval:    K fresh ConvNets trained `--epochs` on a random real IPC-10 subset, reference
            vs fast (and --bf16), network by network alternating, same seeds: time and
            the final accuracies (mean +- sd, max per-network difference).
3. dmrun:   a DM run (`--dm-iters` iterations, IPC 10) reference vs fast, then each
            distilled set's evaluation (2 ConvNets, `--epochs`) by the same path.
4. distill: DM throughput at IPC 10 without and with the PTM term.

    nice -n 19 .venv/bin/python benchmarks/distill.py --only steps --threads 1
    nice -n 19 .venv/bin/python benchmarks/distill.py --only eval --epochs 300 --k 10 --threads 1
    nice -n 19 .venv/bin/python benchmarks/distill.py --only dmrun --dm-iters 200 --threads 1

Prints one JSON object per measurement. Wall-clock times: read the ratios, they are
measured side by side; absolute figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from core.distill.networks import NetConfig, channels_last_conv1d, reference_kernels, seeded_network  # noqa: E402
from core.distill.ptm import PTMPoolConfig, build_pool, load_pool  # noqa: E402
from core.distill.references import random_subset  # noqa: E402
from core.distill.train import TrainConfig, accuracy, autocast, make_optimizer, train_network  # noqa: E402
from roofline import matmul_flops  # noqa: E402

import contextlib  # noqa: E402
import statistics  # noqa: E402

import torch.nn.functional as F  # noqa: E402

# (name, kernels, precision); kernels: reference, default (sliced pooling), clconv (+ opt-in
# channels-last Conv1d)
VARIANTS = (("reference fp32", "reference", "fp32"), ("fast fp32", "default", "fp32"),
            ("clconv fp32", "clconv", "fp32"), ("reference bf16", "reference", "bf16"),
            ("fast bf16", "default", "bf16"))


def kernels(mode):
    if mode in (True, "reference"):
        return reference_kernels()
    return channels_last_conv1d() if mode == "clconv" else contextlib.nullcontext()


def bench_steps(data, reps: int, inner: int) -> None:
    """ms per step of each variant, alternating variants within each repetition."""
    from torch.utils.flop_counter import FlopCounterMode

    x, y = random_subset(data, ipc=10, seed=0)
    aug = DiffAugment.for_input(data.input_shape)
    peak32, peak16 = matmul_flops(dtype="float32"), matmul_flops(dtype="bfloat16")
    print(json.dumps({"bench": "steps", "matmul_gflop_per_s_fp32": round(peak32 / 1e9, 1),
                      "matmul_gflop_per_s_bf16": round(peak16 / 1e9, 1)}), flush=True)
    dev = torch.device("cpu")

    def train_step(arch):
        net = seeded_network(NetConfig(arch=arch), data.input_shape, data.num_classes, 0)
        opt, _ = make_optimizer(net, TrainConfig())
        g = torch.Generator().manual_seed(0)

        def step(precision):
            xb = aug(x, g)
            with autocast(dev, precision):
                loss = F.cross_entropy(net(xb), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def dm_step():
        cfg = DistillConfig(ipc=10, batch_real=32)
        ds = {p: Distiller(dataclasses.replace(cfg, precision=p), data) for p in ("fp32", "bf16")}
        return lambda precision: ds[precision].step()

    for what, make in (("eval step convnet", lambda: train_step("convnet")),
                       ("eval step lenet", lambda: train_step("lenet")),
                       ("eval step mlp", lambda: train_step("mlp")),
                       ("DM iteration (IPC 10, 32 real/class)", dm_step)):
        step = make()
        with FlopCounterMode(display=False) as counter:
            step("fp32")
        flops = float(counter.get_total_flops())
        for name, ref, prec in VARIANTS:  # warm-up
            with kernels(ref):
                step(prec)
        secs = {v[0]: [] for v in VARIANTS}
        for _ in range(reps):
            for name, ref, prec in VARIANTS:
                with kernels(ref):
                    t0 = time.perf_counter()
                    for _ in range(inner):
                        step(prec)
                    secs[name].append((time.perf_counter() - t0) / inner)
        base = statistics.median(secs["reference fp32"])
        for name, _, prec in VARIANTS:
            t = statistics.median(secs[name])
            rate = flops / t
            print(json.dumps({"bench": "steps", "what": what, "variant": name, "ms": round(t * 1e3, 2),
                              "speedup": round(base / t, 2), "gflop": round(flops / 1e9, 3),
                              "gflop_per_s": round(rate / 1e9, 1),
                              "share_of_fp32_matmul": round(rate / peak32, 3),
                              "share_of_bf16_matmul": round(rate / peak16, 3)}), flush=True)


def bench_eval_paths(data, k: int, epochs: int, bf16: bool, arch: str = "convnet",
                     only: tuple[str, ...] = ()) -> None:
    """K networks of `arch`, network by network alternating the paths (`only`: those whose
    name starts with one of these): evaluate_set's sequential path (seeds seed*1000+k,
    generator of the same seed), seed 0."""
    x, y = random_subset(data, ipc=10, seed=0)
    aug = DiffAugment.for_input(data.input_shape)
    paths = [("reference fp32", "reference", "fp32"), ("fast fp32", "default", "fp32"),
             ("clconv fp32", "clconv", "fp32")]
    if bf16:
        paths.append(("fast bf16", "default", "bf16"))
    if only:
        paths = [p for p in paths if p[0].startswith(only)]
    secs = {p[0]: 0.0 for p in paths}
    accs: dict[str, list[float]] = {p[0]: [] for p in paths}
    for i in range(k):
        for name, ref, prec in paths:
            with kernels(ref):
                t0 = time.perf_counter()
                net = seeded_network(NetConfig(arch=arch), data.input_shape, data.num_classes, i)
                train_network(net, x, y, TrainConfig(epochs=epochs, precision=prec),
                              torch.Generator().manual_seed(i), aug)
                secs[name] += time.perf_counter() - t0
                accs[name].append(accuracy(net, data.x_test, data.y_test))
    first = paths[0][0]
    ref = accs[first]
    for name, _, _ in paths:
        a = accs[name]
        print(json.dumps({"bench": "eval", "arch": arch, "path": name, "K": k, "epochs": epochs,
                          "seconds": round(secs[name], 1), f"speedup_over_{first.replace(' ', '_')}":
                          round(secs[first] / secs[name], 2),
                          "test_acc_mean": round(statistics.mean(a), 4), "test_acc_sd": round(statistics.pstdev(a), 4),
                          f"max_abs_diff_to_{first.replace(' ', '_')}": round(max(abs(p - q) for p, q in zip(a, ref)), 4),
                          "test_accs": [round(v, 4) for v in a]}), flush=True)


def bench_dm_run(data, iters: int, epochs: int, nets: int, bf16: bool) -> None:
    """A DM run per path (alternating iteration by iteration), then each distilled set
    evaluated by its own path on the same network seeds: reference fp32 vs fast fp32, and
    with `bf16` the fast kernels in bf16 (distillation and evaluation alike)."""
    paths = [("reference fp32", "reference", "fp32"), ("fast fp32", "default", "fp32")]
    if bf16:
        paths.append(("fast bf16", "default", "bf16"))
    cfg = DistillConfig(ipc=10, iterations=iters, batch_real=32)
    ds = {name: Distiller(dataclasses.replace(cfg, precision=prec), data) for name, _, prec in paths}
    secs = dict.fromkeys(ds, 0.0)
    for _ in range(iters):
        for name, ref, _ in paths:
            with kernels(ref):
                t0 = time.perf_counter()
                ds[name].step()
                secs[name] += time.perf_counter() - t0
    aug = DiffAugment.for_input(data.input_shape)
    sets = {n: d.synthetic_set() for n, d in ds.items()}
    evals = {}
    for name, ref, prec in paths:
        xs, ys = sets[name]
        with kernels(ref):
            evals[name] = evaluate_set(xs, ys, data, NetConfig(), TrainConfig(epochs=epochs, precision=prec), nets,
                                       seed=0, augment=aug, batched=False)
    for name, r in evals.items():
        diff = float((sets["reference fp32"][0] - sets[name][0]).abs().max())
        print(json.dumps({"bench": "dmrun", "path": name, "iters": iters, "dm_seconds": round(secs[name], 1),
                          "dm_speedup": round(secs["reference fp32"] / secs[name], 2),
                          "eval_seconds": round(r.seconds, 1),
                          "eval_speedup": round(evals["reference fp32"].seconds / r.seconds, 2),
                          "test_acc_mean": round(r.test_mean, 4), "test_acc_sd": round(r.test_std, 4),
                          "test_accs": [round(a, 4) for a in r.test_accs],
                          "max_abs_syn_diff_to_reference": round(diff, 5)}), flush=True)


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
    p.add_argument("--only", choices=["steps", "eval", "dmrun", "distill", "batched"], default=None,
                   help="one part (default: steps, eval, dmrun, distill; batched: the old "
                        "batched-vs-sequential comparison)")
    p.add_argument("--bf16", action="store_true", help="eval, dmrun: also the bf16 path")
    p.add_argument("--arch", default="convnet", help="eval: the evaluation network")
    p.add_argument("--paths", default="", help="eval: only these paths, by name prefix (e.g. 'fast')")
    p.add_argument("--reps", type=int, default=5, help="steps: repetitions per variant")
    p.add_argument("--inner", type=int, default=10, help="steps: steps per repetition")
    p.add_argument("--dm-iters", type=int, default=200, help="dmrun: DM iterations")
    p.add_argument("--dm-eval-nets", type=int, default=2, help="dmrun: ConvNets per evaluation")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}), flush=True)
    data = load_dataset(DataConfig())
    print(json.dumps({"load": open("/proc/loadavg").read().split()[:3]}), flush=True)
    if a.only in (None, "steps"):
        bench_steps(data, a.reps, a.inner)
    if a.only in (None, "eval"):
        bench_eval_paths(data, a.k, a.epochs, a.bf16, a.arch, tuple(a.paths.split(",")) if a.paths else ())
    if a.only in (None, "dmrun"):
        bench_dm_run(data, a.dm_iters, a.epochs, a.dm_eval_nets, a.bf16)
    if a.only == "batched":
        bench_eval(data, a.k, a.epochs, dsa=not a.no_dsa)
    if a.only in (None, "distill"):
        bench_distill(data, a.iters, a.batch_real)


if __name__ == "__main__":
    main()
