"""Supervised fine-tuning of a causal LM on (prompt, completion) pairs, loss on the
completion only, early stopping on validation pass@1.

The same loop trains the zoo from scratch (gold solutions of a problem stream) and
fine-tunes students on filtered samples.

Why a plain loop and not transformers' Trainer / TRL's SFTTrainer (the issue prefers
them unless a plain loop is clearly better; here it is):

1. The early-stopping metric is validation pass@1, which needs *generation*. Trainer's
   evaluation loop computes teacher-forced losses/logits; generating means subclassing
   ``evaluate`` (or ``Seq2SeqTrainer``'s ``predict_with_generate``, which has no decoder-only
   left-padding path), so the loop would be Trainer plus an override of its core.
2. The caller (a Ray Tune trainable) must report metrics at *every* evaluation and save
   a resumable state with them. :meth:`SFTRunner.train` is an iterator that yields at each
   evaluation and :meth:`SFTRunner.state_dict` is the whole resumable state (model,
   optimiser, step, data order, best model), so the trainable owns reporting and
   checkpoint storage. Trainer writes its own checkpoint directories and calls back into
   the caller through callbacks, which inverts that control and duplicates storage.
3. The models are 0.1-1M parameters on 1-2 CPU cores, where per-step overhead matters:
   one step here is forward + backward + AdamW and nothing else.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from core.reasoning.sampling import HFBackend
from core.reasoning.tasks import Problem, Task


@dataclass(frozen=True)
class Example:
    """One training pair: the model learns ``completion`` given ``prompt``."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class SFTConfig:
    """Optimisation, evaluation and early stopping of one SFT run."""

    lr: float = 3e-3
    """Peak AdamW learning rate (tiny models from scratch like 1e-3..3e-3; fine-tuning less)."""
    min_lr_frac: float = 0.1
    """Cosine decay ends at ``lr * min_lr_frac`` at ``max_steps``."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    max_steps: int = 2000
    """Optimiser steps (the schedule's length)."""
    batch_size: int = 64
    """Examples per step."""
    weight_decay: float = 0.1
    """AdamW weight decay (not applied to norms and biases)."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    eval_every: int = 250
    """Steps between validation evaluations (and yields to the caller)."""
    patience: int = 0
    """Stop after this many evaluations without a better val pass@1; 0 = never stop early."""
    max_new_tokens: int = 48
    """Generation length at evaluation."""
    time_budget_s: float = 0.0
    """Stop (after an evaluation) once training took this long; 0 = no limit."""
    target_pass1: float = 0.0
    """Stop at the first evaluation whose val pass@1 reaches this; 0 = off. The zoo uses
    it to pin WC and SE into their pass@1 ranges (the transition is steep, see zoo.py)."""
    seed: int = 0
    """Data order and dropout-free init are seeded from this. Inside an experiment it is
    the trial's seed (``seed``), not set here."""


def encode(tokenizer, ex: Example) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion + eos, and labels (-100 on the prompt)."""
    p = tokenizer(ex.prompt)["input_ids"]  # with the tokenizer's BOS, as at generation
    c = tokenizer(ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p + c, [-100] * len(p) + c


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: (B, T) input_ids, attention_mask and labels."""
    T = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), T), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pass_at_1_greedy(model, tokenizer, task: Task, problems: Sequence[Problem],
                     max_new_tokens: int = 48, batch_size: int = 256) -> float:
    """Share of ``problems`` whose greedy solution has the correct final answer."""
    if not problems:
        return 0.0
    backend = HFBackend(model, tokenizer, batch_size=batch_size)
    outs = backend.sample([task.prompt(p) for p in problems], n=1, temperature=0.0,
                          max_new_tokens=max_new_tokens)
    return sum(task.is_correct(p, o[0].text) for p, o in zip(problems, outs)) / len(problems)


