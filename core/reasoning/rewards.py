"""Reward models: the exact step checker as a PRM, and learned PRM / ORM verifiers.

A PRM scores each *step* of a solution (steps are its non-empty lines before ``####``;
the ``####`` line is the last step); an ORM scores the whole solution (Cobbe et al.
2021). Both learned models are a causal LM body with a one-logit head on every token
(``AutoModelForTokenClassification``, ``num_labels=1``), started from any Hugging Face
causal-LM directory (e.g. the WC zoo model) and saved as a plain HF directory:

- ORM: every completion token is trained to predict whether the final answer is correct
  (Cobbe et al.'s token-level verifier); a solution's score is the prediction at its last
  token.
- PRM: the last token of each step is trained on that step's label; a step's score is the
  prediction there. Step labels come from the task: exact ones (the procedural task) or
  GSM8K's calculator check (a proxy); the trained PRM then scores any text split into lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import torch

from core.reasoning.tasks import Problem, Task


class PRM(Protocol):
    def step_scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[list[float]]: ...


class ORM(Protocol):
    def scores(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]: ...


class StepCheckerPRM:
    """The task's step checker as a PRM: 1.0 for a correct step, 0.0 otherwise (exact on
    the procedural task, the calculator proxy on GSM8K)."""

    def __init__(self, task: Task):
        self.task = task

    def step_scores(self, problems, texts):
        out = []
        for p, t in zip(problems, texts):
            labels = self.task.step_labels(p, t)
            if labels is None:
                raise ValueError(f"task {self.task.name} has no step labels")
            out.append([float(x) for x in labels])
        return out


# --------------------------------------------------------------------------------------
# Learned verifiers


@dataclass(frozen=True)
class RMConfig:
    """Training of a learned reward model (ORM or PRM)."""

    lr: float = 1e-3
    """AdamW learning rate."""
    steps: int = 800
    """Optimiser steps (300 -> 800 lifted the default ORM's precision 0.43 -> 0.46 and its
    kept-set coverage 0.20 -> 0.31 at threshold 0.5; small verifiers stay weak)."""
    batch_size: int = 32
    """Samples per step."""
    base: Literal["wc", "se"] = "wc"
    """Zoo model whose body the verifier starts from (the cheap one by default)."""
    n_problems: int = 200
    """Problems (split "pretrain", disjoint from the filtered train problems and from
    validation and test) whose generator samples train the verifier: it never scores
    samples of a problem it was trained on."""
    samples_per_problem: int = 8
    """Generator samples per verifier-training problem."""
    seed: int = 0
    """Data order and head initialisation. Inside an experiment it is the trial's seed
    (``seed``), not set here."""


def step_end_positions(tokenizer, prompt: str, text: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + text, and the index of the last token of each step of text
    (steps = non-empty lines; the ``####`` line included)."""
    p_ids = tokenizer(prompt)["input_ids"]
    ids, ends = list(p_ids), []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        piece = line + ("\n" if i < len(lines) - 1 else "")
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
        if line.strip():
            ends.append(len(ids) - 1)
    return ids, ends


class LearnedRM:
    """A token-level verifier (see the module docstring); ``kind`` is "orm" or "prm"."""

    def __init__(self, model, tokenizer, task: Task, kind: str):
        if kind not in ("orm", "prm"):
            raise ValueError(f"unknown reward model kind {kind!r}; allowed: orm, prm")
        self.model, self.tok, self.task, self.kind = model, tokenizer, task, kind

    @classmethod
    def from_lm_dir(cls, lm_dir: str | Path, task: Task, kind: str, device="cpu", seed: int = 0) -> "LearnedRM":
        """A verifier whose body is the causal LM in ``lm_dir`` (a new head if it has none)."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        torch.manual_seed(seed)  # the new head's initialisation
        tok = AutoTokenizer.from_pretrained(lm_dir)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForTokenClassification.from_pretrained(lm_dir, num_labels=1)
        model.config.pad_token_id = tok.pad_token_id
        return cls(model.to(device), tok, task, kind)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tok.save_pretrained(path)
        return path

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _batch(self, problems, texts):
        """(B, T) ids and mask, right-padded, and each row's step-end positions."""
        rows = [step_end_positions(self.tok, self.task.prompt(p), t) for p, t in zip(problems, texts)]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, (x, _) in enumerate(rows):
            ids[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
        return ids.to(self.device), mask.to(self.device), rows

    def _logits(self, ids, mask) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).logits[..., 0]  # (B, T)

    @torch.no_grad()
    def step_scores(self, problems, texts, batch_size: int = 128) -> list[list[float]]:
        self.model.eval()
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask, rows = self._batch(problems[i : i + batch_size], texts[i : i + batch_size])
            probs = torch.sigmoid(self._logits(ids, mask))
            for b, (x, ends) in enumerate(rows):
                out.append([probs[b, e].item() for e in ends] or [probs[b, len(x) - 1].item()])
        return out

    def scores(self, problems, texts, batch_size: int = 128) -> list[float]:
        """ORM score of each solution: the prediction at its last step end."""
        return [s[-1] for s in self.step_scores(problems, texts, batch_size)]

    def fit(self, problems: Sequence[Problem], texts: Sequence[str], cfg: RMConfig = RMConfig()) -> list[float]:
        """Train on the samples ``texts[i]`` of ``problems[i]``; labels from the task
        (final-answer correctness for the ORM, exact step labels for the PRM). Returns the
        loss curve."""
        labels = []
        for p, t in zip(problems, texts):
            if self.kind == "orm":
                labels.append(float(self.task.is_correct(p, t)))
            else:
                sl = self.task.step_labels(p, t)
                if sl is None:
                    raise ValueError(f"task {self.task.name} has no step labels to train a PRM on")
                labels.append([float(x) for x in sl])
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        rng = random.Random(cfg.seed)
        idx = list(range(len(texts)))
        losses = []
        self.model.train()
        for _ in range(cfg.steps):
            b = rng.sample(idx, min(cfg.batch_size, len(idx)))
            ids, mask, rows = self._batch([problems[i] for i in b], [texts[i] for i in b])
            logits = self._logits(ids, mask)  # (B, T)
            target = torch.zeros_like(logits)
            weight = torch.zeros_like(logits)
            for r, i in enumerate(b):
                x, ends = rows[r]
                if self.kind == "orm":
                    start = len(self.tok(self.task.prompt(problems[i]))["input_ids"])
                    target[r, start : len(x)] = labels[i]
                    weight[r, start : len(x)] = 1.0
                else:
                    # a computation line gets its exact label; the "####" line gets whether
                    # the whole solution is process-correct (so missing steps count there)
                    text_lines = [ln for ln in texts[i].split("\n") if ln.strip()]
                    lab = labels[i]
                    for j, (e, line) in enumerate(zip(ends, text_lines)):
                        if line.lstrip().startswith("####"):
                            target[r, e] = float(all(lab) and self.task.is_correct(problems[i], texts[i]))
                        else:
                            target[r, e] = lab[j] if j < len(lab) else 0.0
                        weight[r, e] = 1.0
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, target, weight=weight, reduction="sum") / weight.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.model.eval()
        return losses
