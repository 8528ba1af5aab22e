"""What `ablab run` does to start and end fast, checked on real MLflow stores and a real run:
a new SQLite store is a copy of a schema template that MLflow itself built, equal to a
store MLflow migrates, reused by the next store; the command prints the table first and
still leaves the complete report, MLflow and Ray stopped when it returns."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from mlflow.entities import Metric
from mlflow.store.db.utils import _get_latest_schema_revision, _verify_schema
from mlflow.tracking import MlflowClient

from ablab import tracking
from ablab.records import StudyPaths, TrialState, load_records

from .helpers import mlflow_runs, study_paths

MARKER = "ablab_test_marker"  # a table put into the template: a store that has it was copied from it


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """ablab's cache in tmp_path (the schema template is built there, not in ~/.cache)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(tracking.SCHEMA_CACHE_ENV, str(folder))
    return folder


def _schema(db: Path) -> set[tuple]:
    """Every table, index and trigger with its SQL as a sorted list of its lines: MLflow's
    migrations write a table's CHECK constraints in an order that varies from one run of
    them to the next (two stores MLflow migrates differ so), the constraints do not."""
    with sqlite3.connect(db) as con:
        rows = con.execute("select type, name, tbl_name, sql from sqlite_master where name not like 'sqlite_%'")
        return {(kind, name, table, tuple(sorted(line.strip().rstrip(",").strip() for line in (sql or "").splitlines())))
                for kind, name, table, sql in rows}


