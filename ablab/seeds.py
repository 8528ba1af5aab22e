"""Adaptive seeds: a Ray Tune Searcher that adds seeds only where a verdict is still open.

`seeds: {min, max}` runs `min` seeds of every arm (all tuned values of each), then in
rounds: once every trial asked for has ended, the analysis (ablab.analysis, the same one
the report uses) gives each arm its verdict, and every arm still inconclusive gets one
more seed, as does the baseline it is compared with, until no arm is open or an arm
reaches `max`. The error rate under this optional stopping is the business of
ablab.stats (alpha spent over looks); this module only schedules.

Results are read from the study's event logs, the record the driver appends at once, so
a searcher restored from a snapshot older than the last events still sees every ended
trial, and never asks again for a trial that already ended. Being a Searcher, it runs
wherever Tune runs (a cluster's driver) and is saved and restored with the experiment.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ablab.analysis import SEEDS_FILE, analyse
from ablab.expand import BASELINE, context_label
from ablab.ray_api import Searcher
from ablab.records import StudyPaths, load_records, write_json_atomic
from ablab.spec import Study

OPEN = ("inconclusive", "n<2")  # verdicts that more seeds can settle


class AdaptiveSeeds(Searcher):
    """Suggests the study's trials round by round (see the module's docstring)."""

    def __init__(self, study: dict[str, Any], entries: list[dict[str, Any]], storage: str):
        super().__init__()
        self.study_json = study  # the Study as JSON: a Searcher is pickled with the experiment
        self.entries = {e["key"]: e for e in entries}  # every possible trial's Ray config (seeds up to max)
        self.storage = storage
        self.queue: list[str] = []  # keys of the current round not yet suggested
        self.asked: list[str] = []  # keys suggested (or found ended) so far
        self.rounds: list[dict[str, Any]] = []
        self.finished = False

    # ------------------------------------------------------------------ Tune's side
    def suggest(self, trial_id: str) -> dict | None:
        if self.finished:
            return Searcher.FINISHED
        ended = self._ended_keys()
        while True:
            while self.queue:
                key = self.queue.pop(0)
                self.asked.append(key)
                if key not in ended:  # ended in an earlier driver: never run twice
                    return {"ablab": self.entries[key]}
            if any(k not in ended for k in self.asked):
                return None  # wait for this round to end
            if not self._next_round():
                self.finished = True
                self._write_log()
                return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the event logs hold the results (see the module's docstring)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"queue": self.queue, "asked": self.asked, "rounds": self.rounds,
                         "finished": self.finished}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.queue, self.asked, self.rounds, self.finished = (
            state["queue"], state["asked"], state["rounds"], state["finished"])

    # ------------------------------------------------------------------ the rounds
    @property
    def _paths(self) -> StudyPaths:
        return StudyPaths(Path(self.storage), self.study_json["name"])

    @property
    def _study(self) -> Study:
        return Study.model_validate(self.study_json)

    def _ended_keys(self) -> set[str]:
        paths = self._paths
        if not paths.study_file.exists():
            return set()
        return {r.spec.key for r in load_records(paths) if r.state.is_done}

    def _next_round(self) -> bool:
        """Queue the next round's trials; False when nothing is left to run."""
        study = self._study
        low, high = study.adaptive_seeds
        if not self.asked:  # the first round: min seeds of every arm
            self.queue = [k for k, e in self.entries.items() if e["seed"] < low]
            self.rounds.append({"seeds": low, "arms": "all"})
            self._write_log()
            return bool(self.queue)
        asked = set(self.asked)
        records = [r for r in load_records(self._paths) if r.spec.key in asked]
        report = analyse(study, records)
        seeds_of: dict[tuple[str, str], int] = {}
        for r in records:
            arm = (context_label(r.spec.context), r.spec.variant)
            seeds_of[arm] = max(seeds_of.get(arm, 0), r.spec.seed + 1)
        open_arms = {(row.context, row.variant) for row in report.rows
                     if row.variant != BASELINE and row.verdict in OPEN and seeds_of[(row.context, row.variant)] < high}
        if not open_arms:
            return False
        target = {arm: seeds_of[arm] + 1 for arm in open_arms}
        for ctx in {c for c, _ in open_arms}:  # the baseline keeps pace with its most-seeded open arm
            target[(ctx, BASELINE)] = max(n for (c, _), n in target.items() if c == ctx)
        added = {}
        for (ctx, variant), upto in target.items():
            keys = [k for k, e in self.entries.items()
                    if e["variant"] == variant and context_label(e["context"]) == ctx
                    and e["seed"] < upto and k not in asked]
            self.queue += keys
            if keys:
                added[f"{ctx} | {variant}"] = sorted({self.entries[k]["seed"] for k in keys})
        self.rounds.append({"added": added,
                            "open": sorted(f"{c} | {v}" for c, v in open_arms)})
        self._write_log()
        return bool(self.queue)

    def _write_log(self) -> None:
        write_json_atomic(self._paths.dir / SEEDS_FILE, {
            "finished": self.finished, "rounds": self.rounds, "asked": self.asked,
        })

