"""A lost or new MLflow store rebuilt from the trial records.

The trial records are the study's truth; MLflow mirrors them. When the store a study
tracked to is gone (mlflow.db deleted) or the study now tracks elsewhere, the parent run
is created anew and every recorded trial gets its child back, with its metrics re-logged
and its end state, so the UI shows what the records hold.
"""

from __future__ import annotations

from ablab.tracking import Tracker
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
        spec = rec.spec.to_json() | {"context_label": context_label(rec.spec.context)}
        run_id = tracker.child(parent_id, study_name, spec)
        for step in rec.steps:
            tracker.log_metrics(run_id, rec.history[step], step)
        if rec.state.is_done:
            tracker.end_child(run_id, spec, rec.state.value, rec.error,
                              last_step=rec.steps[-1] if rec.steps else None)
        else:
            tracker.end_child(run_id, spec, "killed")
        n += 1
    return n


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
