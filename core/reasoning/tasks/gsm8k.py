"""GSM8K-format JSONL files (``question``, ``answer`` whose last line is ``#### N``), given
by path; nothing is downloaded. No exact step labels."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from core.reasoning.tasks.base import SPLITS, Problem, Split, answers_match, extract_final_answer

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

