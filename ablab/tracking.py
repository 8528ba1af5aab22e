"""MLflow tracking from the driver: one parent run per study, one child run per trial.

Ray's MLflowLoggerCallback makes no parent run, logs Ray's flattened config (not the
sweep file's dotted names) and cannot find its runs again after a restart, so a resumed
study would duplicate children. This tracker finds a trial's child by the tag
`ablab.trial_key`, so a restarted driver continues the same child; logging happens in
the driver only, which keeps SQLite's single writer happy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ablab.errors import UserError

T = TypeVar("T")

TAG_STUDY = "ablab.study"
TAG_KEY = "ablab.trial_key"
TAG_STATE = "ablab.state"
TAG_SELECTED = "ablab.selected"  # true: the trial enters the ablation table (tuned value chosen)
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {dotted.key: value}, the same names as in the sweep file."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_uri(configured: str | None, default: str) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default


def _retry(fn: Callable[[], T], attempts: int = 5, first_wait: float = 1.0) -> T:
    """MLflow calls retried with backoff: a server restart should not lose a metric."""
    wait = first_wait
    for i in range(attempts):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the MLflow client raises many kinds
            if i == attempts - 1:
                raise
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


class Tracker:
    """The study's MLflow experiment, parent run and children."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_name = experiment
        self.artifact_location = artifact_location
        self._experiment_id: str | None = None
        self._children: dict[str, str] = {}

    # --------------------------------------------------------------- set-up
    def check_reachable(self) -> None:
        """Refuse to start a study whose tracking server is down: fail before any trial runs."""
        if not self.uri.startswith(("http://", "https://")):
            return
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise UserError(
                f"the MLflow tracking server at {self.uri} is unreachable ({type(exc).__name__})",
                key="tracking.uri",
                hint="start it, or unset MLFLOW_TRACKING_URI / tracking.uri to use SQLite in the study folder",
            ) from None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def start_parent(self, study_name: str, sweep_file: Path, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=study_name,
            tags={TAG_STUDY: study_name, "ablab.role": "study", **tags},
        )
        self.client.log_artifact(run.info.run_id, str(sweep_file))
        return run.info.run_id

    def reopen_parent(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def close_orphans(self, parent_id: str) -> int:
        """Children left RUNNING by a killed driver are closed as KILLED; a trial that
        runs again reopens its own child. Returns how many were closed."""
        closed = 0
        for run in self._search(f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.status = 'RUNNING'"):
            self.client.set_tag(run.info.run_id, TAG_STATE, "killed")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
        return closed

    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def children(self, parent_id: str) -> list:
        return self._search(f"tags.`{PARENT_TAG}` = '{parent_id}'")

    # --------------------------------------------------------------- per trial
    def child(self, parent_id: str, study_name: str, spec: Mapping[str, Any]) -> str:
        """The trial's child run, created once and found again after a restart."""
        key = spec["key"]
        if key in self._children:
            run_id = self._children[key]
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
            return run_id
        found = _retry(lambda: self._search(
            f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TAG_KEY}` = '{_quote(key)}'"
        ))
        if found:
            run_id = found[0].info.run_id
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
        else:
            run = _retry(lambda: self.client.create_run(
                self.experiment_id,
                run_name=key,
                tags={
                    PARENT_TAG: parent_id, TAG_STUDY: study_name, TAG_KEY: key,
                    "ablab.variant": spec["variant"], "ablab.seed": str(spec["seed"]),
                    "ablab.context": str(spec.get("context_label", "")), TAG_STATE: "running",
                },
            ))
            run_id = run.info.run_id
            self._log_params(run_id, spec)
        self._children[key] = run_id
        return run_id

    def _log_params(self, run_id: str, spec: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = flatten(spec["config"])
        params["variant"] = spec["variant"]
        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, params=chunk))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            _retry(lambda chunk=batch[i:i + 1000]: self.client.log_batch(run_id, metrics=chunk))

    def end_child(self, run_id: str, state: str, error: str | None = None) -> None:
        status = {"finished": "FINISHED", "stopped": "FINISHED", "failed": "FAILED"}.get(state, "KILLED")
        tags = {TAG_STATE: state}
        if error:
            tags["ablab.error"] = error[-4000:]
        for k, v in tags.items():
            _retry(lambda k=k, v=v: self.client.set_tag(run_id, k, v))
        _retry(lambda: self.client.set_terminated(run_id, status=status))

    def tag_selected(self, parent_id: str, selected: Mapping[str, bool]) -> None:
        """`ablab.selected=true|false` on each child whose trial key is in `selected`."""
        for run in self.children(parent_id):
            key = run.data.tags.get(TAG_KEY)
            value = None if key not in selected else ("true" if selected[key] else "false")
            if value is not None and run.data.tags.get(TAG_SELECTED) != value:
                _retry(lambda r=run.info.run_id, v=value: self.client.set_tag(r, TAG_SELECTED, v))

    def end_parent(self, run_id: str, status: str) -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status))


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
