"""A study on disk: its folder layout and the record of every trial.

    <storage>/<study>/
        study.json        definition fingerprint, expanded trials, metric directions, MLflow parent run
        run.lock          held by the one `ablab run` of this study (pid, host)
        sweep.yaml        the sweep file as run (after --set overrides)
        trials/<id>.jsonl one append-only event log per trial (start, result, end)
        tune/             Ray Tune's experiment folder (checkpoints, restore state)
        mlflow.db         the default MLflow store (SQLite), mlartifacts/ beside it
        report/           `ablab report` output
    <storage>/stages/     shared stages, reused across studies

The event logs are the report's source of truth: appended by the driver only, they
survive a killed driver, and a resumed trial's repeated steps fold into one (last wins).
A line cut by a killed driver is skipped with a warning; a trial whose log has no end
while no run of the study is live is `interrupted`, and the next run runs it again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ablab.atomic import write_json_atomic
from ablab.errors import UserError
from ablab.types import StudyPaths, TrialRecord, TrialSpec, TrialState

__all__ = [
    "StudyPaths", "TrialRecord", "TrialSpec", "TrialState", "EventLog", "directions", "ended_record",
    "ended_trials", "fold_log", "load_records", "read_study_file", "write_json_atomic",
]

ENDED = (TrialState.FINISHED, TrialState.STOPPED)


def read_study_file(paths: StudyPaths) -> dict[str, Any]:
    """study.json, or one UserError saying it is unreadable (never a traceback)."""
    try:
        data = json.loads(paths.study_file.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
            raise ValueError("not a study record")
        specs = [TrialSpec.from_json(t) for t in data["trials"]]
    except FileNotFoundError:
        raise UserError("no study.json: not a study folder", file=str(paths.study_file)) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"unreadable study record ({type(exc).__name__})", file=str(paths.study_file),
                        hint=f"it was not written by ablab, or was damaged; delete {paths.dir} to start over") from None
    data["_specs"] = specs
    return data


def directions(paths: StudyPaths) -> dict[str, str]:
    """Metric -> "max" | "min", as the trainable declared them when the study was prepared."""
    return dict(read_study_file(paths).get("directions") or {})


class EventLog:
    """Append-only per-trial events; written by the driver alone (one writer per file)."""

    def __init__(self, paths: StudyPaths):
        self.dir = paths.trials_dir
        self.dir.mkdir(parents=True, exist_ok=True)

    def append(self, trial_id: str, event: dict[str, Any]) -> None:
        path = self.dir / f"{trial_id}.jsonl"
        line = json.dumps({**event, "t": round(time.time(), 3)}, default=str) + "\n"
        with open(path, "a+b") as f:
            # A torn last line (a driver killed mid-write) must not swallow this event.
            if f.tell() > 0:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())
            f.flush()


def load_records(paths: StudyPaths, live: bool | None = None) -> list[TrialRecord]:
    """Every trial of the study, in the order of the expanded grid; never-started ones PENDING.
    `live`: whether a run of the study is going on (default: whether its lock is held);
    without one, a started trial with no end is INTERRUPTED."""
    study = read_study_file(paths)
    if live is None:
        from ablab.lock import holder

        live = holder(paths) is not None
    runs: dict[str, list[TrialRecord]] = {}
    if paths.trials_dir.exists():
        for log in sorted(paths.trials_dir.glob("*.jsonl")):
            rec = fold_log(log)
            if rec is not None:
                runs.setdefault(rec.spec.key, []).append(rec)
    out = []
    for spec in study["_specs"]:
        rec = merge(runs[spec.key]) if spec.key in runs else TrialRecord(trial_id="", spec=spec)
        if rec.state == TrialState.RUNNING and not live:
            rec.state = TrialState.INTERRUPTED
        out.append(rec)
    return out


def merge(runs: list[TrialRecord]) -> TrialRecord:
    """One trial's record from the logs of its runs (one per driver run that ran it), in
    the order they started: steps reported again replace the earlier ones, the last run's
    state counts, except that a run that ended (finished or stopped) stays the record
    against a later one that did not."""
    runs = sorted(runs, key=lambda r: r.started)
    rec = runs[0]
    for later in runs[1:]:
        if rec.state in ENDED and later.state not in ENDED:
            continue
        rec.history.update(later.history)
        rec.retries += later.retries
        rec.nodes |= later.nodes
        rec.trial_id, rec.state, rec.error, rec.node = later.trial_id, later.state, later.error, later.node
    return rec


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
    try:
        text = log.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        print(f"warning: cannot read {log} ({exc.strerror}); the trial counts as not started", file=sys.stderr)
        return None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError
            kind = event.get("event")
            if kind == "start":
                if rec is None:
                    rec = TrialRecord(trial_id=log.stem, spec=TrialSpec.from_json(event["spec"]),
                                      started=float(event.get("t", 0.0)))
                rec.state = TrialState.RUNNING
                rec.node = event.get("node") or rec.node
            elif rec is None:
                continue
            elif kind == "result":
                rec.history[int(event["step"])] = {k: float(v) for k, v in event["metrics"].items()}
                rec.nodes.add(event.get("node") or "")
            elif kind == "retry":
                rec.retries += 1
                rec.state = TrialState.RUNNING
            elif kind == "end":
                rec.state = TrialState(event["state"])
                rec.error = event.get("error")
        except (ValueError, TypeError, KeyError, AttributeError):
            # a line cut by a killed driver, or damaged by hand: the rest still counts
            print(f"warning: skipped an unreadable line {n} of {log}", file=sys.stderr)
    return rec
