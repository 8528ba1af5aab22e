"""ablab's scheduling overhead against a plain loop and multiprocessing.Pool, side by side.

Eight trials of fixed CPU work (the `synthetic` trainable's busy loop, about 20 s each
by default) on all cores:
  - sequential: the work in a plain loop, one after another;
  - pool:       multiprocessing.Pool(cores) over the same work;
  - ablab:      `ablab run` on a study of the same 8 trials (local Ray, MLflow SQLite),
                timed from the command's start, so Ray's and MLflow's start-up count.
efficiency = sum of per-trial compute time / (wall time x concurrency).

    .venv/bin/python benchmarks/overhead.py            # ~20 s per trial
    .venv/bin/python benchmarks/overhead.py --seconds 3   # a quick look
    .venv/bin/python benchmarks/overhead.py --seconds 1 --ablab-only   # the fixed costs and phases only

The driver's phases (ABLAB_PHASES, ablab/phases.py) are printed as a timeline from the
command's start, with the first trial's start and the last trial's end from the records.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.synthetic.experiment import burn  # noqa: E402 - the same busy loop the trainable runs

STEPS = 10


def one_trial(units_per_step: int) -> float:
    """A trial's work done outside ablab: returns its CPU time."""
    t0 = time.process_time()
    for _ in range(STEPS):
        burn(units_per_step)
    return time.process_time() - t0


def calibrate(seconds: float) -> int:
    t0 = time.process_time()
    burn(20)
    per_unit = (time.process_time() - t0) / 20
    return max(1, round(seconds / STEPS / per_unit))


def run_ablab(units: int, trials: int, cores: int, python: str = sys.executable) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ablab-bench-"))
    sweep = tmp / "overhead.yaml"
    sweep.write_text(f"""
name: overhead
trainable: synthetic
base: {{steps: {STEPS}, work: {units}}}
grid: {{quality: {[round(0.5 + 0.05 * i, 2) for i in range(trials)]}}}
seeds: 1
metric: val/score
mode: max
storage: {tmp / 'results'}
""")
    phases_file = tmp / "phases.jsonl"
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"), ABLAB_PHASES=str(phases_file))
    start = time.time()
    # `-m ablab.cli` imports the ablab of the folder it starts in: another interpreter runs in
    # its own checkout (<checkout>/.venv/bin/python)
    cwd = None if python == sys.executable else Path(python).parents[2]
    subprocess.run([python, "-m", "ablab.cli", "run", str(sweep), "--no-live"], check=True, env=env, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - start
    compute, first_start, last_end = 0.0, float("inf"), 0.0
    for log in (tmp / "results/overhead/trials").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if e["event"] == "start":
                first_start = min(first_start, e["t"])
            if e["event"] == "end":
                last_end = max(last_end, e["t"])
            if e["event"] == "result":
                compute += e["metrics"]["time/work_s"]
    phases = [json.loads(line) for line in phases_file.read_text().splitlines()] if phases_file.exists() else []
    phases += [{"phase": "first trial started (record)", "t": first_start},
               {"phase": "last trial ended (record)", "t": last_end},
               {"phase": "command returned", "t": start + wall}]
    timeline = [(p["phase"], p["t"] - start) for p in sorted(phases, key=lambda p: p["t"])]
    table_at = next((t for name, t in timeline if name == "table printed"), wall)
    return {"wall": wall, "compute": compute, "to_first_trial": first_start - start,
            "trials_span": last_end - first_start, "after_last_trial": start + wall - last_end,
            "to_table": start + table_at - last_end, "timeline": timeline}


def print_timeline(ab: dict) -> None:
    print("driver phases (s from the command's start; + time since the previous line):")
    previous = 0.0
    for name, t in ab["timeline"]:
        print(f"  {t:7.2f}  (+{t - previous:5.2f})  {name}")
        previous = t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="CPU seconds per trial")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--ablab-only", action="store_true", help="only `ablab run`: its fixed costs and phases")
    ap.add_argument("--no-loop", action="store_true", help="leave out the sequential loop (the Pool is the reference)")
    ap.add_argument("--compare", metavar="PYTHON", default=None,
                    help="also run `ablab run` with this interpreter (another checkout's .venv/bin/python), "
                    "right after this one's, as one more row")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    units = calibrate(args.seconds)
    if args.ablab_only:
        ab = run_ablab(units, args.trials, cores)
        print_fixed_costs(ab)
        if args.compare:
            other = run_ablab(units, args.trials, cores, args.compare)
            print(f"with {args.compare}:")
            print_fixed_costs(other)
            print(f"fixed costs, this checkout / {args.compare}: to the first trial "
                  f"{ab['to_first_trial'] / other['to_first_trial']:.2f}x, after the last trial "
                  f"{ab['after_last_trial'] / other['after_last_trial']:.2f}x; load average before "
                  f"{load_before:.1f}, after {os.getloadavg()[0]:.1f}")
        print_timeline(ab)
        return

    t0 = time.time()
    seq = [] if args.no_loop else [one_trial(units) for _ in range(args.trials)]
    seq_wall = time.time() - t0

    t0 = time.time()
    with mp.Pool(cores) as pool:
        par = pool.map(one_trial, [units] * args.trials)
    pool_wall = time.time() - t0

    ab = run_ablab(units, args.trials, cores)
    other = run_ablab(units, args.trials, cores, args.compare) if args.compare else None
    load_after = os.getloadavg()[0]

    rows = [("sequential loop", seq_wall, sum(seq), 1)] if seq else []
    rows += [
        (f"multiprocessing.Pool({cores})", pool_wall, sum(par), cores),
        ("ablab run (local Ray + MLflow)", ab["wall"], ab["compute"], cores),
    ]
    if other:
        rows.append((f"ablab run with {args.compare}", other["wall"], other["compute"], cores))
    pool_eff = sum(par) / (pool_wall * cores)
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; "
          f"{args.trials} trials x ~{args.seconds:g} s CPU; command: python benchmarks/overhead.py --seconds {args.seconds:g}"
          + (" --no-loop" if args.no_loop else "") + (f" --compare {args.compare}" if args.compare else "")
          + f"; load average before: {load_before:.1f}, after: {load_after:.1f}")
    print()
    print("| runner | wall (s) | sum of trial CPU (s) | efficiency | vs Pool |")
    print("|---|---|---|---|---|")
    for name, wall, compute, conc in rows:
        eff = compute / (wall * conc)
        print(f"| {name} | {wall:.1f} | {compute:.1f} | {eff:.1%} | {eff / pool_eff:.2f}x |")
    overhead = (ab["wall"] * cores - ab["compute"]) / args.trials
    print()
    steady = ab["compute"] / (ab["trials_span"] * cores)
    per_trial = (ab["trials_span"] * cores - ab["compute"]) / args.trials
    print(f"ablab, whole command: {overhead:.2f} s of core time per trial ((wall x cores - compute) / trials).")
    print(f"ablab, from first trial start to last trial end: efficiency {steady:.1%} "
          f"({steady / pool_eff:.2f}x Pool), {per_trial:.2f} s of core time per trial.")
    print_fixed_costs(ab)
    if other:
        print(f"with {args.compare}:")
        print_fixed_costs(other)
    print_timeline(ab)


def print_fixed_costs(ab: dict) -> None:
    print(f"fixed costs: `ablab run` to first trial start {ab['to_first_trial']:.1f} s "
          f"(Ray and MLflow start-up); last trial end to the printed table {ab['to_table']:.1f} s, "
          f"to the command's return {ab['after_last_trial']:.1f} s (report, shutdown).")


if __name__ == "__main__":
    main()
