"""The one place ablab imports Ray.

Ray's public API moved several times (ray.air -> ray.train -> ray.tune); every other
module takes what it needs from here, so the next move is a one-file change.
"""

import contextlib
import os

import ray
from ray import tune
from ray.tune import (
    Callback,
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    TuneConfig,
    Tuner,
)
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search import Searcher
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

__all__ = [
    "actors_inherit_the_environment",
    "no_callback_census",
    "ray",
    "tune",
    "Callback",
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "RunConfig",
    "TuneConfig",
    "Tuner",
    "CSVLoggerCallback",
    "JsonLoggerCallback",
    "ASHAScheduler",
    "FIFOScheduler",
    "MedianStoppingRule",
    "TrialScheduler",
    "Searcher",
]


@contextlib.contextmanager
def actors_inherit_the_environment():
    """Within it, Ray Tune starts trial actors without a runtime env of their own.

    Tune gives every trial actor a runtime env: the driver's values of a few variables
    (RAY_CHDIR_TO_TRIAL_DIR, cloud credentials...) and PL_DISABLE_FORK=1. Ray cannot run an
    actor that has a runtime env in the worker processes it prestarts (one per CPU), so each
    trial actor waits for a new Python process (1-2 s before the first trial, on 2 cores)
    while the prestarted ones idle. For a Ray that ablab started itself from this process,
    every one of those variables is already in each worker's environment (the raylet
    inherits it), so the runtime env adds nothing. Ray Tune has no option for it: its two
    module-level tables are emptied for the fit, and put back. Only for a Ray started here,
    after the variables were set (a joined cluster's workers need them sent). If a Ray
    version renames the tables, nothing is changed and trials start as before."""
    try:
        from ray.tune.execution import class_cache

        defaults, propagated = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    except (ImportError, AttributeError):
        yield
        return
    if any(os.environ.get(k) != v for k, v in defaults.items()):  # not in the workers' environment
        yield
        return
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = defaults, propagated


def trial_environment() -> dict[str, str]:
    """What the trials' environment must hold, set in the driver before Ray starts (a local
    Ray's workers inherit it) and sent by Ray Tune to a joined cluster's workers."""
    from ray.tune.execution import class_cache

    return {
        # Trials keep the working directory ablab was started in (Ray's default moves them
        # into their trial folder), so relative paths in sweep files (data files, model
        # folders) mean what they mean on the command line.
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
        **getattr(class_cache, "DEFAULT_ENV_VARS", {}),  # Ray Tune's own (PL_DISABLE_FORK)
    }


@contextlib.contextmanager
def no_callback_census():
    """Within it, Ray Tune does not count the run's callbacks for its usage statistics.

    To count them by class, Ray imports every logger integration it knows (MLflow, W&B,
    Comet, Aim): over a second of imports in the driver before the first trial starts,
    done even when usage statistics are off, and then never sent. ablab turns them off
    (ablab/__init__.py), so it skips the count; if they are on, it is left alone. If a Ray
    version moves the function, nothing is changed."""
    try:
        from ray._common.usage import usage_lib
    except ImportError:
        usage_lib = None
    try:
        from ray.air._internal import usage as air_usage

        tag_callbacks = air_usage.tag_callbacks
    except (ImportError, AttributeError):
        yield
        return
    enabled = getattr(usage_lib, "usage_stats_enabled", lambda: True)
    if enabled():
        yield
        return
    air_usage.tag_callbacks = lambda callbacks: False
    try:
        yield
    finally:
        air_usage.tag_callbacks = tag_callbacks
