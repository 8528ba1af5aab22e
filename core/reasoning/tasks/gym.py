"""A reasoning-gym dataset by name, answers scored by its own scorer."""

from __future__ import annotations

import re

import reasoning_gym

from core.reasoning.tasks.base import (SPLITS, Problem, Split, answers_match,
                                       extract_final_answer, split_of)

# reasoning-gym generates item i from Random(seed + i) on access: the virtual size costs nothing
_STREAM_SIZE = 2**31 - 1
_MAX_MISSES = 10_000


class ReasoningGymTask:
    """A reasoning-gym dataset by name (e.g. "basic_arithmetic", "chain_sum"), scored by
    reasoning-gym's own ``score_answer`` on the text after ``####``.

    All splits come from one stream of the dataset (``seed``), each item going to the
    split a hash of its question picks (:func:`~core.reasoning.tasks.base.split_of`): two
    streams of different seeds would share most items, as item i of seed s is item i-1
    of seed s+1. A problem's id holds its index in the stream.

    reasoning-gym has no gold step-by-step solutions: ``solution`` is ``#### <answer>``.
    """

    step_labels_exact = False

    def __init__(self, dataset: str, seed: int = 0, **dataset_kwargs):
        self.dataset, self.seed, self.kwargs = dataset, seed, dataset_kwargs
        self.name = f"rg-{dataset}"
        self._ds = reasoning_gym.create_dataset(dataset, size=_STREAM_SIZE, seed=seed, **dataset_kwargs)

    def problems(self, split: Split, n: int) -> list[Problem]:
        """The first ``n`` distinct problems of ``split`` in the stream."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        out, seen, misses, i = [], set(), 0, 0
        while len(out) < n:
            entry = self._ds[i]
            if split_of(entry["question"]) == split and entry["question"] not in seen:
                seen.add(entry["question"])
                ans = str(entry["answer"])
                out.append(Problem(id=f"{self.name}-{split}-{i}", question=entry["question"],
                                   solution=f"#### {ans}", answer=ans))
                misses = 0
            else:
                misses += 1
                if misses > _MAX_MISSES:
                    raise ValueError(f"{self.name} has too few distinct {split} problems for n={n}")
            i += 1
        return out

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nEnd with a line '#### <answer>'.\nAnswer:"

    def final_answer(self, text: str) -> str | None:
        return extract_final_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        pred = self.final_answer(text)
        if pred is None:
            return False
        entry = self._entry(problem)
        if entry is None:  # not one of this dataset's problems: compare answers
            return answers_match(pred, problem.answer)
        return float(self._ds.score_answer(pred, entry)) >= 1.0

    def _entry(self, problem: Problem) -> dict | None:
        """The dataset entry of ``problem`` (rebuilt from the stream index in its id, so
        samples loaded from the stage cache by another trial are scored alike)."""
        m = re.fullmatch(rf"{re.escape(self.name)}-(\w+)-(\d+)", problem.id)
        if m is None or m.group(1) not in SPLITS:
            return None
        entry = self._ds[int(m.group(2))]
        return entry if entry["question"] == problem.question else None

    def step_labels(self, problem: Problem, text: str) -> None:
        return None
