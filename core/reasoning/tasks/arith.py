"""The procedural multi-step arithmetic word problem: every step of a model's solution is
checked exactly, so process correctness and false positives are measured with no judge.

Difficulty: ``steps``, ``digits``, ``ops`` and the number format (``reversed`` writes
every number least-significant digit first, which makes carrying local and arithmetic far
easier for small transformers).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal, Sequence

from core.reasoning.tasks.base import SPLITS, Problem, Split, extract_final_answer, split_of


@dataclass(frozen=True)
class ArithConfig:
    """The procedural multi-step arithmetic word problem."""

    steps: int = 2
    """Number of operations in the chain (= number of solution steps)."""
    digits: int = 2
    """Operands have 1..digits digits (the start value too)."""
    ops: str = "+-"
    """Allowed operations, a subset of "+-*". Subtraction never goes below zero."""
    number_format: Literal["plain", "reversed"] = "reversed"
    """How every number is written (question and solution): "reversed" = least-significant
    digit first, e.g. 123 -> "321"."""
    template: Literal["word", "symbolic"] = "word"
    """"word": a short word problem; "symbolic": "23+45-12=?"."""
    seed: int = 0
    """Seed of the problem generator; each split draws from its own stream of it."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.digits < 1:
            raise ValueError(f"steps and digits must be >= 1, got {self.steps}, {self.digits}")
        if not self.ops or set(self.ops) - set("+-*"):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {self.ops!r}")


_OP_WORDS = {"+": "gets", "-": "loses", "*": "times"}
_NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal")
_ITEMS = ("apples", "coins", "cards", "beads", "books", "shells")
_STEP_RE = re.compile(r"^\s*(\d+)\s*([+\-*])\s*(\d+)\s*=\s*(\d+)\s*$")


