"""Real studies on real Ray (2 CPUs) with a real MLflow store, read back and checked."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import mlflow_runs, study_paths

pytestmark = pytest.mark.slow


def test_quickstart_runs_tracks_and_reports(ray_session, tmp_path, capsys):
    from tests.conftest import REPO

    sweep = tmp_path / "quickstart.yaml"
    sweep.write_text((REPO / "sweeps/quickstart.yaml").read_text() + f"\nstorage: {tmp_path / 'results'}\n")
    code = main(["run", str(sweep), "--set", "seeds=2", "--set", "train.epochs=3",
                 "--set", "early_stopping=none", "--no-live"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Ablation `model.width`" in out and "report:" in out

    paths = study_paths(sweep, "quickstart")
    records = load_records(paths)
    assert len(records) == 14 and all(r.state == TrialState.FINISHED for r in records)
    assert all(r.steps == [1, 2, 3] for r in records)

    client, parents, children = mlflow_runs(paths)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["ablab.study"] == "quickstart" and "git.commit" in parents[0].data.tags
    assert [a.path for a in client.list_artifacts(parents[0].info.run_id)] == ["report", "sweep.yaml"]
    assert len(children) == 14
    assert len({c.data.tags["ablab.trial_key"] for c in children}) == 14
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["ablab.state"] == "finished"
        assert c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        # params: the flattened config under the sweep file's dotted names
        assert {"model.width", "model.activation", "train.lr", "data.name", "seed", "variant"} <= set(c.data.params)
        history = client.get_metric_history(c.info.run_id, "val/acc")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert 0.0 <= c.data.metrics["test/acc"] <= 1.0
    widths = {c.data.params["variant"]: c.data.params["model.width"] for c in children}
    assert widths["model.width=256"] == "256" and widths["baseline"] == "64"

    # the report's numbers are a direct computation from what MLflow holds
    report = json.loads((paths.report_dir / "report.json").read_text())
    finals = defaultdict(list)
    for c in children:
        finals[c.data.params["variant"]].append(c.data.metrics["test/acc"])
    checked = 0
    for row in report["rows"]:
        if row["metric"] != "test/acc":
            continue
        vals = np.array(finals[row["variant"]])
        assert row["summary_n"] == len(vals) == 2
        assert row["summary_mean"] == pytest.approx(vals.mean())
        assert row["summary_std"] == pytest.approx(vals.std(ddof=1))
        if row["variant"] != "baseline":
            assert row["diff"] == pytest.approx(vals.mean() - np.mean(finals["baseline"]))
        checked += 1
    assert checked == 3 * 3  # three ablations, each baseline + two replacements
    for name in ("report.md", "report.html", "curves.png", "bars_0.png"):
        assert (paths.report_dir / name).stat().st_size > 0

    # running the same study again continues it: nothing is re-run, nothing duplicated
    assert main(["run", str(sweep), "--set", "seeds=2", "--set", "train.epochs=3",
                 "--set", "early_stopping=none", "--no-live"]) == 0
    _, _, children_again = mlflow_runs(paths)
    assert len(children_again) == 14
    assert all(sum(1 for line in f.read_text().splitlines() if '"start"' in line) == 1
               for f in paths.trials_dir.glob("*.jsonl"))
    # and a changed definition under the same name is refused
    assert main(["run", str(sweep), "--set", "seeds=3", "--no-live"]) == 2
    assert "a different study named 'quickstart' already exists" in capsys.readouterr().err


def test_asha_stops_hopeless_trials_and_report_lists_them(ray_session, write_sweep, capsys):
    sweep = write_sweep("""
        name: asha
        trainable: synthetic
        base: {steps: 12, sleep_seconds: 0.15, noise: 0.005}
        ablations:
          - part: quality
            baseline: 0.9
            replacements: [0.05, 0.1]
        seeds: 2
        metric: val/score
        mode: max
        early_stopping: {type: asha, max_t: 12, grace_period: 2, reduction_factor: 2}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0
    paths = study_paths(sweep, "asha")
    records = load_records(paths)
    stopped = [r for r in records if r.state == TrialState.STOPPED]
    hopeless = [r for r in records if r.spec.variant != "baseline"]
    assert all(r.state == TrialState.STOPPED and len(r.steps) < 12 for r in hopeless), [
        (r.spec.key, r.state, r.steps) for r in records]
    # (ASHA may stop the second baseline seed too: it keeps the top 1/reduction_factor at each rung)
    assert any(r.state == TrialState.FINISHED and r.steps[-1] == 12 for r in records if r.spec.variant == "baseline")
    md = (paths.report_dir / "report.md").read_text()
    apart = md.split("## Trials not in the means")[1]
    for r in stopped:
        assert f"| {r.spec.variant} | {r.spec.seed} | stopped |" in apart
    _, _, children = mlflow_runs(paths)
    tags = {c.data.tags["ablab.trial_key"]: c.data.tags["ablab.state"] for c in children}
    assert {k for k, v in tags.items() if v == "stopped"} == {r.spec.key for r in stopped}


