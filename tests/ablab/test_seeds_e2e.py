"""Adaptive seeds through `ablab run` on the synthetic trainable with known effects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest

from ablab.analysis import build
from ablab.records import TrialState, load_records

from .helpers import mlflow_runs, ray_address, study_paths

pytestmark = pytest.mark.slow

# Scores are accuracies on 2000 examples (binomial noise, reported as test/score:n) plus a
# seed noise of 0.005. Baseline 0.70; "clear" +0.10 (decided at 3 seeds), "same" +0
# (equivalent within ±0.05 at 3 seeds), "close" +0.03 (needs more seeds).
SWEEP = """
name: {name}
trainable: synthetic
base: {{steps: 2, rate: 5.0, noise: 0.005, eval_n: 2000, quality: 0.70{extra}}}
ablations:
  - part: quality
    baseline: 0.70
    replacements: [0.80, 0.70001, 0.73]
seeds: {{min: 3, max: 8}}
metric: val/score
mode: max
metrics: [test/score]
stats: {{smallest_effect: {{test/score: 0.05}}}}
"""

CLEAR, SAME, CLOSE = "quality=0.8", "quality=0.70001", "quality=0.73"


def _ablab(*args: str) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen([sys.executable, "-m", "ablab.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _seeds_by_arm(records) -> dict[str, list[int]]:
    out = defaultdict(list)
    for r in records:
        if r.state != TrialState.PENDING:
            out[r.spec.variant].append(r.spec.seed)
    return {k: sorted(v) for k, v in out.items()}


def _check(paths, n_started_logs_allowed_extra: bool = False):
    records = [r for r in load_records(paths) if r.state != TrialState.PENDING]
    assert all(r.state == TrialState.FINISHED for r in records)
    seeds = _seeds_by_arm(records)
    for arm, s in seeds.items():  # no duplicate, no missing seed
        assert s == list(range(len(s))), (arm, s)
    assert seeds[CLEAR] == [0, 1, 2] and seeds[SAME] == [0, 1, 2]
    assert len(seeds[CLOSE]) > 3 and len(seeds["baseline"]) == len(seeds[CLOSE])
    report = build(paths)
    verdicts = {r.variant: r.verdict for r in report.rows}
    assert verdicts[CLEAR] == "better" and verdicts[SAME] == "equivalent"
    assert "Adaptive seeds (3 to 8)" in report.methods
    _, parents, children = mlflow_runs(paths)
    keys = Counter(c.data.tags["ablab.trial_key"] for c in children)
    assert len(parents) == 1 and set(keys.values()) == {1} and set(keys) == {r.spec.key for r in records}
    assert all(c.info.status == "FINISHED" for c in children)
    return seeds, verdicts


def test_seeds_are_added_only_where_the_verdict_is_open(ray_session, write_sweep, capsys):
    from ablab.cli import main

    sweep = write_sweep(SWEEP.format(name="adaptive", extra=""))
    code = main(["run", str(sweep), "--no-live"])
    assert code == 0, capsys.readouterr().out
    seeds, verdicts = _check(study_paths(sweep, "adaptive"))
    log = json.loads((study_paths(sweep, "adaptive").dir / "seeds.json").read_text())
    assert log["finished"] and all(set(r["added"]) <= {"all | baseline", f"all | {CLOSE}"} for r in log["rounds"][1:])


def test_sigkill_while_seeds_are_added_then_resume(ray_session, write_sweep):
    sweep = write_sweep(SWEEP.format(name="adaptive_kill", extra=", sleep_seconds: 0.5"))
    paths = study_paths(sweep, "adaptive_kill")
    proc = _ablab("run", str(sweep), "--no-live")
    deadline = time.time() + 600
    # kill once the second round (extra seeds) has started
    while time.time() < deadline and proc.poll() is None:
        log = paths.dir / "seeds.json"
        if log.exists() and len(json.loads(log.read_text())["rounds"]) >= 2:
            started = [r for r in load_records(paths) if r.spec.seed >= 3 and r.state != TrialState.PENDING]
            if started:
                break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    again = _ablab("run", str(sweep), "--no-live", "--address", ray_address(ray_session))  # the session's Ray
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    _check(paths)
