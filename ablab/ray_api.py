"""The one place ablab imports Ray.

Ray's public API moved several times (ray.air -> ray.train -> ray.tune); every other
module takes what it needs from here, so the next move is a one-file change.
"""

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
