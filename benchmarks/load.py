"""A study of many short trials: ablab against a plain Ray Tune script, side by side.

Both run the same 200 trials of the `synthetic` trainable (3 reports each, no sleep) on
local Ray with all cores. For ablab it checks that every trial is in MLflow exactly once.
Measured: trials per minute, the driver's peak memory (VmRSS polled every 0.2 s).

    .venv/bin/python benchmarks/load.py             # 200 trials
    .venv/bin/python benchmarks/load.py --trials 40
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAIN_TUNE = textwrap.dedent("""
    import sys
    import ray
    from ray import tune
    from trainables.synthetic import Config, train  # noqa: F401 - the same work, without ablab

    def trainable(config):
        import math, random
        rng = random.Random(config["seed"])
        for step in range(1, 4):
            score = config["quality"] * (1 - math.exp(-0.5 * step)) + rng.gauss(0, 0.01)
            tune.report({"val/score": score, "step": step})

    n = int(sys.argv[1]); storage = sys.argv[2]
    ray.init(include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(trainable, param_space={"seed": 0, "quality": tune.grid_search([i / n for i in range(n)])},
                       run_config=tune.RunConfig(storage_path=storage, name="plain", verbose=0))
    tuner.fit()
""")


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (Linux /proc; 0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss_bytes(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return time.time() - start, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    n = args.trials
    tmp = Path(tempfile.mkdtemp(prefix="ablab-load-"))
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"),
               PYTHONPATH=str(REPO))

    script = tmp / "plain_tune.py"
    script.write_text(PLAIN_TUNE)
    plain_wall, plain_rss = measure([sys.executable, str(script), str(n), str(tmp / "plain")], env, tmp)

    sweep = tmp / "load.yaml"
    sweep.write_text(f"""
name: load
trainable: synthetic
base: {{steps: 3}}
grid: {{quality: {[round(i / n, 4) for i in range(n)]}}}
metric: val/score
mode: max
storage: {tmp / 'results'}
""")
    ab_wall, ab_rss = measure([sys.executable, "-m", "ablab.cli", "run", str(sweep), "--no-live"], env, tmp)

    sys.path.insert(0, str(REPO))
    from ablab.recovery import study_runs
    from ablab.types import StudyPaths

    _, parents, children = study_runs(StudyPaths(tmp / "results", "load"))
    keys = [c.data.tags["ablab.trial_key"] for c in children]
    assert len(parents) == 1 and len(keys) == n and len(set(keys)) == n, (len(keys), len(set(keys)))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {n} trials x 3 reports; "
          f"command: python benchmarks/load.py --trials {n}")
    print()
    print("| runner | wall (s) | trials/min | driver peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| plain Ray Tune script | {plain_wall:.1f} | {n / plain_wall * 60:.0f} | {plain_rss:.0f} |")
    print(f"| ablab run (+ MLflow, records, report) | {ab_wall:.1f} | {n / ab_wall * 60:.0f} | {ab_rss:.0f} |")
    print()
    print(f"ablab / plain: {ab_wall / plain_wall:.2f}x wall time, {ab_rss / plain_rss:.2f}x driver memory; "
          f"MLflow holds {len(set(keys))} children for {n} trials, each exactly once.")


if __name__ == "__main__":
    main()
