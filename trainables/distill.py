"""PTM-guided dataset distillation as a trial: config -> core/distill/experiment.run -> report.

The stages, metric windows and metrics are the core's (see core/distill/experiment.py);
the trial reports each window with the Distiller's state as its checkpoint, and saves the
picture of the synthetic set into the trial's artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.distill.experiment import METRICS, ExperimentConfig, check, run

__all__ = ["METRICS", "Config", "check", "train"]


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Every field of core.distill.experiment.ExperimentConfig (seed, data, distill, ptm,
    references...); keys in sweep files are its dotted fields, e.g. ``distill.ptm_loss``."""


def train(cfg: Config) -> None:
    state = trial.restore()
    for step, metrics, distiller in run(cfg, stage=trial.stage, state=state and state["distiller"],
                                        artifacts=trial.artifact_dir()):
        trial.report(metrics, step=step, state={"distiller": distiller})
