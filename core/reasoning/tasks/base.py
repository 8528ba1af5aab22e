"""What every reasoning task shares: problems, the :class:`Task` interface, final answers.

A solution text always ends with a final line ``#### <answer>`` (the GSM8K convention);
:func:`extract_final_answer` reads it (falling back to the last number in the text), and
:func:`answers_match` compares final answers numerically, then with math-verify (so
``1/2`` equals ``0.5`` and ``\\frac{1}{2}``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from math_verify import parse, verify

Split = Literal["pretrain", "train", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)


@dataclass(frozen=True)
class Problem:
    """One problem: what the model sees, the gold solution and the gold final answer."""

    id: str
    question: str
    solution: str  # gold step-by-step solution, last line "#### <answer>"
    answer: str  # gold final answer, canonical form (e.g. "56", never digit-reversed)
    meta: dict = field(default_factory=dict, compare=False, hash=False)


class Task(Protocol):
    """What the pipeline needs from a task.

    ``step_labels`` returns one bool per step of ``text`` when the task can check steps,
    else None; ``step_labels_exact`` says whether those labels are exact (the procedural
    task) or a proxy (GSM8K's calculator check).
    """

    name: str
    step_labels_exact: bool

    def problems(self, split: Split, n: int) -> list[Problem]: ...
    def prompt(self, problem: Problem) -> str: ...
    def is_correct(self, problem: Problem, text: str) -> bool: ...
    def final_answer(self, text: str) -> str | None: ...
    def step_labels(self, problem: Problem, text: str) -> list[bool] | None: ...


def split_of(key: str) -> Split:
    """The split of the problem whose content is ``key``: a hash of it (pretrain 70%,
    train, val and test 10% each), so the same problem never lands in two splits however
    often a generator draws it."""
    u = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") / 2**32
    return "pretrain" if u < 0.7 else "train" if u < 0.8 else "val" if u < 0.9 else "test"


# --------------------------------------------------------------------------------------
# Final answers


_FINAL_RE = re.compile(r"####\s*(.+)")
_NUMBER_RE = re.compile(r"-?[\d,]*\.?\d+")


def extract_final_answer(text: str) -> str | None:
    """The text after the last ``####`` (GSM8K), else the last number in the text, else None.

    GSM8K conventions: thousands separators, ``$`` and a trailing full stop are dropped.
    """
    found = _FINAL_RE.findall(text)
    if found:
        ans = found[-1].strip()
    else:
        nums = _NUMBER_RE.findall(text)
        if not nums:
            return None
        ans = nums[-1]
    ans = ans.replace(",", "").replace("$", "").strip().rstrip(".").strip()
    return ans or None


def _to_number(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def answers_match(pred: str | None, gold: str) -> bool:
    """Whether a predicted final answer equals the gold one: numerically when both are
    numbers, else with math-verify (``parse`` + ``verify``), else as exact strings."""
    if pred is None:
        return False
    p, g = _to_number(pred), _to_number(gold)
    if p is not None and g is not None:  # the common case, and it needs no parser
        return p == g
    try:
        return bool(verify(parse(gold), parse(pred)))
    except Exception:  # math-verify raises on text it cannot parse: not a match
        return pred.strip() == gold.strip()
