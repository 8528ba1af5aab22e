"""ablab: ablation studies as Ray Tune trials, tracked in MLflow, reported with error bars."""

__version__ = "0.1.0"
