"""One live progress table instead of Ray's per-trial banners.

On a terminal: a rich table redrawn in place (one row per variant and grid point: the
step each running trial is at, trials finished/stopped/failed, the metric's mean over the finished trials,
the same trials the report averages, and the stopped ones' last values apart) under a
summary line with an ETA. Elsewhere (CI logs, `ray job submit`): one line per trial that
ends, and a summary line every 30 s.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ablab.callbacks import error_of, labelled_spec, metrics_of, outcome, spec_of
from ablab.console import duration
from ablab.expand import context_label
from ablab.ray_api import Callback
from ablab.tracking import run_name
from ablab.trial import STEP_KEY


def eta_seconds(elapsed: float, done: float, remaining: float) -> float | None:
    """Time left at the rate of this run so far (`done` and `remaining` in trials; a running
    trial counts by the share of its steps it has done)."""
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed * remaining / done


class ProgressCallback(Callback):
    def __init__(self, name: str, metric: str, mode: str, total: int, live: bool | None = None,
                 storage: str | None = None):
        self.storage = storage
        self.name = name
        self.metric = metric
        self.mode = mode
        self.total = total
        self.live = live
        self._rt: dict[str, Any] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rt"] = {}
        return state

    # -------------------------------------------------------------- state
    def setup(self, **info):
        from rich.console import Console

        console = Console(stderr=False)
        live = self.live if self.live is not None else console.is_terminal
        self._rt.update(
            console=console, start=time.time(), state={}, last={}, rows={}, step={},
            earlier=set(), last_line=0.0, live=None,
        )
        self._seed_from_earlier_runs()
        if live:
            from rich.live import Live

            self._rt["live"] = Live(self._table(), console=console, refresh_per_second=2, transient=False)
            self._rt["live"].start()

    def _seed_from_earlier_runs(self) -> None:
        """A continued study shows the trials that ended before, too."""
        if not self.storage:
            return
        from pathlib import Path

        from ablab.records import StudyPaths, ended_trials

        for rec in ended_trials(StudyPaths(Path(self.storage), self.name)).values():
            self._rt["state"][rec.trial_id] = rec.state.value
            self._rt["rows"][rec.trial_id] = (context_label(rec.spec.context), rec.spec.variant)
            self._rt["step"][rec.trial_id] = rec.steps[-1] if rec.steps else 0
            self._rt["earlier"].add(rec.trial_id)
            value = rec.final(self.metric)
            if value is not None:
                self._rt["last"][rec.trial_id] = value

    def _set(self, trial, state: str) -> None:
        if self._rt["state"].get(trial.trial_id) in ("finished", "stopped") and state == "running":
            return  # ended in an earlier run; Ray restored it as unfinished (see ablab.trial)
        spec = spec_of(trial)
        self._rt["state"][trial.trial_id] = state
        self._rt["rows"][trial.trial_id] = (context_label(spec["context"]), spec["variant"])

    def on_trial_start(self, iteration, trials, trial, **info):
        self._set(trial, "running")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = metrics_of(result).get(self.metric)
        if value is not None:
            self._rt["last"][trial.trial_id] = value
        step = result.get(STEP_KEY, result.get("training_iteration"))
        if step is not None:
            self._rt["step"][trial.trial_id] = int(step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._rt["state"].get(trial.trial_id) in ("finished", "stopped"):
            return
        state = outcome(trial).value
        self._set(trial, state)
        self._line(f"{state:8s} {run_name(labelled_spec(trial))}  {self.metric}={self._fmt(self._rt['last'].get(trial.trial_id))}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._set(trial, "failed")
        self._line(f"failed   {run_name(labelled_spec(trial))}  {error_of(trial)}")

    def on_step_end(self, iteration, trials, **info):
        live = self._rt.get("live")
        if live is not None:
            live.update(self._table())
        elif time.time() - self._rt.get("last_line", 0) > 30:
            self._rt["last_line"] = time.time()
            self._rt["console"].print(self._summary(), highlight=False, markup=False, soft_wrap=True)

    def on_experiment_end(self, trials, **info):
        live = self._rt.get("live")
        if live is not None:
            live.update(self._table())
            live.stop()
        else:
            self._rt["console"].print(self._summary(), highlight=False, markup=False, soft_wrap=True)

    # -------------------------------------------------------------- rendering
    def _line(self, text: str) -> None:
        if self._rt.get("live") is None:
            self._rt["console"].print(text, highlight=False, markup=False, soft_wrap=True)

    @staticmethod
    def _fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for s in self._rt["state"].values():
            counts[s] += 1
        return counts

    def _best(self) -> tuple[str, float] | None:
        last = self._rt["last"]
        if not last:
            return None
        pick = max if self.mode == "max" else min
        tid = pick(last, key=last.get)
        ctx, variant = self._rt["rows"][tid]
        return (variant if ctx == "all" else f"{ctx}, {variant}"), last[tid]

    def _expected_steps(self) -> int | None:
        """Steps of a whole trial: what the finished trials reached (unknown before the first)."""
        finished = [self._rt["step"].get(t, 0) for t, st in self._rt["state"].items() if st == "finished"]
        return max(finished) if finished else None

    def _eta(self) -> float | None:
        expected = self._expected_steps()
        states, steps, earlier = self._rt["state"], self._rt["step"], self._rt["earlier"]
        ended = [t for t, st in states.items() if st in ("finished", "stopped", "failed")]
        running = [t for t, st in states.items() if st == "running"]
        partial = sum(min(steps.get(t, 0) / expected, 1.0) for t in running) if expected else 0.0
        done_now = len([t for t in ended if t not in earlier]) + partial
        remaining = max(self.total - len(ended) - partial, 0.0)
        return eta_seconds(time.time() - self._rt["start"], done_now, remaining)

    def _summary(self) -> str:
        c = self._counts()
        done = c["finished"] + c["stopped"] + c["failed"]
        pending = max(self.total - done - c["running"], 0)
        best = self._best()
        best_text = f"best {self.metric}={best[1]:.4g} ({best[0]})" if best else "best -"
        elapsed = time.time() - self._rt["start"]
        eta = "" if done == self.total else f", ETA {duration(self._eta())}"
        return (
            f"[{self.name}] {done}/{self.total} done: {c['finished']} finished, {c['stopped']} stopped early, "
            f"{c['failed']} failed; {c['running']} running, {pending} pending; {best_text}; "
            f"{duration(elapsed)} elapsed{eta}"
        )

    def _table(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for tid, row in self._rt["rows"].items():
            groups[row].append(tid)
        with_context = any(ctx != "all" for ctx, _ in groups)
        expected = self._expected_steps()
        table = Table(expand=False)
        columns = (["context"] if with_context else []) + [
            "variant", "running, at step", "finished", "stopped", "failed",
            f"{self.metric} (finished, mean)", "stopped (last value)"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("context", "variant") else "right")
        of = f"/{expected}" if expected else ""
        for (ctx, variant), tids in sorted(groups.items()):
            states = {t: self._rt["state"][t] for t in tids}
            last = self._rt["last"]
            finished = [last[t] for t, s in states.items() if s == "finished" and t in last]
            stopped = [last[t] for t, s in states.items() if s == "stopped" and t in last]
            running = [f"{self._rt['step'].get(t, 0)}{of}" for t, s in states.items() if s == "running"]
            table.add_row(
                *([ctx] if with_context else []), variant, ", ".join(running),
                *(str(list(states.values()).count(s)) for s in ("finished", "stopped", "failed")),
                self._fmt(sum(finished) / len(finished) if finished else None),
                ", ".join(self._fmt(v) for v in stopped),
            )
        return Group(Text(self._summary()), table)
