"""A study on disk: its folder layout and the record of every trial.

    <storage>/<study>/
        study.json        definition fingerprint, expanded trials, MLflow parent run
        sweep.yaml        the sweep file as run (after --set overrides)
        trials/<id>.jsonl one append-only event log per trial (start, result, end)
        tune/             Ray Tune's experiment folder (checkpoints, restore state)
        mlflow.db         the default MLflow store (SQLite), mlartifacts/ beside it
        report/           `ablab report` output
    <storage>/stages/     shared stages, reused across studies

The event logs are the report's source of truth: appended by the driver only, they
survive a killed driver, and a resumed trial's repeated steps fold into one (last wins).
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablab.expand import TrialSpec


class TrialState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # stopped early by the scheduler
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        return self in (TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED)


@dataclass(frozen=True)
class StudyPaths:
    storage: Path
    name: str

    @property
    def dir(self) -> Path:
        return self.storage / self.name

    @property
    def study_file(self) -> Path:
        return self.dir / "study.json"

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


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_study_file(paths: StudyPaths) -> dict[str, Any]:
    return json.loads(paths.study_file.read_text())


@dataclass
class TrialRecord:
    """Everything known about one trial, folded from its event log."""

    trial_id: str
    spec: TrialSpec
    state: TrialState = TrialState.PENDING
    history: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> metrics
    error: str | None = None
    retries: int = 0
    node: str | None = None  # the IP Ray reported at the start
    nodes: set[str] = field(default_factory=set)  # Ray node ids the trial reported from

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


class EventLog:
    """Append-only per-trial events; written by the driver alone (one writer per file)."""

    def __init__(self, paths: StudyPaths):
        self.dir = paths.trials_dir
        self.dir.mkdir(parents=True, exist_ok=True)

    def append(self, trial_id: str, event: dict[str, Any]) -> None:
        with open(self.dir / f"{trial_id}.jsonl", "a") as f:
            f.write(json.dumps({**event, "t": round(time.time(), 3)}, default=str) + "\n")
            f.flush()


def load_records(paths: StudyPaths) -> list[TrialRecord]:
    """Every trial of the study, in the order of the expanded grid; never-started ones PENDING."""
    study = read_study_file(paths)
    specs = [TrialSpec.from_json(t) for t in study["trials"]]
    by_key: dict[str, TrialRecord] = {}
    if paths.trials_dir.exists():
        for log in sorted(paths.trials_dir.glob("*.jsonl")):
            rec = fold_log(log)
            # A trial asked for again after a driver crash (adaptive seeds) has a second log
            # under a new trial id; the one that ended is the trial's record.
            if rec is not None and not (rec.spec.key in by_key and by_key[rec.spec.key].state.is_done):
                by_key[rec.spec.key] = rec
    return [by_key.get(s.key) or TrialRecord(trial_id="", spec=s) for s in specs]


ENDED = (TrialState.FINISHED, TrialState.STOPPED)


def ended_record(log: Path) -> TrialRecord | None:
    """The trial's record when its log says it ended (finished, or stopped early), else
    None. An errored trial has not ended: a continued study retries it."""
    rec = fold_log(log) if log.exists() else None
    return rec if rec is not None and rec.state in ENDED else None


def ended_trials(paths: StudyPaths) -> dict[str, TrialRecord]:
    """Trials that ended in an earlier run of the study, by trial id. Ray may restore them
    as unfinished (its snapshot can predate their end); ablab never runs or logs them again."""
    return {rec.trial_id: rec for log in paths.trials_dir.glob("*.jsonl") if (rec := ended_record(log))}


def fold_log(log: Path) -> TrialRecord | None:
    rec: TrialRecord | None = None
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a killed driver
            continue
        kind = event.get("event")
        if kind == "start":
            if rec is None:
                rec = TrialRecord(trial_id=log.stem, spec=TrialSpec.from_json(event["spec"]))
            rec.state = TrialState.RUNNING
            rec.node = event.get("node") or rec.node
        elif rec is None:
            continue
        elif kind == "result":
            rec.history[int(event["step"])] = event["metrics"]
            rec.nodes.add(event.get("node") or "")
        elif kind == "retry":
            rec.retries += 1
            rec.state = TrialState.RUNNING
        elif kind == "end":
            rec.state = TrialState(event["state"])
            rec.error = event.get("error")
    return rec
