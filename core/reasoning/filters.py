"""Filters applied to sampled solutions before fine-tuning: ``FilterConfig.method``
(``filter.method`` in a sweep file) in {final_answer, process, process_oracle, calculator,
orm, none}.

Every filter maps (problems, samples per problem) to keep flags per sample:

- ``final_answer`` (the baseline of Bansal et al.): keep a solution whose final answer
  equals the gold one.
- ``process``: keep a solution whose final answer is correct *and* whose step scores from
  a *learned* process reward model (trained on step labels of problems disjoint from the
  filtered ones), aggregated by ``min`` (every step), ``last`` (the last step) or
  ``product``, reach ``threshold``. The final-answer check is part of it so that the two
  filters differ only in what process supervision adds.
- ``process_oracle``: the same with the task's exact step checker in place of the PRM.
  Its step labels are the ones that define a false positive, so its FPR is 0 by
  construction: it is an *upper bound* on what a process filter can do, not a method.
- ``calculator``: GSM8K's calculator check as the step checker (every ``<<expr=value>>``
  a kept solution writes evaluates to its value, :mod:`core.reasoning.calculator`) with a
  correct final answer. A proxy of process correctness, usable on GSM8K-format data.
- ``orm``: an outcome reward model scores each solution (it never sees the gold answer);
  keep the ``top_k`` highest per problem (``top_k > 0``) or all scores >= ``threshold``.
- ``none``: keep everything (the REMOVE ablation of the filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from core.reasoning.rewards import ORM, PRM, StepCheckerPRM
from core.reasoning.tasks import Problem, Task

Method = Literal["final_answer", "process", "process_oracle", "calculator", "orm", "none"]
Aggregation = Literal["min", "last", "product"]

AGGREGATE: dict[Aggregation, Callable[[Sequence[float]], float]] = {
    "min": min,
    "last": lambda scores: scores[-1],
    "product": math.prod,
}

# the filters that score steps with the task's own checker, not a learned model
STEP_CHECKERS: tuple[Method, ...] = ("process_oracle", "calculator")


@dataclass(frozen=True)
class FilterConfig:
    """Which filter, and its knobs."""

    method: Method = "final_answer"
    """final_answer (baseline), process (learned PRM), process_oracle (the exact step
    checker: an upper bound), calculator (GSM8K's calculator check), orm (outcome reward
    model), none."""
    aggregation: Aggregation = "min"
    """process filters: how step scores make one score."""
    threshold: float = 0.5
    """process filters: minimum aggregated score; orm filter: minimum score when top_k = 0."""
    top_k: int = 0
    """orm filter: keep the k best solutions per problem; 0 = use the threshold."""

    @property
    def learned_verifier(self) -> Literal["prm", "orm"] | None:
        """The verifier to train on the generator's samples before filtering, if any."""
        return {"orm": "orm", "process": "prm"}.get(self.method)

    @property
    def needs_step_labels(self) -> bool:
        """The step checkers score with step labels, the learned PRM is trained on them."""
        return self.method == "process" or self.method in STEP_CHECKERS


def aggregate(scores: Sequence[float], how: Aggregation) -> float:
    if not scores:
        return 0.0  # a solution with no steps has nothing to vouch for it
    return AGGREGATE[how](scores)


def apply_filter(
    cfg: FilterConfig,
    task: Task,
    problems: Sequence[Problem],
    texts: Sequence[Sequence[str]],
    verifier: PRM | ORM | None = None,
) -> list[list[bool]]:
    """Keep flags, one list per problem, aligned with ``texts`` (samples per problem).
    ``verifier`` is the learned one ``cfg.learned_verifier`` names (trained by the caller)."""
    if len(problems) != len(texts):
        raise ValueError(f"{len(problems)} problems but {len(texts)} sample lists")
    if cfg.learned_verifier and verifier is None:
        raise ValueError(f"the {cfg.method} filter needs a learned {cfg.learned_verifier}")
    flat_p = [p for p, ts in zip(problems, texts) for _ in ts]
    flat_t = [t for ts in texts for t in ts]
    if cfg.method == "none":
        keep = [True] * len(flat_t)
    elif cfg.method == "final_answer":
        keep = [task.is_correct(p, t) for p, t in zip(flat_p, flat_t)]
    elif cfg.method == "process" or cfg.method in STEP_CHECKERS:
        prm = verifier if cfg.method == "process" else StepCheckerPRM(task)
        step_scores = prm.step_scores(flat_p, flat_t)
        keep = [task.is_correct(p, t) and aggregate(s, cfg.aggregation) >= cfg.threshold
                for p, t, s in zip(flat_p, flat_t, step_scores)]
    else:  # orm
        scores = verifier.scores(flat_p, flat_t)
        if cfg.top_k > 0:
            keep, i = [], 0
            for ts in texts:
                s = scores[i : i + len(ts)]
                best = set(sorted(range(len(ts)), key=lambda j: -s[j])[: cfg.top_k])
                keep += [j in best for j in range(len(ts))]
                i += len(ts)
        else:
            keep = [s >= cfg.threshold for s in scores]
    out, i = [], 0
    for ts in texts:
        out.append(keep[i : i + len(ts)])
        i += len(ts)
    return out