class ArithTask:
    """Procedural arithmetic chains, e.g. (word template, reversed numbers)::

        question: "Ann has 32 coins, gets 54, loses 21. How many?"
        solution: "32+54=86\\n86-21=65\\n#### 65"      (23+45=68, 68-12=56; answer 56)

    Step i is correct iff it is a well-formed line ``a op b = c`` whose ``a`` is the true
    running value before step i, whose ``op b`` is the problem's i-th operation, and
    whose ``c = a op b``. So a step after a mistake is wrong too (its ``a`` is off), and a
    missing step counts as a wrong step. A solution is process-correct iff it has exactly
    ``steps`` steps, all correct, and a correct final answer.
    """

    step_labels_exact = True

    def __init__(self, cfg: ArithConfig = ArithConfig()):
        self.cfg = cfg
        self.name = f"arith-s{cfg.steps}-d{cfg.digits}-{cfg.ops}-{cfg.number_format}"

    # numbers --------------------------------------------------------------------------
    def fmt(self, x: int) -> str:
        s = str(x)
        return s[::-1] if self.cfg.number_format == "reversed" else s

    def parse_number(self, s: str) -> int:
        s = s.strip()
        return int(s[::-1] if self.cfg.number_format == "reversed" else s)

    # problems -------------------------------------------------------------------------
    def _draw(self, rng: random.Random) -> tuple[int, list[tuple[str, int]]]:
        hi = 10**self.cfg.digits - 1
        value = start = rng.randint(1, hi)
        ops: list[tuple[str, int]] = []
        for _ in range(self.cfg.steps):
            op = rng.choice(self.cfg.ops)
            if op == "-" and value == 0:
                op = "+" if "+" in self.cfg.ops else op
            if op == "-":
                b = rng.randint(1, min(value, hi))
                value -= b
            elif op == "*":
                b = rng.randint(0, 9)  # one-digit multipliers keep numbers bounded
                value *= b
            else:
                b = rng.randint(1, hi)
                value += b
            ops.append((op, b))
        return start, ops

    def make_problem(self, start: int, ops: Sequence[tuple[str, int]], pid: str) -> Problem:
        f = self.fmt
        if self.cfg.template == "word":
            name = _NAMES[(start + len(ops)) % len(_NAMES)]
            item = _ITEMS[(start * 7 + sum(b for _, b in ops)) % len(_ITEMS)]
            # short on purpose: with character tokens every prompt character costs compute
            steps = "".join(f", {_OP_WORDS[op]} {f(b)}" for op, b in ops)
            question = f"{name} has {f(start)} {item}{steps}. How many?"
        else:
            question = f(start) + "".join(f"{op}{f(b)}" for op, b in ops) + "=?"
        lines, value = [], start
        for op, b in ops:
            new = _apply(value, op, b)
            lines.append(f"{f(value)}{op}{f(b)}={f(new)}")
            value = new
        lines.append(f"#### {f(value)}")
        return Problem(
            id=pid,
            question=question,
            solution="\n".join(lines),
            answer=str(value),
            meta={"start": start, "ops": [list(o) for o in ops]},
        )

    def split_of(self, start: int, ops: Sequence[tuple[str, int]]) -> str:
        """The split a problem belongs to: a hash of the problem and the seed, so splits
        never share a problem (pretrain 70%, train/val/test 10% each of the space)."""
        return split_of(f"{self.cfg.seed}:{start}:{list(ops)}")

    def _generate(self, split: str, stream: str, n: int | None):
        rng = random.Random(f"{self.cfg.seed}-{split}-{stream}")
        seen: set[tuple] = set()
        misses, i = 0, 0
        while n is None or i < n:
            start, ops = self._draw(rng)
            key = (start, tuple(ops))
            if self.split_of(start, ops) != split or (n is not None and key in seen):
                misses += 1
                if misses > 10_000:
                    raise ValueError(f"task {self.name} has too few distinct {split} problems "
                                     f"for n={n}: raise digits or steps")
                continue
            seen.add(key)
            misses = 0  # the limit is on consecutive misses
            yield self.make_problem(start, ops, f"{split}-{stream}-{i}" if stream else f"{split}-{i}")
            i += 1

    def problems(self, split: Split, n: int) -> list[Problem]:
        """``n`` distinct problems of ``split`` (deterministic given the config)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return list(self._generate(split, "", n))

    def stream(self, seed: int):
        """An endless stream of "pretrain" problems (repeats possible), for training the
        zoo without a fixed dataset."""
        return self._generate("pretrain", f"stream{seed}", None)

    # checking -------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def final_answer(self, text: str) -> str | None:
        raw = extract_final_answer(text)
        if raw is None:
            return None
        try:
            return str(self.parse_number(raw))
        except ValueError:
            return None

    def is_correct(self, problem: Problem, text: str) -> bool:
        pred = self.final_answer(text)
        return pred is not None and int(pred) == int(problem.answer)

    def step_labels(self, problem: Problem, text: str) -> list[bool]:
        """One bool per step line of ``text`` (lines before ``####``), then one False per
        missing step (see the class docstring for what a correct step is)."""
        lines = [ln for ln in text.split("####")[0].split("\n") if ln.strip()]
        value, ops = problem.meta["start"], problem.meta["ops"]
        labels = []
        for i, line in enumerate(lines):
            m = _STEP_RE.match(line)
            ok = False
            if m is not None and i < len(ops):
                a, op, b, c = m.groups()
                try:
                    a_, b_, c_ = self.parse_number(a), self.parse_number(b), self.parse_number(c)
                except ValueError:
                    a_ = b_ = c_ = None
                want_op, want_b = ops[i]
                ok = (
                    a_ == value and op == want_op and b_ == want_b and c_ == _apply(a_, op, b_)
                )
            labels.append(ok)
            if i < len(ops):
                value = _apply(value, *ops[i])
        labels += [False] * max(0, len(ops) - len(lines))
        return labels

    def process_correct(self, problem: Problem, text: str) -> bool:
        """Exactly ``steps`` correct steps and a correct final answer."""
        labels = self.step_labels(problem, text)
        return len(labels) == self.cfg.steps and all(labels) and self.is_correct(problem, text)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


