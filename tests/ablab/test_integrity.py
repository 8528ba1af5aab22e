"""A study that cannot be corrupted: one writer at a time, torn records and a lost MLflow
store recovered, settings that change results guarded by the fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import mlflow_runs, ray_address, study_paths

pytestmark = pytest.mark.slow

SWEEP = """
name: {name}
trainable: synthetic
base: {{steps: 3}}
ablations:
  - part: quality
    baseline: 0.9
    replacements: [0.5]
metric: val/score
mode: max
"""


def _ablab(*args: str) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen([sys.executable, "-m", "ablab.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_second_run_of_a_study_in_progress_exits_2_naming_the_pid(write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(name="busy").replace("steps: 3", "steps: 40, sleep_seconds: 0.5"))
    paths = study_paths(sweep, "busy")
    first = _ablab("run", str(sweep), "--no-live")
    try:
        deadline = time.time() + 180
        while not (paths.trials_dir.exists() and any(paths.trials_dir.glob("*.jsonl"))) \
                and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.stdout.read()
        start = time.monotonic()
        assert main(["run", str(sweep)]) == 2
        err = capsys.readouterr().err
        assert f"being run by pid {first.pid}" in err and err.count("\n") == 1, err
        assert time.monotonic() - start < 30  # refused before Ray starts
        assert main(["status", "busy", "--storage", str(paths.storage)]) == 0
        assert "running" in capsys.readouterr().out
    finally:
        first.terminate()
        first.wait(timeout=120)


def test_a_stale_lock_of_a_dead_process_is_taken_over(ray_session, write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(name="stale"))
    paths = study_paths(sweep, "stale")
    paths.dir.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    paths.lock_file.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    assert main(["run", str(sweep), "--no-live"]) == 0
    err = capsys.readouterr().err
    assert f"taking over the lock of pid {int(dead.stdout)}" in err and "no longer running" in err
    assert all(r.state == TrialState.FINISHED for r in load_records(paths))


def test_a_torn_last_line_is_recovered_and_the_trial_runs_again(ray_session, write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(name="torn"))
    paths = study_paths(sweep, "torn")
    assert main(["run", str(sweep), "--no-live"]) == 0
    records = load_records(paths)
    baseline = next(r for r in records if r.spec.variant == "baseline")
    log = paths.trials_dir / f"{baseline.trial_id}.jsonl"
    text = log.read_text()
    log.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + '{"event": "end", "sta')  # cut mid-write
    capsys.readouterr()

    torn = {r.spec.key: r for r in load_records(paths)}[baseline.spec.key]
    assert torn.state == TrialState.INTERRUPTED and torn.steps == [1, 2, 3]
    assert "skipped an unreadable line" in capsys.readouterr().err

    assert main(["run", str(sweep), "--no-live"]) == 0  # no --resume needed, nothing refused
    records = load_records(paths)
    assert all(r.state == TrialState.FINISHED and r.steps == [1, 2, 3] for r in records)
    _, parents, children = mlflow_runs(paths)
    assert len(parents) == 1 and len(children) == len(records)
    assert all(c.info.status == "FINISHED" for c in children)


def test_a_lost_mlflow_store_is_rebuilt_from_the_records(ray_session, write_sweep):
    # in subprocesses: MLflow keeps one SQLite engine per URI and process, and a user's
    # second run is a new process (both join the session's Ray)
    sweep = write_sweep(SWEEP.format(name="lost"))
    paths = study_paths(sweep, "lost")
    address = ray_address(ray_session)
    _run_to_the_end(sweep, "--address", address)
    before = {r.spec.key: r.history for r in load_records(paths)}
    paths.mlflow_db.unlink()
    out = _run_to_the_end(sweep, "--address", address)
    assert "rebuilt the parent and 2 child run(s)" in out
    _assert_mlflow_says_what_the_records_say(paths, before)


def test_children_left_open_by_a_driver_killed_after_their_trials_ended_are_settled(ray_session, write_sweep):
    """A driver killed between a trial's end in its record and in MLflow leaves the child
    RUNNING (or unwritten), and the trial never runs again to close it: the next run makes
    MLflow say what the records say, without logging a step twice."""
    sweep = write_sweep(SWEEP.format(name="settle"))
    paths = study_paths(sweep, "settle")
    address = ray_address(ray_session)
    _run_to_the_end(sweep, "--address", address)
    before = {r.spec.key: r.history for r in load_records(paths)}
    client, _, children = mlflow_runs(paths)
    left_open, unwritten = children
    client.set_tag(left_open.info.run_id, "ablab.state", "running")
    client.update_run(left_open.info.run_id, status="RUNNING")
    client.delete_run(unwritten.info.run_id)

    out = _run_to_the_end(sweep, "--address", address)
    assert "2 of trials that had ended now say how they ended" in out
    _assert_mlflow_says_what_the_records_say(paths, before)


def _run_to_the_end(sweep, *args: str) -> str:
    """`ablab run` of the sweep in a subprocess, which must succeed; returns its output."""
    proc = _ablab("run", str(sweep), "--no-live", *args)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    return out


def _assert_mlflow_says_what_the_records_say(paths, before: dict) -> None:
    """One parent, a FINISHED child per trial with every recorded step logged once."""
    client, parents, children = mlflow_runs(paths)
    assert len(parents) == 1 and len(children) == len(before)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["ablab.state"] == "finished"
        history = before[child.data.tags["ablab.trial_key"]]
        logged = client.get_metric_history(child.info.run_id, "val/score")
        assert sorted((m.step, m.value) for m in logged) == sorted((s, h["val/score"]) for s, h in history.items())


def test_settings_that_change_results_are_in_the_fingerprint(ray_session, write_sweep, capsys):
    sweep = write_sweep(SWEEP.format(name="fp"))
    assert main(["run", str(sweep), "--no-live"]) == 0
    capsys.readouterr()
    for change in ("early_stopping={type: margin, margin: 0.2}", "max_failures=5", "mode=min", "seeds=2"):
        assert main(["run", str(sweep), "--no-live", "--set", change]) == 2, change
        assert "a different study named 'fp'" in capsys.readouterr().err
    # a report-only key continues the study, runs nothing again, and says so
    assert main(["run", str(sweep), "--no-live", "--set", "metrics=[val/score, test/score]"]) == 0
    out = capsys.readouterr().out
    assert "changed since the last run: metrics (the report only)" in out
    records = load_records(study_paths(sweep, "fp"))
    for r in records:
        events = [json.loads(line)["event"] for line in
                  (study_paths(sweep, "fp").trials_dir / f"{r.trial_id}.jsonl").read_text().splitlines()]
        assert events.count("start") == 1


def test_metric_directions_are_saved_at_prepare_time(ray_session, write_sweep):
    from ablab.records import directions

    sweep = write_sweep(SWEEP.format(name="dirs"))
    assert main(["run", str(sweep), "--no-live"]) == 0
    assert directions(study_paths(sweep, "dirs")) == {
        "val/score": "max", "test/score": "max", "train/loss": "min", "time/work_s": "min"}


def test_two_runs_of_one_study_started_together(ray_session, write_sweep):
    sweep = write_sweep(SWEEP.format(name="twice").replace("steps: 3", "steps: 4, sleep_seconds: 0.3"))
    paths = study_paths(sweep, "twice")
    # two users' runs on one cluster (the session's Ray): only the lock decides
    runs = [_ablab("run", str(sweep), "--no-live", "--address", ray_address(ray_session)) for _ in range(2)]
    outs = [r.communicate(timeout=600)[0] for r in runs]
    codes = sorted(r.returncode for r in runs)
    assert codes == [0, 2], outs
    loser = outs[[r.returncode for r in runs].index(2)]
    assert "is being run by pid" in loser or "was just created" in loser, loser
    records = load_records(paths)
    assert all(r.state == TrialState.FINISHED for r in records)
    starts = [json.loads(line)["event"] for f in paths.trials_dir.glob("*.jsonl")
              for line in f.read_text().splitlines()].count("start")
    assert starts == len(records) == 2  # every trial ran once
    _, parents, children = mlflow_runs(paths)
    assert len(parents) == 1 and len(children) == 2
