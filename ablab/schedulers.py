"""Early stopping: Ray Tune's schedulers, plus a record of which trials they stopped.

Ray reports a trial stopped by a scheduler exactly like one that finished (both end
TERMINATED with done=True), but a report must tell them apart: early-stopped trials are
listed apart, never averaged in. These subclasses note the trial ids they stop early.
"""

from __future__ import annotations

from ablab.ray_api import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ablab.spec import Study

# Trials stopped early in this driver process (schedulers and callbacks both live here).
STOPPED_EARLY: set[str] = set()


class RecordingASHA(ASHAScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        # ASHA also says STOP when a trial reaches max_t: that trial finished its budget.
        if decision == TrialScheduler.STOP and result[self._time_attr] < self._max_t:
            STOPPED_EARLY.add(trial.trial_id)
        return decision


class RecordingMedian(MedianStoppingRule):
    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            STOPPED_EARLY.add(trial.trial_id)
        return decision


class MarginStopping(FIFOScheduler):
    """Stop a trial once it trails the best trial at the same step by more than `margin`.

    ASHA and the median rule stop a fixed share of trials (all but the top 1/eta, or the
    lower half): right for a hyperparameter search, wrong for an ablation table, which
    needs every seed of every reasonable variant. This rule stops only the hopeless ones.
    Written here because Ray Tune has no scheduler of this kind.
    """

    def __init__(self, metric: str, mode: str, grace_period: int, margin: float,
                 time_attr: str = "training_iteration"):
        super().__init__()
        self._metric, self._sign = metric, 1.0 if mode == "max" else -1.0
        self._grace, self._margin, self._time_attr = grace_period, margin, time_attr
        self._best: dict[int, float] = {}  # step -> best value seen at that step

    def on_trial_result(self, tune_controller, trial, result):
        if self._metric not in result:
            return TrialScheduler.CONTINUE
        t, value = int(result[self._time_attr]), self._sign * float(result[self._metric])
        self._best[t] = max(self._best.get(t, value), value)
        if t >= self._grace and self._best[t] - value > self._margin:
            STOPPED_EARLY.add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def make_scheduler(study: Study):
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
        return MarginStopping(study.metric, study.mode, es.grace_period, es.margin)
    return FIFOScheduler()