def test_nan_trial_fails_with_reason_others_go_on(ray_session, write_sweep):
    sweep = write_sweep("""
        name: nan
        trainable: synthetic
        base: {steps: 3}
        ablations:
          - part: nan_at_step
            baseline: 0
            replacements: [2]
        seeds: 1
        metric: val/score
        mode: max
        max_failures: 0
    """)
    assert main(["run", str(sweep), "--no-live"]) == 1  # not every trial finished
    records = {r.spec.variant: r for r in load_records(study_paths(sweep, "nan"))}
    assert records["baseline"].state == TrialState.FINISHED
    bad = records["nan_at_step=2"]
    assert bad.state == TrialState.FAILED and "val/score is nan at step 2" in bad.error
    md = (study_paths(sweep, "nan").report_dir / "report.md").read_text()
    assert "| nan_at_step=2 | 0 | failed |" in md


def test_crashed_worker_is_retried_from_its_checkpoint(ray_session, write_sweep):
    sweep = write_sweep("""
        name: crash
        trainable: synthetic
        base: {steps: 5, crash_at_step: 3}
        seeds: 1
        metric: val/score
        mode: max
        max_failures: 2
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0
    paths = study_paths(sweep, "crash")
    (rec,) = load_records(paths)
    assert rec.state == TrialState.FINISHED and rec.retries == 1 and rec.steps == [1, 2, 3, 4, 5]
    results = [json.loads(line) for f in paths.trials_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
    # resumed at step 3 from the step-2 checkpoint: steps 1 and 2 were not run again
    assert [e["step"] for e in results if e["event"] == "result"] == [1, 2, 3, 4, 5]
    _, _, children = mlflow_runs(paths)
    assert len(children) == 1 and children[0].info.status == "FINISHED"


def test_resources_larger_than_the_cluster_are_refused(ray_session, write_sweep, capsys):
    sweep = write_sweep("""
        name: toobig
        trainable: synthetic
        metric: val/score
        mode: max
        resources: {cpu: 16}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 2
    err = capsys.readouterr().err
    assert "resources.cpu: each trial asks for 16.0 CPU but the cluster has 2 (got 16.0); allowed: at most 2" in err
    assert not (study_paths(sweep, "toobig").dir / "study.json").exists()


def test_relative_paths_in_a_sweep_mean_where_ablab_was_started(ray_session, write_sweep, tmp_path, capsys):
    """A data file given relative to the launch directory is found inside the trials (Ray
    would otherwise run each trial inside its own trial folder)."""
    import os

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 24)).astype("float32")
    y = np.repeat(np.arange(3), 40)
    np.savez(tmp_path / "tiny.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    relative = os.path.relpath(tmp_path / "tiny.npz")
    assert not os.path.isabs(relative)
    sweep = write_sweep(f"""
        name: relpath
        trainable: quickstart
        base:
          data: {{name: npz, path: {relative}}}
          train: {{epochs: 2}}
        metric: val/acc
        mode: max
        early_stopping: none
    """)
    code = main(["run", str(sweep), "--no-live"])
    out = capsys.readouterr()
    records = load_records(study_paths(sweep, "relpath"))
    assert code == 0 and [r.state for r in records] == [TrialState.FINISHED], (
        [r.error for r in records], out.err[-2000:])
