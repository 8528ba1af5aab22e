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

    The trial records come first: an event is on disk before MLflow hears of it. The
    MLflow calls go to the runner's `Mirror` (ablab/mirror.py), which runs them on a thread
    of their own, in order; it is opened once the first wave of trials has started
    (`first_wave`: as many as can run at once), so that they start without waiting for it.
    """

    def __init__(self, storage: str, name: str, first_wave: int):
        self.storage = storage
        self.name = name
        self.first_wave = first_wave
        self._runtime: dict[str, Any] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_runtime"] = {}
        return state

    def attach(self, mirror) -> None:
        """`mirror`: the runner's Mirror of the study's MLflow side (its Tracking)."""
        self._runtime["mirror"] = mirror

    def setup(self, **info):
        from ablab.records import ended_trials

        self._runtime["log"] = EventLog(StudyPaths(Path(self.storage), self.name))
        self._runtime["runs"] = {}  # trial id -> MLflow run id, used on the mirror's thread only
        self._runtime["started"] = 0
        self._runtime["ended"] = set(ended_trials(StudyPaths(Path(self.storage), self.name)))

    def _skip(self, trial) -> bool:
        return trial.trial_id in self._runtime["ended"]

    @property
    def _log(self) -> EventLog:
        return self._runtime["log"]

    def _on_child(self, trial, call=None) -> None:
        """`call(tracker, run_id)` for the trial's child run, on the mirror's thread; the
        child is created (or found again) there first if this run has not seen it yet."""
        runs, trial_id, spec = self._runtime["runs"], trial.trial_id, labelled_spec(trial)

        def mirrored(tracking):
            if call is None or trial_id not in runs:
                runs[trial_id] = tracking.tracker.child(tracking.parent_id, self.name, spec)
            if call is not None:
                call(tracking.tracker, runs[trial_id])

        self._runtime["mirror"].submit(mirrored)

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        spec = spec_of(trial)
        public = {k: v for k, v in spec.items() if k not in ("trainable", "stage_root", "study_dir")}
        self._log.append(trial.trial_id, {"event": "start", "spec": public, "node": trial.node_ip})
        self._on_child(trial)  # its child run (RUNNING again if it exists)
        self._runtime["started"] += 1
        if self._runtime["started"] >= self.first_wave:
            self._runtime["mirror"].start()

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        self._log.append(trial.trial_id, {"event": "retry", "error": error_of(trial)})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self._skip(trial):
            return
        self._runtime["mirror"].start()  # a trial of the first wave reports: the wave is out
        if CONFIG_ERROR_KEY in result:  # a config that cannot work: one failure, no retry
            error = str(result[CONFIG_ERROR_KEY])
            self._log.append(trial.trial_id, {"event": "end", "state": "failed", "error": error})
            spec = labelled_spec(trial)
            self._on_child(trial, lambda tracker, run_id: tracker.end_child(run_id, spec, "failed", error))
            return
        metrics = metrics_of(result)
        step = int(result.get(STEP_KEY, result.get("training_iteration", 0)))
        self._log.append(trial.trial_id, {"event": "result", "step": step, "metrics": metrics,
                                          "node": result.get(NODE_KEY)})
        self._on_child(trial, lambda tracker, run_id: tracker.log_metrics(run_id, metrics, step))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        state = outcome(trial)
        if state == TrialState.FAILED:  # its end is logged already (a ConfigError)
            return
        self._log.append(trial.trial_id, {"event": "end", "state": state.value})
        self._log_artifacts(trial)
        last = (trial.last_result or {}).get(STEP_KEY, (trial.last_result or {}).get("training_iteration"))
        spec = labelled_spec(trial)
        self._on_child(trial, lambda tracker, run_id: tracker.end_child(run_id, spec, state.value, last_step=last))

    def _log_artifacts(self, trial) -> None:
        """Files the trial wrote to `trial.artifact_dir()`, logged from the driver."""
        from ablab.trial import safe_name

        key = spec_of(trial)["key"]
        folder = StudyPaths(Path(self.storage), self.name).dir / "artifacts" / safe_name(key)
        if not (folder.is_dir() and any(folder.iterdir())):
            return

        def log(tracker, run_id):
            try:
                tracker.client.log_artifacts(run_id, str(folder))
            except Exception as exc:  # noqa: BLE001 - a picture must not fail the study
                print(f"could not log artifacts of {key} to MLflow: {exc}")

        self._on_child(trial, log)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self._skip(trial):
            return
        error = error_of(trial)
        self._log.append(trial.trial_id, {"event": "end", "state": "failed", "error": error})
        self._log_artifacts(trial)
        spec = labelled_spec(trial)
        self._on_child(trial, lambda tracker, run_id: tracker.end_child(run_id, spec, "failed", error))
