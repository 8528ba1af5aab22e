"""ablab: ablation studies as Ray Tune trials, tracked in MLflow, reported with error bars."""

import os as _os

# ablab runs on machines without internet and never phones home: MLflow's and Ray's usage
# reporting are off unless the user turns them on. (MLflow's telemetry thread also rewrote
# os.environ while requests iterated it: a KeyError in the middle of a study.)
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

__version__ = "0.1.0"
