"""Metrics of sample sets, filters and fine-tuned students.

Definitions (``k`` counts the first k samples of each problem, in sampling order):

- **coverage@k**: share of problems with at least one sample whose final answer is correct.
- **diversity@k**: mean over problems (all problems, a problem with no correct sample
  counts 0) of the number of *unique correct solutions* among its first k samples. A
  solution is correct when its final answer is; two solutions are the same when their
  normalised reasoning texts are equal, where normalising (:func:`normalise_reasoning`)
  drops the final ``#### answer`` line, lower-cases, and collapses every run of whitespace
  to one space. (On the procedural task every fully correct chain is the same text, so
  diversity there counts the distinct *ways of reaching* the right answer, including
  wrong-step ones; it is 1 for a problem solved only by correct chains.)
- **diversity_valid@k**: the same count over *valid* solutions only: process-correct ones
  where the task has step labels, final-answer-correct ones where it has none. On the
  procedural task every valid chain is one text, so it is at most 1 there, and
  diversity@k - diversity_valid@k counts distinct false positives.
- **false positive rate (FPR)**: among samples with a correct final answer, the share with
  at least one wrong step (by the task's step labels: exact on the procedural task, the
  calculator proxy on GSM8K; undefined, NaN, without labels or without any correct sample).
- **filter precision / recall** against the step labels: a sample is *positive* when
  it is process-correct (final answer correct and every step correct); precision = share
  of kept samples that are positive, recall = share of positive samples that were kept
  (NaN where undefined, and when some sample has no step labels).
- **pass@1**: share of problems whose (greedy, or first) sample is correct; the sampled
  version averages the per-problem share of correct samples (the unbiased pass@1 estimator
  of Chen et al. 2021 for n samples).
- **maj@k**: share of problems where the most frequent final answer among the first k
  samples is correct (ties go to the answer seen first; samples with no answer do not vote).

Metric keys spell "@" as "_at_" (``data/coverage_at_4``, ``test/maj_at_8``,
``val/pass_at_1``): MLflow refuses "@" in metric names.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Judged:
    """A sample with its exact judgement against the problem's gold answer."""

    problem_id: str
    text: str
    answer: str | None  # extracted final answer (canonical form) or None
    correct: bool  # final answer correct
    step_labels: tuple[bool, ...] | None = None  # exact per-step labels, None if unknown

    @property
    def process_correct(self) -> bool | None:
        if self.step_labels is None:
            return None
        return self.correct and all(self.step_labels)

    @property
    def valid(self) -> bool:
        """Process-correct where step labels exist, else final-answer correct."""
        return self.correct if self.step_labels is None else bool(self.process_correct)

    @property
    def false_positive(self) -> bool | None:
        if self.step_labels is None:
            return None
        return self.correct and not all(self.step_labels)


Groups = Sequence[Sequence[Judged]]  # one list of samples per problem


def judge(task, problem, texts: Sequence[str]) -> list[Judged]:
    """Judge each text of one problem with the task's exact checkers."""
    out = []
    for t in texts:
        labels = task.step_labels(problem, t)
        out.append(Judged(problem.id, t, task.final_answer(t), task.is_correct(problem, t),
                          None if labels is None else tuple(labels)))
    return out


_FINAL_LINE_RE = re.compile(r"####.*")


def normalise_reasoning(text: str) -> str:
    """Reasoning text without the final-answer line, lower-cased, whitespace collapsed."""
    return " ".join(_FINAL_LINE_RE.sub("", text).lower().split())


def coverage_at_k(groups: Groups, k: int) -> float:
    if not groups:
        return float("nan")
    return sum(any(s.correct for s in g[:k]) for g in groups) / len(groups)


def diversity_at_k(groups: Groups, k: int, valid_only: bool = False) -> float:
    """Mean unique correct (``valid_only``: valid) solutions among each problem's first k."""
    if not groups:
        return float("nan")
    keep = (lambda s: s.valid) if valid_only else (lambda s: s.correct)
    return sum(len({normalise_reasoning(s.text) for s in g[:k] if keep(s)}) for g in groups) / len(groups)


