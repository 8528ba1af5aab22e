"""The driver killed with SIGKILL mid-study, then `ablab run` again: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ablab.records import TrialState, load_records, read_study_file

from .helpers import mlflow_runs, ray_address, study_paths

pytestmark = pytest.mark.slow

SWEEP = """
name: killme
trainable: synthetic
base: {steps: 6, sleep_seconds: 0.6}
ablations:
  - part: quality
    baseline: 0.9
    replacements: [0.5, 0.7]
seeds: 2
metric: val/score
mode: max
"""


def _ablab(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen(
        [sys.executable, "-m", "ablab.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, **kw,
    )


def _events(paths) -> dict[str, list[str]]:
    out = {}
    for f in paths.trials_dir.glob("*.jsonl") if paths.trials_dir.exists() else []:
        out[f.stem] = [json.loads(line)["event"] for line in f.read_text().splitlines() if line.strip()]
    return out


def _ended(paths) -> set[str]:
    return {t for t, ev in _events(paths).items() if "end" in ev}


def _running(paths) -> set[str]:
    return {t for t, ev in _events(paths).items() if "end" not in ev and "result" in ev}


def _mid_study(paths) -> bool:
    """Two trials ended, one running, and MLflow (mirrored on its own thread, behind the
    records) shows an open child. The store is read only once the driver has made it (the
    parent run's id is in the study record): two processes creating one schema collide."""
    if len(_ended(paths)) < 2 or not _running(paths) or not read_study_file(paths).get("parent_run_id"):
        return False
    _, _, children = mlflow_runs(paths)
    return any(c.info.status == "RUNNING" for c in children)


def test_sigkill_driver_then_resume(ray_session, write_sweep):
    sweep = write_sweep(SWEEP)
    paths = study_paths(sweep, "killme")
    proc = _ablab("run", str(sweep), "--no-live")
    deadline = time.time() + 240
    # kill while two trials have ended and another is mid-way, its MLflow child open
    while not _mid_study(paths) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    # SIGKILL the driver and everything it started (its own local Ray), nothing else
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    ended_before = _ended(paths)
    assert 2 <= len(ended_before) < 6

    _, _, children = mlflow_runs(paths)
    assert any(c.info.status == "RUNNING" for c in children)  # the killed driver left them open

    # the user's second run: on the session's Ray (the killed driver's own Ray died with it)
    again = _ablab("run", str(sweep), "--no-live", "--address", ray_address(ray_session))
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert "continuing study 'killme'" in out

    records = load_records(paths)
    assert len(records) == 6 and all(r.state == TrialState.FINISHED for r in records)
    assert all(r.steps == [1, 2, 3, 4, 5, 6] for r in records)
    for tid in ended_before:  # finished trials were not run again
        events = [json.loads(line) for line in (paths.trials_dir / f"{tid}.jsonl").read_text().splitlines()]
        assert [e["event"] for e in events].count("start") == 1
        assert [e["event"] for e in events].count("end") == 1

    _, parents, children = mlflow_runs(paths)
    assert len(parents) == 1
    assert len(children) == 6 and len({c.data.tags["ablab.trial_key"] for c in children}) == 6
    assert all(c.info.status == "FINISHED" for c in children), ([(c.info.run_name, c.info.status, c.data.tags.get("ablab.state")) for c in children], out)
    assert parents[0].info.status == "FINISHED"


def test_ctrl_c_stops_cleanly_and_the_study_resumes(ray_session, tmp_path):
    # relative storage, as a user writes it: run from the sweep's folder
    (tmp_path / "s.yaml").write_text("""
name: ctrlc
trainable: synthetic
base: {steps: 6, sleep_seconds: 0.5}
grid: {quality: [0.5, 0.6, 0.7, 0.8]}
metric: val/score
mode: max
""")
    from ablab.records import StudyPaths

    paths = StudyPaths(tmp_path / "ablab_results", "ctrlc")
    proc = _ablab("run", "s.yaml", "--no-live", cwd=tmp_path)
    deadline = time.time() + 240
    while not _running(paths) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "continue it with:  ablab run s.yaml --resume" in out
    _, parents, children = mlflow_runs(paths)
    assert parents[0].info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)  # cut-short children closed as KILLED

    again = _ablab("run", "s.yaml", "--resume", "--no-live", "--address", ray_address(ray_session), cwd=tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    records = load_records(paths)
    assert all(r.state == TrialState.FINISHED and r.steps == [1, 2, 3, 4, 5, 6] for r in records)
    _, parents, children = mlflow_runs(paths)
    assert parents[0].info.status == "FINISHED" and len(children) == 4
    assert all(c.info.status == "FINISHED" for c in children)


MARGIN = """
name: {name}
trainable: synthetic
base: {{steps: 8, sleep_seconds: 0.3}}
ablations:
  - part: quality
    baseline: 0.9
    replacements: [0.5]
seeds: 2
metric: val/score
mode: max
max_concurrent: 2
early_stopping: {{type: margin, margin: 0.2, grace_period: 1}}
"""


def _stopped(paths) -> set[str]:
    return {r.spec.key for r in load_records(paths) if r.state == TrialState.STOPPED}


def test_early_stopping_survives_a_killed_driver(ray_session, write_sweep, capsys):
    """The margin rule's memory (the baseline's values) is rebuilt from the records: the
    hopeless arm that starts only after the kill is stopped as in an uninterrupted run."""
    from ablab.cli import main

    clean = write_sweep(MARGIN.format(name="clean"), name="clean.yaml")
    assert main(["run", str(clean), "--no-live"]) == 0, capsys.readouterr().out  # uninterrupted, in process
    expected = _stopped(study_paths(clean, "clean"))
    assert expected == {"all | quality=0.5 | seed=0", "all | quality=0.5 | seed=1"}

    sweep = write_sweep(MARGIN.format(name="killed"), name="killed.yaml")
    paths = study_paths(sweep, "killed")
    proc = _ablab("run", str(sweep), "--no-live")
    deadline = time.time() + 240
    # kill once both baseline trials have ended, before the hopeless arm reports much
    while len(_ended(paths)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = _ablab("run", str(sweep), "--no-live", "--address", ray_address(ray_session))
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert _stopped(paths) == expected
