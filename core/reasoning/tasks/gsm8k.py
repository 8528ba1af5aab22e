"""GSM8K-format JSONL files (``question``, ``answer`` whose last line is ``#### N``), given
by path; nothing is downloaded. No exact step labels: the calculator annotations
(``<<48/2=24>>``) give proxy ones (:mod:`core.reasoning.calculator`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from core.reasoning import calculator
from core.reasoning.tasks.base import SPLITS, Problem, Split, answers_match, extract_final_answer

@dataclass(frozen=True)
class GSM8KConfig:
    """GSM8K-format JSONL files, one per split; nothing is downloaded."""

    train_path: str = ""
    """JSONL with ``question`` and ``answer`` (last line ``#### N``), split into train
    (sampled, filtered, fine-tuned on), pretrain (verifier training) and val, in that
    order of its lines: no problem is in two splits."""
    test_path: str = ""
    """Held-out JSONL for evaluation."""
    val_size: int = 50
    """Problems from the end of the train file for validation (at most half of it)."""
    pretrain_size: int = 200
    """Problems before the validation ones for training verifiers (ORM, learned PRM),
    at most half of what validation leaves: a verifier never scores samples of a
    problem it was trained on."""
    keep_calculator: bool = False
    """Keep the calculator annotations ``<<48/2=24>>`` in the gold solutions, so that a
    student learns to write the annotations the ``calculator`` filter checks. Off: they
    are dropped, the usual convention when fine-tuning on GSM8K."""


_CALC_RE = re.compile(r"<<[^>]*>>")


class GSM8KTask:
    """GSM8K-format problems: prompt ``Question: ...\\nAnswer:``.

    Step labels are the calculator check's (a proxy, not exact: ``step_labels_exact`` is
    False). Gold solutions lose their calculator annotations unless ``keep_calculator``.
    """

    name = "gsm8k"
    step_labels_exact = False

    def __init__(self, cfg: GSM8KConfig):
        self.cfg = cfg

    @staticmethod
    def load_jsonl(path: str | Path, keep_calculator: bool = False) -> list[Problem]:
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
            solution = row["answer"].strip()
            if not keep_calculator:
                solution = _CALC_RE.sub("", solution).strip()
            gold = extract_final_answer(solution)
            if gold is None or "####" not in solution:
                raise ValueError(f"{path}:{i + 1}: answer must end with a line '#### N'")
            out.append(Problem(id=f"{path.stem}-{i}", question=row["question"].strip(),
                               solution=solution, answer=gold))
        return out

    def problems(self, split: Split, n: int | None = None) -> list[Problem]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        keep = self.cfg.keep_calculator
        if split == "test":
            probs = self.load_jsonl(self.cfg.test_path, keep)
        else:
            probs = self.load_jsonl(self.cfg.train_path, keep)
            n_val = min(self.cfg.val_size, len(probs) // 2)
            n_train = len(probs) - n_val
            n_pre = min(self.cfg.pretrain_size, n_train // 2)
            start, stop = {"train": (0, n_train - n_pre), "pretrain": (n_train - n_pre, n_train),
                           "val": (n_train, len(probs))}[split]
            probs = probs[start:stop]
        return probs if n is None else probs[:n]

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:"

    def final_answer(self, text: str) -> str | None:
        return extract_final_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_match(self.final_answer(text), problem.answer)

    def step_labels(self, problem: Problem, text: str) -> list[bool]:
        """The calculator check of each step: a proxy label (see the module docstring)."""
        return calculator.step_labels(text)

