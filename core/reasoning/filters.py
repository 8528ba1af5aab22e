"""Filters applied to sampled solutions before fine-tuning: ``FilterConfig.method``
(``filter.method`` in a sweep file) in {final_answer, process, orm, none}.

Every filter maps (problems, samples per problem) to keep flags per sample:

- ``final_answer`` (the baseline of Bansal et al.): keep a solution whose final answer
  equals the gold one.
- ``process``: keep a solution whose final answer is correct *and* whose PRM step scores,
  aggregated by ``min`` (every step), ``last`` (the last step) or ``product``, reach
  ``threshold``. With the exact step checker as PRM and ``min``, it keeps exactly the
  process-correct solutions. The final-answer check is part of it so that the two filters
  differ only in what process supervision adds.
- ``orm``: an outcome reward model scores each solution (it never sees the gold answer);
  keep the ``top_k`` highest per problem (``top_k > 0``) or all scores >= ``threshold``.
- ``none``: keep everything (the REMOVE ablation of the filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from core.reasoning.rewards import ORM, PRM
from core.reasoning.tasks import Problem, Task

FILTERS = ("final_answer", "process", "orm", "none")
AGGREGATIONS = ("min", "last", "product")


@dataclass(frozen=True)
class FilterConfig:
    """Which filter, and its knobs."""

    method: Literal["final_answer", "process", "orm", "none"] = "final_answer"
    """final_answer (baseline), process (PRM), orm (outcome reward model), none."""
    prm: Literal["exact", "learned"] = "exact"
    """process filter: the task's exact step checker, or a learned PRM."""
    aggregation: Literal["min", "last", "product"] = "min"
    """process filter: how step scores make one score."""
    threshold: float = 0.5
    """process filter: minimum aggregated score; orm filter: minimum score when top_k = 0."""
    top_k: int = 0
    """orm filter: keep the k best solutions per problem; 0 = use the threshold."""

    def __post_init__(self) -> None:
        if self.method not in FILTERS:
            raise ValueError(f"unknown filter {self.method!r}; allowed: {', '.join(FILTERS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; allowed: {', '.join(AGGREGATIONS)}")


def aggregate(scores: Sequence[float], how: str) -> float:
    if not scores:
        return 0.0  # a solution with no steps has nothing to vouch for it
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "product":
        return math.prod(scores)
    raise ValueError(f"unknown aggregation {how!r}; allowed: {', '.join(AGGREGATIONS)}")


def apply_filter(
    cfg: FilterConfig,
    task: Task,
    problems: Sequence[Problem],
    texts: Sequence[Sequence[str]],
    prm: PRM | None = None,
    orm: ORM | None = None,
) -> list[list[bool]]:
    """Keep flags, one list per problem, aligned with ``texts`` (samples per problem)."""
    if len(problems) != len(texts):
        raise ValueError(f"{len(problems)} problems but {len(texts)} sample lists")
    flat_p = [p for p, ts in zip(problems, texts) for _ in ts]
    flat_t = [t for ts in texts for t in ts]
    if cfg.method == "none":
        keep = [True] * len(flat_t)
    elif cfg.method == "final_answer":
        keep = [task.is_correct(p, t) for p, t in zip(flat_p, flat_t)]
    elif cfg.method == "process":
        if prm is None:
            raise ValueError("the process filter needs a PRM")
        step_scores = prm.step_scores(flat_p, flat_t)
        keep = [task.is_correct(p, t) and aggregate(s, cfg.aggregation) >= cfg.threshold
                for p, t, s in zip(flat_p, flat_t, step_scores)]
    elif cfg.method == "orm":
        if orm is None:
            raise ValueError("the orm filter needs an outcome reward model")
        scores = orm.scores(flat_p, flat_t)
        if cfg.top_k > 0:
            keep, i = [], 0
            for ts in texts:
                s = scores[i : i + len(ts)]
                best = set(sorted(range(len(ts)), key=lambda j: -s[j])[: cfg.top_k])
                keep += [j in best for j in range(len(ts))]
                i += len(ts)
        else:
            keep = [s >= cfg.threshold for s in scores]
    else:  # unreachable: FilterConfig validates
        raise ValueError(f"unknown filter {cfg.method!r}; allowed: {', '.join(FILTERS)}")
    out, i = [], 0
    for ts in texts:
        out.append(keep[i : i + len(ts)])
        i += len(ts)
    return out