class SFTRunner:
    """setup (``__init__``) -> ``train()`` (yields at every evaluation) -> ``best_model()``.

    ``data`` is a finite list of examples (shuffled each epoch) or an endless iterator (a
    problem stream; then resuming restarts the stream, which is fine for procedural data).
    """

    def __init__(self, model, tokenizer, task: Task, data: Sequence[Example] | Iterable[Example],
                 val_problems: Sequence[Problem], cfg: SFTConfig):
        self.model, self.tok, self.task, self.cfg = model, tokenizer, task, cfg
        self.val_problems = list(val_problems)
        self.device = next(model.parameters()).device
        self.finite = isinstance(data, Sequence)
        self.data = list(data) if self.finite else iter(data)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )
        self.step, self.best, self.bad_evals, self.train_seconds = 0, -1.0, 0, 0.0
        self.best_state: dict | None = None
        self.history: list[dict] = []
        self._order: list[int] = []
        self._epoch = 0
        self.done = False

    # --- schedule and data -----------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        t = min(1.0, (step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps))
        return c.lr * (c.min_lr_frac + (1 - c.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))

    def _next_examples(self) -> list[Example]:
        if not self.finite:
            return [next(self.data) for _ in range(self.cfg.batch_size)]
        out = []
        while len(out) < self.cfg.batch_size:
            if not self._order:
                self._order = list(range(len(self.data)))
                random.Random(f"{self.cfg.seed}-{self._epoch}").shuffle(self._order)
                self._epoch += 1
            out.append(self.data[self._order.pop()])
        return out

    # --- loop ------------------------------------------------------------------------
    def train(self) -> Iterator[dict]:
        """Train until ``max_steps``, early stop or the time budget; yield the metrics
        ``{"step", "train/loss", "val/pass_at_1", "val/best_pass_at_1", "time/train_s"}`` at each
        evaluation."""
        c = self.cfg
        if self.finite and not self.data and not self.done:
            raise ValueError("SFT needs at least one training example (the filter kept none)")
        torch.manual_seed(c.seed + self.step)
        losses: list[float] = []
        while not self.done:
            self.model.train()
            t0 = time.perf_counter()
            batch = collate([encode(self.tok, ex) for ex in self._next_examples()],
                            self.tok.pad_token_id)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.step)
            loss = self.model(**batch).loss  # mean over completion tokens only
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.opt.step()
            self.step += 1
            self.train_seconds += time.perf_counter() - t0
            losses.append(loss.item())
            if self.step % c.eval_every == 0 or self.step >= c.max_steps:
                yield self._evaluate(sum(losses) / len(losses))
                losses = []

    def _evaluate(self, train_loss: float) -> dict:
        c = self.cfg
        acc = pass_at_1_greedy(self.model, self.tok, self.task, self.val_problems, c.max_new_tokens)
        if acc > self.best:
            self.best, self.bad_evals = acc, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_evals += 1
        self.done = (
            self.step >= c.max_steps
            or (c.patience > 0 and self.bad_evals >= c.patience)
            or (c.time_budget_s > 0 and self.train_seconds >= c.time_budget_s)
            or (c.target_pass1 > 0 and acc >= c.target_pass1)
        )
        metrics = {"step": self.step, "train/loss": train_loss, "val/pass_at_1": acc,
                   "val/best_pass_at_1": self.best, "time/train_s": self.train_seconds}
        self.history.append(metrics)
        return metrics

    def run(self) -> list[dict]:
        """Train to the end; the evaluation history."""
        for _ in self.train():
            pass
        return self.history

    def best_model(self):
        """The model with the weights of the best validation evaluation."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.model

    # --- resume ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume (picklable; tensors on CPU)."""
        cpu = lambda sd: {k: v.detach().cpu().clone() for k, v in sd.items()}  # noqa: E731
        return {
            "model": cpu(self.model.state_dict()),
            "optimizer": self.opt.state_dict(),
            "step": self.step, "best": self.best, "bad_evals": self.bad_evals,
            "best_state": None if self.best_state is None else cpu(self.best_state),
            "history": list(self.history), "train_seconds": self.train_seconds,
            "order": list(self._order), "epoch": self._epoch, "done": self.done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.best_state, self.history = state["best_state"], list(state["history"])
        self.train_seconds, self._order = state["train_seconds"], list(state["order"])
        self._epoch, self.done = state["epoch"], state["done"]


def solution_examples(task: Task, problems: Iterable[Problem]) -> Iterator[Example]:
    """Gold solutions as training pairs (the zoo's pretraining data)."""
    for p in problems:
        yield Example(task.prompt(p), p.solution)
