"""Ray Tune callbacks that run in the driver: trial records and MLflow children.

Ray pickles callbacks into the experiment state and brings them back on restore, so
they hold only plain settings and build their clients in `setup()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ablab import schedulers
from ablab.expand import context_label
from ablab.ray_api import Callback
from ablab.records import EventLog, StudyPaths, TrialState
from ablab.trial import CONFIG_ERROR_KEY, NODE_KEY, STEP_KEY

# Keys Ray adds to every result; they are not the trainable's metrics.
RAY_KEYS = {
    "done", "training_iteration", "trial_id", "date", "timestamp", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
    "iterations_since_restore", "checkpoint_dir_name", "config", "should_checkpoint",
    STEP_KEY, NODE_KEY,
}


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in result.items()
        if k not in RAY_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def spec_of(trial) -> dict[str, Any]:
    return trial.config["ablab"]


def labelled_spec(trial) -> dict[str, Any]:
    """The trial's spec with its grid point's label (what names its MLflow run)."""
    spec = spec_of(trial)
    return {**spec, "context_label": context_label(spec["context"])}


def error_of(trial) -> str:
    """The reason a trial failed, in one line (the last line of its exception)."""
    text = None
    try:
        # Ray writes the traceback to the driver's staging copy first (trial.error_file)
        # and syncs it to storage later, where get_error() reads it.
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file) as f:
                text = f.read()
        else:
            text = trial.get_error()
    except Exception:  # noqa: BLE001
        pass
    if not text:
        return "unknown error (see the trial's error.txt in the tune/ folder)"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith(("File ", "^", "~", "Traceback", "Failure #")) and ": " in line]
    return (causes[-1] if causes else lines[-1])[:2000]


def outcome(trial) -> TrialState:
    """How a trial that Ray saw end without an error ended, from its event log."""
    return schedulers.outcome(spec_of(trial)["study_dir"], trial.trial_id)


class StudyCallback(Callback):
    """Writes each trial's event log and mirrors it to its MLflow child run.

    The trial records come first: an event is on disk before MLflow hears of it. MLflow's
    side (its import, the store, the parent run) is opened by the runner in a thread beside
    the first trials (`opening`); the first event that needs it waits for it."""

    def __init__(self, storage: str, name: str, tracking_uri: str, experiment: str,
                 artifact_location: str | None, parent_run_id: str | None = None):
        self.storage = storage
        self.name = name
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.parent_run_id = parent_run_id
        self._runtime: dict[str, Any] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_runtime"] = {}
        return state

    def opening(self, tracking) -> None:
        """`tracking`: a future of the runner's Tracking (its parent run's id)."""
        self._runtime["opening"] = tracking

    def setup(self, **info):
        from ablab.records import ended_trials

        self._runtime["log"] = EventLog(StudyPaths(Path(self.storage), self.name))
        self._runtime["runs"] = {}
        self._runtime["ended"] = set(ended_trials(StudyPaths(Path(self.storage), self.name)))

    def _skip(self, trial) -> bool:
        return trial.trial_id in self._runtime["ended"]

    @property
    def _log(self) -> EventLog:
        return self._runtime["log"]

    @property
    def _tracker(self):
        if "tracker" not in self._runtime:
            from ablab.tracking import Tracker

            opening = self._runtime.get("opening")
            if opening is not None:
                self.parent_run_id = opening.result().parent_id  # raises what opening MLflow raised
            self._runtime["tracker"] = Tracker(self.tracking_uri, self.experiment, self.artifact_location)
        return self._runtime["tracker"]

    def _run_id(self, trial) -> str:
        runs = self._runtime["runs"]
        if trial.trial_id not in runs:
            tracker = self._tracker  # first: it knows the parent run
            runs[trial.trial_id] = tracker.child(self.parent_run_id, self.name, labelled_spec(trial))
        return runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        spec = spec_of(trial)
        public = {k: v for k, v in spec.items() if k not in ("trainable", "stage_root", "study_dir")}
        self._log.append(trial.trial_id, {"event": "start", "spec": public, "node": trial.node_ip})
        self._run_id(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        self._log.append(trial.trial_id, {"event": "retry", "error": error_of(trial)})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self._skip(trial):
            return
        if CONFIG_ERROR_KEY in result:  # a config that cannot work: one failure, no retry
            error = str(result[CONFIG_ERROR_KEY])
            self._log.append(trial.trial_id, {"event": "end", "state": "failed", "error": error})
            self._tracker.end_child(self._run_id(trial), labelled_spec(trial), "failed", error)
            return
        metrics = metrics_of(result)
        step = int(result.get(STEP_KEY, result.get("training_iteration", 0)))
        self._log.append(trial.trial_id, {"event": "result", "step": step, "metrics": metrics,
                                          "node": result.get(NODE_KEY)})
        self._tracker.log_metrics(self._run_id(trial), metrics, step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        state = outcome(trial)
        if state == TrialState.FAILED:  # its end is logged already (a ConfigError)
            return
        self._log.append(trial.trial_id, {"event": "end", "state": state.value})
        self._log_artifacts(trial)
        last = (trial.last_result or {}).get(STEP_KEY, (trial.last_result or {}).get("training_iteration"))
        self._tracker.end_child(self._run_id(trial), labelled_spec(trial), state.value, last_step=last)

    def _log_artifacts(self, trial) -> None:
        """Files the trial wrote to `trial.artifact_dir()`, logged from the driver."""
        from ablab.trial import safe_name

        folder = StudyPaths(Path(self.storage), self.name).dir / "artifacts" / safe_name(spec_of(trial)["key"])
        if folder.is_dir() and any(folder.iterdir()):
            try:
                self._tracker.client.log_artifacts(self._run_id(trial), str(folder))
            except Exception as exc:  # noqa: BLE001 - a picture must not fail the study
                print(f"could not log artifacts of {spec_of(trial)['key']} to MLflow: {exc}")

    def on_trial_error(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        error = error_of(trial)
        self._log.append(trial.trial_id, {"event": "end", "state": "failed", "error": error})
        self._log_artifacts(trial)
        self._tracker.end_child(self._run_id(trial), labelled_spec(trial), "failed", error)
