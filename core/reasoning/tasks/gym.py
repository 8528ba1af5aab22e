"""A reasoning-gym dataset by name, answers scored by its own scorer."""

from __future__ import annotations

import re

import reasoning_gym

from core.reasoning.tasks.base import SPLITS, Problem, Split, answers_match, extract_final_answer


class ReasoningGymTask:
    """A reasoning-gym dataset by name (e.g. "basic_arithmetic", "chain_sum"), scored by
    reasoning-gym's own ``score_answer`` on the text after ``####``.

    reasoning-gym has no gold step-by-step solutions: ``solution`` is ``#### <answer>``.
    """

    def __init__(self, dataset: str, seed: int = 0, **dataset_kwargs):
        self._rg = reasoning_gym
        self.dataset, self.seed, self.kwargs = dataset, seed, dataset_kwargs
        self.name = f"rg-{dataset}"
        self._entries: dict[str, dict] = {}
        self._scorers: dict[str, object] = {}

    def problems(self, split: Split, n: int) -> list[Problem]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        seed = self.seed * 10 + SPLITS.index(split)  # one stream per split
        ds = self._rg.create_dataset(self.dataset, size=n, seed=seed, **self.kwargs)
        out = []
        for i, entry in enumerate(ds):
            pid = f"{self.name}-{split}-{i}"
            self._entries[pid], self._scorers[pid] = entry, ds
            ans = str(entry["answer"])
            out.append(Problem(id=pid, question=entry["question"], solution=f"#### {ans}",
                               answer=ans))
        return out

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nEnd with a line '#### <answer>'.\nAnswer:"

    def final_answer(self, text: str) -> str | None:
        return extract_final_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        pred = self.final_answer(text)
        if pred is None:
            return False
        found = self._entry(problem)
        if found is None:  # not one of this dataset's problems: compare answers
            return answers_match(pred, problem.answer)
        entry, ds = found
        return float(ds.score_answer(pred, entry)) >= 1.0

    def _entry(self, problem: Problem):
        """The dataset entry and its scorer. A problem made by another instance (samples
        loaded from the stage cache by another trial) is rebuilt from its id: item i of a
        reasoning-gym dataset depends on the seed and i only, not on the dataset's size."""
        if problem.id not in self._entries:
            m = re.fullmatch(rf"{re.escape(self.name)}-(\w+)-(\d+)", problem.id)
            if m is None or m.group(1) not in SPLITS:
                return None
            i = int(m.group(2))
            ds = self._rg.create_dataset(self.dataset, size=i + 1, seed=self.seed * 10 + SPLITS.index(m.group(1)),
                                         **self.kwargs)
            self._entries[problem.id], self._scorers[problem.id] = ds[i], ds
        return self._entries[problem.id], self._scorers[problem.id]

    def step_labels(self, problem: Problem, text: str) -> None:
        return None