def false_positive_rate(samples: Sequence[Judged]) -> float:
    correct = [s for s in samples if s.correct and s.step_labels is not None]
    if not correct:
        return float("nan")
    return sum(bool(s.false_positive) for s in correct) / len(correct)


def precision_recall(samples: Sequence[Judged], kept: Sequence[bool]) -> tuple[float, float]:
    """Filter precision and recall against exact process labels (NaN where undefined)."""
    if len(samples) != len(kept):
        raise ValueError(f"{len(samples)} samples but {len(kept)} keep flags")
    if any(s.step_labels is None for s in samples):
        return float("nan"), float("nan")
    pos = [bool(s.process_correct) for s in samples]
    tp = sum(p and k for p, k in zip(pos, kept))
    n_kept, n_pos = sum(kept), sum(pos)
    return (tp / n_kept if n_kept else float("nan"), tp / n_pos if n_pos else float("nan"))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_1(groups: Groups) -> float:
    """Mean over problems of the share of correct samples (= greedy pass@1 for n=1)."""
    if not groups:
        return float("nan")
    return sum(sum(s.correct for s in g) / len(g) for g in groups) / len(groups)


def majority_answer(answers: Sequence[str | None]) -> str | None:
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == top)  # first seen wins ties


def maj_at_k(groups: Groups, golds: Sequence[str], k: int,
             match: Callable[[str | None, str], bool] | None = None) -> float:
    """maj@k; ``match(pred, gold)`` compares answers (default: math-verify/numeric)."""
    if match is None:
        from core.reasoning.tasks import answers_match as match
    if not groups:
        return float("nan")
    return sum(match(majority_answer([s.answer for s in g[:k]]), gold)
               for g, gold in zip(groups, golds)) / len(groups)


def sample_set_metrics(groups: Groups, ks: Sequence[int], prefix: str = "data") -> dict[str, float]:
    """coverage@k, diversity@k and diversity_valid@k for each k, FPR and size of a sample
    set, namespaced."""
    flat = [s for g in groups for s in g]
    out: dict[str, float] = {}
    for k in ks:
        out[f"{prefix}/coverage_at_{k}"] = coverage_at_k(groups, k)
        out[f"{prefix}/diversity_at_{k}"] = diversity_at_k(groups, k)
        out[f"{prefix}/diversity_valid_at_{k}"] = diversity_at_k(groups, k, valid_only=True)
    out[f"{prefix}/fpr"] = false_positive_rate(flat)
    out[f"{prefix}/samples"] = float(len(flat))
    out[f"{prefix}/correct"] = float(sum(s.correct for s in flat))
    return out


def filter_metrics(groups: Groups, kept: Sequence[Sequence[bool]], prefix: str = "filter") -> dict[str, float]:
    """Kept-set size, coverage, diversity (raw and valid) and FPR of the kept set,
    precision and recall."""
    flat = [s for g in groups for s in g]
    flat_kept = [k for ks in kept for k in ks]
    kept_groups = [[s for s, k in zip(g, ks) if k] for g, ks in zip(groups, kept)]
    kept_flat = [s for g in kept_groups for s in g]
    precision, recall = precision_recall(flat, flat_kept)
    return {
        f"{prefix}/kept": float(len(kept_flat)),
        f"{prefix}/kept_frac": len(kept_flat) / len(flat) if flat else float("nan"),
        f"{prefix}/coverage": coverage_at_k(kept_groups, max((len(g) for g in groups), default=0)),
        f"{prefix}/diversity": diversity_at_k(kept_groups, max((len(g) for g in groups), default=0)),
        f"{prefix}/diversity_valid": diversity_at_k(kept_groups, max((len(g) for g in groups), default=0),
                                                    valid_only=True),
        f"{prefix}/fpr": false_positive_rate(kept_flat),
        f"{prefix}/precision": precision,
        f"{prefix}/recall": recall,
    }


def with_counts(metrics: dict[str, float], n: int, proportions: Sequence[str]) -> dict[str, float]:
    """``metrics`` and, beside each proportion ``m`` of ``proportions`` that it holds,
    ``m:n`` = the number of examples (problems, samples) ``m`` was computed over, so that
    successes = m x n and the statistics can tell evaluation noise from seed noise."""
    return metrics | {f"{m}:n": float(n) for m in proportions if m in metrics}
