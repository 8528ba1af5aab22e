"""Early stopping: Ray Tune's schedulers, and a margin rule for ablation tables.

Ray reports a trial stopped by a scheduler exactly like one that finished (both end
TERMINATED with done=True), but a report must tell them apart: early-stopped trials are
listed apart, never averaged in. So a scheduler that stops a trial early says so in the
trial's event log (a `stop` event, written in the driver, before the trial's end), and
`outcome` reads it back: the record, not a process's memory, is what counts, and it
survives a restarted driver.

On a continued study, the margin rule rebuilds its memory from the records (so it stops
what an uninterrupted run would); Ray's ASHA and median rules start afresh, as Ray itself
restores neither: a continued study with them may stop fewer trials than a clean run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ablab.ray_api import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ablab.records import EventLog, fold_log
from ablab.spec import Study
from ablab.types import StudyPaths, TrialState


def _log_of(study_dir: str | Path) -> StudyPaths:
    study_dir = Path(study_dir)
    return StudyPaths(study_dir.parent, study_dir.name)


def mark_stopped(study_dir: str | Path, trial_id: str, step: int) -> None:
    EventLog(_log_of(study_dir)).append(trial_id, {"event": "stop", "step": step})


def outcome(study_dir: str | Path, trial_id: str) -> TrialState:
    """How a trial that Ray saw end without an error ended, from its event log: stopped
    early (a `stop` event), failed (a ConfigError it reported), or finished."""
    log = _log_of(study_dir).trials_dir / f"{trial_id}.jsonl"
    state = TrialState.FINISHED
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            event = json.loads(line)
            if event.get("event") == "stop":
                state = TrialState.STOPPED
            elif event.get("event") == "end" and event.get("state") == "failed":
                return TrialState.FAILED
        except (ValueError, AttributeError):
            continue
    return state


def _study_dir(trial) -> str:
    return trial.config["ablab"]["study_dir"]


class RecordingASHA(ASHAScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        # ASHA also says STOP when a trial reaches max_t: that trial finished its budget.
        if decision == TrialScheduler.STOP and result[self._time_attr] < self._max_t:
            mark_stopped(_study_dir(trial), trial.trial_id, int(result[self._time_attr]))
        return decision


class RecordingMedian(MedianStoppingRule):
    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            mark_stopped(_study_dir(trial), trial.trial_id, int(result["training_iteration"]))
        return decision


class MarginStopping(FIFOScheduler):
    """Stop a trial that trails the best trial at some step by more than `margin`.

    ASHA and the median rule stop a fixed share of trials (all but the top 1/eta, or the
    lower half): right for a hyperparameter search, wrong for an ablation table, which
    needs every seed of every reasonable variant. This rule stops only the hopeless ones.
    Written here because Ray Tune has no scheduler of this kind.

    The rule looks back: when a better value at step t arrives, every running trial whose
    value at step t trails it by more than the margin is stopped at its next report, even
    if it has run ahead since. So which trials stop does not depend on which reached step
    t first, only on the values (one exception remains: a trial that ended before the
    better value arrived stays finished). Its memory (every value at every step) is
    rebuilt from the study's event logs when a driver starts, so a resumed study stops
    what an uninterrupted one would.
    """

    def __init__(self, metric: str, mode: str, grace_period: int, margin: float, study_dir: str,
                 time_attr: str = "training_iteration"):
        super().__init__()
        self._metric, self._sign = metric, 1.0 if mode == "max" else -1.0
        self._grace, self._margin, self._time_attr = grace_period, margin, time_attr
        self._study_dir = study_dir
        self._reset()

    def _reset(self) -> None:
        self._values: dict[str, dict[int, float]] = {}  # trial id -> step -> signed value
        self._best: dict[int, float] = {}  # step -> best signed value at that step
        self._doomed: set[str] = set()
        self._loaded = False

    def __getstate__(self):
        # Ray pickles the scheduler at the start only; its memory comes from the records.
        state = self.__dict__.copy()
        for k in ("_values", "_best", "_doomed", "_loaded"):
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def _load(self) -> None:
        self._loaded = True
        trials_dir = _log_of(self._study_dir).trials_dir
        for log in sorted(trials_dir.glob("*.jsonl")) if trials_dir.exists() else []:
            rec = fold_log(log)
            if rec is None:
                continue
            for step, metrics in rec.history.items():
                if self._metric in metrics:
                    self._note(rec.trial_id, step, self._sign * float(metrics[self._metric]))

    def _note(self, trial_id: str, step: int, value: float) -> None:
        self._values.setdefault(trial_id, {})[step] = value
        if value > self._best.get(step, float("-inf")):
            self._best[step] = value
            # a new best at `step` may make trials that passed it earlier hopeless
            for other, values in self._values.items():
                if step >= self._grace and step in values and value - values[step] > self._margin:
                    self._doomed.add(other)
        elif step >= self._grace and self._best[step] - value > self._margin:
            self._doomed.add(trial_id)

    def on_trial_result(self, tune_controller, trial, result):
        if not self._loaded:
            self._load()
        if self._metric not in result:
            return TrialScheduler.CONTINUE
        t = int(result[self._time_attr])
        self._note(trial.trial_id, t, self._sign * float(result[self._metric]))
        if trial.trial_id in self._doomed:
            mark_stopped(self._study_dir, trial.trial_id, t)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def make_scheduler(study: Study, study_dir: str):
    es = study.early_stopping
    if es.type == "asha":
        return RecordingASHA(
            metric=study.metric, mode=study.mode, time_attr="training_iteration",
            max_t=es.max_t, grace_period=es.grace_period, reduction_factor=es.reduction_factor,
        )
    if es.type == "median":
        return RecordingMedian(
            metric=study.metric, mode=study.mode, time_attr="training_iteration",
            grace_period=es.grace_period, min_samples_required=es.min_samples_required,
        )
    if es.type == "margin":
        return MarginStopping(study.metric, study.mode, es.grace_period, es.margin, study_dir)
    return FIFOScheduler()
