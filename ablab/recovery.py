"""A lost or new MLflow store rebuilt from the trial records.

The trial records are the study's truth; MLflow mirrors them. When the store a study
tracked to is gone (mlflow.db deleted) or the study now tracks elsewhere, the parent run
is created anew and every recorded trial gets its child back, with its metrics re-logged
and its end state, so the UI shows what the records hold.
"""

from __future__ import annotations

from ablab.tracking import TAG_KEY, TAG_STATE, Tracker
from ablab.types import TrialRecord, TrialState, context_label


def has_run(tracker: Tracker, run_id: str) -> bool:
    try:
        tracker.client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MlflowException: not found (or a store without it)
        return False
    return True


def rebuild_children(tracker: Tracker, parent_id: str, study_name: str, records: list[TrialRecord]) -> int:
    """Children for every trial that has started, from its record; returns how many."""
    n = 0
    for rec in records:
        if rec.state == TrialState.PENDING:
            continue
        spec = _spec(rec)
        run_id = tracker.child(parent_id, study_name, spec)
        for step in rec.steps:
            tracker.log_metrics(run_id, rec.history[step], step)
        _end(tracker, run_id, spec, rec)
        n += 1
    return n


def settle_children(tracker: Tracker, parent_id: str, study_name: str, records: list[TrialRecord]) -> int:
    """The children of trials whose records have ended, made to say so: a driver killed
    between a trial's end in its record and in MLflow (or before its child was written)
    leaves the child open, and the trial does not run again to close it. Returns how many
    were mended."""
    children = {run.data.tags.get(TAG_KEY): run for run in tracker.children(parent_id)}
    n = 0
    for rec in records:
        if not rec.state.is_done:
            continue
        run = children.get(rec.spec.key)
        if run is not None and run.data.tags.get(TAG_STATE) == rec.state.value:
            continue
        spec = _spec(rec)
        run_id = tracker.child(parent_id, study_name, spec)
        key = next(iter(rec.history[rec.steps[-1]]), None) if rec.steps else None
        logged = {m.step for m in tracker.client.get_metric_history(run_id, key)} if run is not None and key else set()
        for step in rec.steps:
            if step not in logged:
                tracker.log_metrics(run_id, rec.history[step], step)
        _end(tracker, run_id, spec, rec)
        n += 1
    return n


def _spec(rec: TrialRecord) -> dict:
    return rec.spec.to_json() | {"context_label": context_label(rec.spec.context)}


def _end(tracker: Tracker, run_id: str, spec: dict, rec: TrialRecord) -> None:
    if rec.state.is_done:
        tracker.end_child(run_id, spec, rec.state.value, rec.error, last_step=rec.steps[-1] if rec.steps else None)
    else:
        tracker.end_child(run_id, spec, "killed")


def study_runs(paths):
    """(client, parent runs, child runs) of a study, from the store its study.json names."""
    from mlflow.tracking import MlflowClient

    from ablab.records import read_study_file

    record = read_study_file(paths)
    client = MlflowClient(record["tracking_uri"])
    exp = client.get_experiment_by_name(record["experiment"])
    runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
    parents = [r for r in runs if r.data.tags.get("ablab.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return client, parents, children