def _rows(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows; of the experiments, what does not depend on where and when."""
    with sqlite3.connect(db) as con:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type = 'table'")]
        out = {t: sorted(map(repr, con.execute(f'select * from "{t}"'))) for t in tables if t != "experiments"}
        out["experiments"] = sorted(con.execute("select experiment_id, name, lifecycle_stage from experiments"))
    return out


def _uri(db: Path) -> str:
    return f"sqlite:///{db}"


def test_a_new_store_is_the_template_and_equals_one_mlflow_migrates(tmp_path, cache):
    migrated, prepared = tmp_path / "migrated.db", tmp_path / "prepared.db"
    MlflowClient(tracking_uri=_uri(migrated)).search_experiments()  # MLflow alone: its migrations
    tracker = tracking.Tracker(_uri(prepared), "exp")

    templates = list((cache / "mlflow-schema").glob("*.db"))
    assert len(templates) == 1 and "mlflow" in templates[0].name
    assert _schema(prepared) == _schema(migrated)
    assert _rows(prepared) == _rows(migrated)  # the Default experiment (0), added by MLflow on opening
    with sqlite3.connect(prepared) as con:
        assert con.execute("select version_num from alembic_version").fetchall() == [(_get_latest_schema_revision(),)]
        default_location = con.execute("select artifact_location from experiments where experiment_id = 0").fetchone()
    with sqlite3.connect(templates[0]) as con:
        assert con.execute("select count(*) from experiments").fetchone() == (0,)  # no row: paths differ per store
    _verify_schema(sqlalchemy.create_engine(_uri(prepared)))  # MLflow's own schema check
    assert default_location[0] == MlflowClient(tracking_uri=_uri(migrated)).get_experiment("0").artifact_location

    # a working store: a run with params and metrics, read back by a fresh client
    run = tracker.client.create_run(tracker.experiment_id, run_name="r")
    tracker.client.log_batch(run.info.run_id, metrics=[Metric("m", 0.5, 0, s) for s in range(3)])
    tracker.client.set_terminated(run.info.run_id)
    again = MlflowClient(tracking_uri=_uri(prepared))
    assert [m.step for m in again.get_metric_history(run.info.run_id, "m")] == [0, 1, 2]
    assert again.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_second_store_is_copied_from_the_same_template_and_an_existing_one_is_left_alone(tmp_path, cache):
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    assert tracking.prepare_store(_uri(first))
    template = tracking.schema_template()
    built = template.stat().st_mtime_ns
    with sqlite3.connect(template) as con:
        con.execute(f"create table {MARKER} (x integer)")
    assert tracking.prepare_store(_uri(second))
    assert template.stat().st_mtime_ns >= built and len(list(template.parent.glob("*.db"))) == 1
    assert (MARKER in {n for (n,) in sqlite3.connect(second).execute("select name from sqlite_master")})
    assert MlflowClient(tracking_uri=_uri(second)).get_experiment("0").name == "Default"  # extra tables are fine

    before = first.read_bytes()
    assert not tracking.prepare_store(_uri(first))  # never over a store that exists
    assert first.read_bytes() == before
    assert not tracking.prepare_store("sqlite://") and not tracking.prepare_store("http://127.0.0.1:5000")


SWEEP = """
name: {name}
trainable: synthetic
base: {{steps: 3}}
ablations:
  - part: quality
    baseline: 0.9
    replacements: [0.5, 0.7]
seeds: 2
metric: val/score
mode: max
"""


def test_ablab_run_prints_the_table_first_and_returns_with_the_report_complete(write_sweep, cache, tmp_path,
                                                                              all_figure_formats):
    """The command as a user runs it (its own local Ray): the store starts from the template,
    the table is printed before the report files are written, and when the command returns
    the report, MLflow's parent run (report artifacts, saved view) and every child are there,
    and Ray's processes are gone."""
    sweep = write_sweep(SWEEP.format(name="fast"))
    paths = study_paths(sweep, "fast")
    template = tracking.schema_template()
    with sqlite3.connect(template) as con:
        con.execute(f"create table {MARKER} (x integer)")
    phases = tmp_path / "phases.jsonl"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", ABLAB_PHASES=str(phases))
    done = subprocess.Popen([sys.executable, "-m", "ablab.cli", "run", str(sweep), "--no-live"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    assert "Ablation `quality`" in out and "report:" in out

    assert MARKER in {n for (n,) in sqlite3.connect(paths.mlflow_db).execute("select name from sqlite_master")}
    marks = [json.loads(line)["phase"] for line in phases.read_text().splitlines()]
    order = ["validated", "ray started", "mlflow store open", "trials ended", "mlflow runs closed",
             "table printed", "report written", "ray stopped"]
    assert [m for m in marks if m in order] == order

    records = load_records(paths)
    assert len(records) == 6 and all(r.state == TrialState.FINISHED for r in records)
    for name in ("report.md", "report.html", "report.json", "report.tex", "trials.csv", "curves.png", "curves.pdf"):
        assert (paths.report_dir / name).stat().st_size > 0, name
    client, parents, children = mlflow_runs(paths)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 6
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} == {"report", "sweep.yaml"}
    assert "report.html" in {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "report")}
    experiment = client.get_experiment(parents[0].info.experiment_id)
    assert tracking.SHARED_VIEW_TAG + tracking.view_key(parents[0].info.run_id) in experiment.tags
    assert all(c.info.status == "FINISHED" for c in children)

    # the trial actors had no runtime env: the worker processes Ray prestarts could run them
    assert _runtime_envs_created(done.pid) == []
    # a lean local Ray: no dashboard head, autoscaler or log monitor; the workers preloaded
    # Ray Tune, ablab's trial and the trainable without an error
    logs = _session(done.pid) / "logs"
    assert {"raylet.out", "gcs_server.out"} <= {p.name for p in logs.iterdir()}
    assert not [p.name for p in logs.iterdir() if p.name.split(".")[0] in ("dashboard", "monitor", "log_monitor")]
    workers = list(logs.glob("worker-*.err"))
    assert workers and not [w for w in workers if "Failed to preload" in w.read_text()]

    # the command stopped its own Ray: its GCS and raylet (named by the driver's pid) are gone
    head = subprocess.run(["pgrep", "-f", f"(gcs_server|raylet/raylet) .*session_[0-9_-]*_{done.pid}( |$)"],
                          capture_output=True, text=True)
    assert head.stdout == "", head.stdout


def _session(driver_pid: int) -> Path:
    """The session folder of the Ray that the driver `driver_pid` started."""
    sessions = list(Path("/tmp/ray").glob(f"session_*_{driver_pid}"))
    assert len(sessions) == 1, sessions
    return sessions[0]


def _runtime_envs_created(driver_pid: int) -> list[str]:
    """The runtime envs that the Ray the driver started had to build, from its runtime-env
    agent's log. An actor with a runtime env cannot run in a worker Ray prestarted; one
    without needs none built."""
    log = (_session(driver_pid) / "logs" / "runtime_env_agent.log").read_text()
    assert "Starting runtime env agent" in log  # the agent logs: a missing line means something
    return [line for line in log.splitlines() if "Creating runtime env" in line]


def test_trials_of_a_local_ray_run_in_its_prestarted_workers_in_the_launch_folder(cache, tmp_path):
    """Trial actors of a Ray that `ablab run` starts need no runtime env (its workers inherit
    the driver's environment), so they run in the workers Ray prestarts, and still in the
    folder ablab was started in: a data file given by a relative path is found."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 12)).astype("float32")
    np.savez(tmp_path / "tiny.npz", x_train=x, y_train=np.repeat(np.arange(3), 30), x_test=x[:30],
             y_test=np.repeat(np.arange(3), 10))
    (tmp_path / "s.yaml").write_text(
        "name: rel\ntrainable: quickstart\nbase: {data: {name: npz, path: tiny.npz}, train: {epochs: 2}}\n"
        "seeds: 2\nmetric: val/acc\nmode: max\nearly_stopping: none\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_CHDIR_TO_TRIAL_DIR", None)
    done = subprocess.Popen([sys.executable, "-m", "ablab.cli", "run", "s.yaml", "--no-live"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    records = load_records(StudyPaths(tmp_path / "ablab_results", "rel"))  # the default storage
    assert [r.state for r in records] == [TrialState.FINISHED] * 2, [r.error for r in records]
    assert all(r.steps for r in records)
    assert _runtime_envs_created(done.pid) == []


JOINED = """
import ray
from ablab.ray_api import is_local_head, starts_a_local_ray
before = starts_a_local_ray()
ray.init(log_to_driver=False)
print(before, is_local_head())
"""


def test_a_driver_that_joins_through_ray_address_is_not_a_local_head(ray_session):
    """`ray job submit` starts the driver with RAY_ADDRESS set: its `ray.init()` joins the
    cluster, so ablab neither starts Ray lean there nor takes its workers for its own (they
    need Ray Tune's runtime env); the process that started Ray is its head."""
    from ablab.ray_api import is_local_head

    assert is_local_head()
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    joined = subprocess.run([sys.executable, "-c", JOINED], env=env, capture_output=True, text=True, timeout=120)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split() == ["False", "False"]


def test_prestarted_workers_preload_only_when_each_will_run_a_trial(write_sweep):
    """A local Ray prestarts one worker per CPU: they import Ray Tune and the trainable
    (torch: ~650 MB each) before the first trial only when every one of them runs one."""
    from ablab.runner import _preload
    from ablab.spec import load_study

    cpus = os.cpu_count() or 1
    study = load_study(write_sweep(SWEEP.format(name="wave")))  # 1 CPU a trial
    assert _preload(study, trials=cpus) == ["ray.tune", "ablab.trial", "trainables.synthetic"]
    if cpus > 1:
        assert _preload(study, trials=cpus - 1) == []  # fewer trials than workers
        wide = load_study(write_sweep(SWEEP.format(name="wide") + "resources: {cpu: 2}\n"))
        assert _preload(wide, trials=100) == []  # half the workers would idle
        capped = load_study(write_sweep(SWEEP.format(name="capped") + f"max_concurrent: {cpus - 1}\n"))
        assert _preload(capped, trials=100) == []
