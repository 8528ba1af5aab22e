"""Reasoning tasks: problems with gold solutions, final-answer checks and (where exact) step checks.

Three sources, one interface (:class:`Task`):

- :class:`ArithTask`, the procedural multi-step arithmetic word problem. Every step of a
  model's solution is checked exactly, so process correctness and false positives are
  measured with no judge. Difficulty: ``steps``, ``digits``, ``ops`` and the number format
  (``reversed`` writes every number least-significant digit first, which makes carrying
  local and arithmetic far easier for small transformers).
- :class:`GSM8KTask`, GSM8K-format JSONL files (``question``, ``answer`` whose last line is
  ``#### N``) given by path; nothing is downloaded. No exact step labels.
- :class:`ReasoningGymTask`, a reasoning-gym dataset by name, answers scored by its own
  scorer (optional dependency ``reasoning-gym``).

A solution text always ends with a final line ``#### <answer>`` (the GSM8K convention);
:func:`extract_final_answer` reads it (falling back to the last number in the text).
Final answers are compared with math-verify when it is installed, else numerically.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, Sequence

Split = Literal["pretrain", "train", "val", "test"]
SPLITS: tuple[str, ...] = ("pretrain", "train", "val", "test")


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

    ``step_labels`` returns one bool per step of ``text`` when the task can check steps
    exactly, else None (then process metrics need a learned PRM).
    """

    name: str

    def problems(self, split: Split, n: int) -> list[Problem]: ...
    def prompt(self, problem: Problem) -> str: ...
    def is_correct(self, problem: Problem, text: str) -> bool: ...
    def final_answer(self, text: str) -> str | None: ...
    def step_labels(self, problem: Problem, text: str) -> list[bool] | None: ...


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
    """Whether a predicted final answer equals the gold one.

    Uses math-verify (``parse`` + ``verify``) when installed, so ``1/2`` equals ``0.5`` and
    ``\\frac{1}{2}``; otherwise an exact numeric comparison, then an exact string comparison.
    """
    if pred is None:
        return False
    p, g = _to_number(pred), _to_number(gold)
    if p is not None and g is not None:  # the common case, and it needs no parser
        return p == g
    try:
        from math_verify import parse, verify
    except ImportError:
        return pred.strip() == gold.strip()
    try:
        return bool(verify(parse(gold), parse(pred)))
    except Exception:  # math-verify raises on text it cannot parse: not a match
        return pred.strip() == gold.strip()


# --------------------------------------------------------------------------------------
# The procedural arithmetic task


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
        h = hashlib.sha1(f"{self.cfg.seed}:{start}:{list(ops)}".encode()).digest()
        u = int.from_bytes(h[:4], "big") / 2**32
        return "pretrain" if u < 0.7 else "train" if u < 0.8 else "val" if u < 0.9 else "test"

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


# --------------------------------------------------------------------------------------
# GSM8K-format JSONL


@dataclass(frozen=True)
class GSM8KConfig:
    """GSM8K-format JSONL files, one per split; nothing is downloaded."""

    train_path: str = ""
    """JSONL with ``question`` and ``answer`` (last line ``#### N``) used for sampling/SFT."""
    test_path: str = ""
    """Held-out JSONL for evaluation. ``val`` takes the last ``val_size`` lines of train."""
    val_size: int = 50
    """Problems moved from the end of the train file to the validation split."""


_CALC_RE = re.compile(r"<<[^>]*>>")


class GSM8KTask:
    """GSM8K-format problems: prompt ``Question: ...\\nAnswer:``; no exact step labels.

    Calculator annotations ``<<48/2=24>>`` in gold solutions are dropped (the usual
    convention when fine-tuning on GSM8K).
    """

    name = "gsm8k"

    def __init__(self, cfg: GSM8KConfig):
        self.cfg = cfg

    @staticmethod
    def load_jsonl(path: str | Path) -> list[Problem]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"GSM8K file {path} does not exist")
        out = []
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            if "question" not in row or "answer" not in row:
                raise ValueError(f"{path}:{i + 1}: needs keys 'question' and 'answer'")
            solution = _CALC_RE.sub("", row["answer"]).strip()
            gold = extract_final_answer(solution)
            if gold is None or "####" not in solution:
                raise ValueError(f"{path}:{i + 1}: answer must end with a line '#### N'")
            out.append(Problem(id=f"{path.stem}-{i}", question=row["question"].strip(),
                               solution=solution, answer=gold))
        return out

    def problems(self, split: Split, n: int | None = None) -> list[Problem]:
        if split == "test":
            probs = self.load_jsonl(self.cfg.test_path)
        elif split in ("train", "val", "pretrain"):
            probs = self.load_jsonl(self.cfg.train_path)
            k = min(self.cfg.val_size, len(probs) // 2)
            probs = probs[len(probs) - k :] if split == "val" else probs[: len(probs) - k]
        else:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return probs if n is None else probs[:n]

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:"

    def final_answer(self, text: str) -> str | None:
        return extract_final_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_match(self.final_answer(text), problem.answer)

    def step_labels(self, problem: Problem, text: str) -> None:
        return None


# --------------------------------------------------------------------------------------
# reasoning-gym


class ReasoningGymTask:
    """A reasoning-gym dataset by name (e.g. "basic_arithmetic", "chain_sum"), scored by
    reasoning-gym's own ``score_answer`` on the text after ``####``.

    reasoning-gym has no gold step-by-step solutions: ``solution`` is ``#### <answer>``.
    """

    def __init__(self, dataset: str, seed: int = 0, **dataset_kwargs):
        try:
            import reasoning_gym
        except ImportError as e:
            raise ImportError("ReasoningGymTask needs `pip install reasoning-gym`") from e
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


# --------------------------------------------------------------------------------------
# choosing a task from a config


@dataclass(frozen=True)
class TaskConfig:
    """Which problems an experiment samples, filters, trains and tests on."""

    kind: Literal["arith", "gsm8k", "reasoning_gym"] = "arith"
    """arith: the procedural task (its settings are the zoo's, ``zoo.task``); gsm8k:
    GSM8K-format files (``gsm8k.train_path``, ``gsm8k.test_path``; relative to the folder
    ablab runs in, or absolute on the cluster's shared storage); reasoning_gym: the dataset ``gym_dataset``."""
    gsm8k: GSM8KConfig = field(default_factory=GSM8KConfig)
    """The GSM8K-format files (kind gsm8k)."""
    gym_dataset: str = ""
    """A reasoning-gym dataset name, e.g. basic_arithmetic (kind reasoning_gym)."""
    gym_seed: int = 0
    """Seed of the reasoning-gym problem streams."""

    def __post_init__(self) -> None:
        if self.kind == "gsm8k" and not (self.gsm8k.train_path and self.gsm8k.test_path):
            raise ValueError("TaskConfig.gsm8k.train_path: kind gsm8k needs gsm8k.train_path and gsm8k.test_path")
        if self.kind == "reasoning_gym" and not self.gym_dataset:
            raise ValueError("TaskConfig.gym_dataset: kind reasoning_gym needs a dataset name")


def make_task(cfg: TaskConfig, arith: ArithConfig) -> Task:
    """The task of ``cfg``; ``arith`` configures the procedural one."""
    if cfg.kind == "gsm8k":
        return GSM8KTask(cfg.gsm8k)
    if cfg.kind == "reasoning_gym":
        return ReasoningGymTask(cfg.gym_dataset, seed=cfg.gym_seed)
    return ArithTask(arith)
