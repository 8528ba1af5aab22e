"""Adaptive vs fixed seeds: trials spent to reach the same verdicts, side by side.

The same study on the `synthetic` trainable (known effects: one arm clearly better, one
clearly worse, one equal, one close to the baseline), run twice with `ablab run`:
  - fixed:    every arm at `max` seeds (`seeds: MAX`);
  - adaptive: `seeds: {min: MIN, max: MAX}`, seeds added only to arms with an open verdict.
Then the decision procedure alone (ablab.stats, no Ray) on many simulated studies of the
same effect structure, for the average ratio and how often both reach the same verdicts.

    .venv/bin/python benchmarks/adaptive_seeds.py            # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ablab.analysis import build  # noqa: E402
from ablab.records import StudyPaths, TrialState, load_records  # noqa: E402
from ablab.stats import Arm, decide_table, evaluation_variance, open_arms  # noqa: E402

BASE, NOISE, EVAL_N, DELTA = 0.70, 0.005, 2000, 0.05
EFFECTS = {"quality=0.8": 0.10, "quality=0.6": -0.10, "quality=0.70001": 0.00001, "quality=0.73": 0.03}

SWEEP = """
name: {name}
trainable: synthetic
base: {{steps: 2, rate: 5.0, noise: {noise}, eval_n: {eval_n}, quality: {base}}}
ablations:
  - part: quality
    baseline: {base}
    replacements: [0.8, 0.6, 0.70001, 0.73]
seeds: {seeds}
metric: val/score
mode: max
metrics: [test/score]
stats: {{smallest_effect: {{test/score: {delta}}}}}
storage: {storage}
"""


def run_study(name: str, seeds: str, storage: Path) -> tuple[int, dict[str, str], float]:
    sweep = storage / f"{name}.yaml"
    sweep.write_text(SWEEP.format(name=name, seeds=seeds, storage=storage, base=BASE, noise=NOISE,
                                  eval_n=EVAL_N, delta=DELTA))
    t0 = time.time()
    subprocess.run([str(Path(sys.executable).with_name("ablab")), "run", str(sweep), "--no-live"], check=True,
                   env=dict(os.environ, RAY_AUTH_MODE="disabled"), stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    paths = StudyPaths(storage, name)
    trials = sum(r.state != TrialState.PENDING for r in load_records(paths))
    verdicts = {r.variant: r.verdict for r in build(paths).rows if r.variant != "baseline"}
    return trials, verdicts, wall


def simulate(studies: int, low: int, high: int, seed: int = 0) -> tuple[float, float]:
    """Mean trials(adaptive) / trials(fixed at max), and the share of studies with equal verdicts."""
    rng = np.random.default_rng(seed)

    def draw(effect: float) -> tuple[float, float]:
        p = BASE + effect + rng.normal(0, NOISE)
        v = rng.binomial(EVAL_N, min(max(p, 0), 1)) / EVAL_N
        return v, evaluation_variance(v, EVAL_N)

    ratios, same = [], 0
    arms = list(EFFECTS)
    for _ in range(studies):
        data = {a: [draw(EFFECTS.get(a, 0.0)) for _ in range(high)] for a in ["baseline", *arms]}

        def decide(count: dict[str, int], seeds):
            def arm(a):
                vals = data[a][:count[a]]
                return Arm(tuple(v for v, _ in vals), tuple(e for _, e in vals))
            return decide_table({"m": arm("baseline")}, {(a, "m"): arm(a) for a in arms}, {"m": "max"},
                                0.05, "holm", {"m": DELTA}, seeds)

        fixed = decide({a: high for a in data}, None)
        count = {a: low for a in data}
        while True:
            adaptive = decide(count, (low, high))
            grow = [a for a in open_arms(adaptive) if count[a] < high]
            if not grow:
                break
            for a in grow:
                count[a] += 1
            count["baseline"] = max(count[a] for a in grow)
        ratios.append(sum(count.values()) / (high * len(data)))
        same += all(fixed[k].verdict == adaptive[k].verdict for k in fixed)
    return float(np.mean(ratios)), same / studies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min", type=int, default=3)
    ap.add_argument("--max", type=int, default=8)
    ap.add_argument("--studies", type=int, default=500, help="simulated studies")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ablab-seeds-") as tmp:
        storage = Path(tmp)
        fixed = run_study("fixed", str(args.max), storage)
        adaptive = run_study("adaptive", f"{{min: {args.min}, max: {args.max}}}", storage)
    print(f"{'':10} {'trials':>6} {'wall s':>7}  verdicts")
    for label, (n, verdicts, wall) in (("fixed", fixed), ("adaptive", adaptive)):
        print(f"{label:10} {n:6d} {wall:7.1f}  " + ", ".join(f"{k}: {v}" for k, v in verdicts.items()))
    print(f"ablab run: adaptive / fixed trials = {adaptive[0] / fixed[0]:.2f}; "
          f"same verdicts: {fixed[1] == adaptive[1]}")
    ratio, same = simulate(args.studies, args.min, args.max)
    print(f"simulated ({args.studies} studies): adaptive / fixed trials = {ratio:.2f}; same verdicts in {same:.0%}")


if __name__ == "__main__":
    main()
