"""The platform's shared types: a trial's spec, its state, its record, a study's folders.

Kept in one small module that imports nothing else of ablab, so the modules that use
them (expansion, records, callbacks, analysis, report) do not import each other for them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "baseline"
LOCK_FILE = "run.lock"
STUDY_FILE = "study.json"


def context_label(context: dict[str, Any]) -> str:
    """A grid point as one line: `model.width=16, lr=0.1` (or `all` without a grid)."""
    return ", ".join(f"{k}={value_label(v)}" for k, v in context.items()) or "all"


def value_label(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={value_label(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs; becomes the trial's Ray config (plain JSON types only)."""

    key: str
    """Stable and unique within the study: context | variant | seed."""
    variant: str
    """The arm: `baseline` or `<part>=<replacement>`."""
    ablation: str | None
    """The ablated part, None for the baseline."""
    action: str | None
    """replace | remove (None for the baseline)."""
    context: dict[str, Any]
    """The grid point (dotted key -> value); {} without a grid."""
    seed: int
    """The trial's seed, also in `config`."""
    config: dict[str, Any]
    """The full nested trainable config, seed included."""
    tune: dict[str, Any] = field(default_factory=dict)
    """The tuned values this trial tries (dotted key -> value); {} untuned."""

    @property
    def context_label(self) -> str:
        return context_label(self.context)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "variant": self.variant,
            "ablation": self.ablation,
            "action": self.action,
            "context": self.context,
            "seed": self.seed,
            "config": self.config,
            **({"tune": self.tune} if self.tune else {}),  # untuned studies keep their old fingerprint
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialSpec:
        return cls(**{k: d[k] for k in ("key", "variant", "ablation", "action", "context", "seed", "config")},
                   tune=d.get("tune") or {})


class TrialState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # started, no end record, and no run of the study is live
    FINISHED = "finished"
    STOPPED = "stopped"  # stopped early by the scheduler
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        return self in (TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED)


@dataclass(frozen=True)
class StudyPaths:
    """A study's folder layout (see ablab.records)."""

    storage: Path
    """The folder holding every study."""
    name: str
    """The study's name, its folder's name."""

    @property
    def dir(self) -> Path:
        return self.storage / self.name

    @property
    def study_file(self) -> Path:
        return self.dir / STUDY_FILE

    @property
    def lock_file(self) -> Path:
        return self.dir / LOCK_FILE

    @property
    def sweep_file(self) -> Path:
        return self.dir / "sweep.yaml"

    @property
    def trials_dir(self) -> Path:
        return self.dir / "trials"

    @property
    def tune_dir(self) -> Path:
        return self.dir / "tune"

    @property
    def mlflow_db(self) -> Path:
        return self.dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.dir / "mlartifacts"

    @property
    def report_dir(self) -> Path:
        return self.dir / "report"

    @property
    def stages_dir(self) -> Path:
        return self.storage / "stages"

    @property
    def default_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db.resolve()}"


@dataclass
class TrialRecord:
    """Everything known about one trial, folded from its event log."""

    trial_id: str
    """Ray's trial id, the name of its event log."""
    spec: TrialSpec
    """What the trial runs."""
    state: TrialState = TrialState.PENDING
    """Where it is; `running` only while a run of the study is live."""
    history: dict[int, dict[str, float]] = field(default_factory=dict)
    """step -> metrics (a resumed trial's repeated step: the last report wins)."""
    error: str | None = None
    """Why it failed, in one line."""
    retries: int = 0
    """How often Ray restarted it after an error."""
    node: str | None = None
    """The IP Ray reported at the start."""
    nodes: set[str] = field(default_factory=set)
    """Ray node ids the trial reported from."""
    started: float = 0.0
    """When it first started (seconds since the epoch)."""

    @property
    def steps(self) -> list[int]:
        return sorted(self.history)

    def final(self, metric: str) -> float | None:
        """The last reported value of `metric`."""
        for step in reversed(self.steps):
            if metric in self.history[step]:
                return self.history[step][metric]
        return None

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        xs = [s for s in self.steps if metric in self.history[s]]
        return xs, [self.history[s][metric] for s in xs]
