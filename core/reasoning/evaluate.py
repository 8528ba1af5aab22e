"""Evaluation of a model on held-out problems: pass@1 (greedy and sampled) and maj@k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from core.reasoning.metrics import judge, maj_at_k, pass_at_1, with_counts
from core.reasoning.sampling.base import SamplingBackend
from core.reasoning.tasks import Problem, Task


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation."""

    n_problems: int = 200
    """Test problems evaluated."""
    ks: tuple[int, ...] = (1, 4, 8, 16)
    """maj@k (metric key test/maj_at_k) for each k; max(ks) samples per problem are drawn."""
    temperature: float = 0.7
    """Sampling temperature of sampled pass@1 and maj@k."""
    top_p: float = 1.0
    """Nucleus sampling of sampled pass@1 and maj@k."""
    max_new_tokens: int = 48
    """Generation length."""
    seed: int = 0
    """Sampling seed. Inside an experiment it is the trial's seed (``seed``), not set here."""


def evaluate(backend: SamplingBackend, task: Task, problems: Sequence[Problem],
             cfg: EvalConfig = EvalConfig(), prefix: str = "test") -> dict[str, float]:
    """``{prefix}/pass_at_1`` (greedy), ``{prefix}/pass_at_1_sampled`` and ``{prefix}/maj_at_k``,
    each with its ``:n`` (the number of problems)."""
    prompts = [task.prompt(p) for p in problems]
    greedy = backend.sample(prompts, n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens)
    out = {f"{prefix}/pass_at_1": pass_at_1([judge(task, p, [g[0].text]) for p, g in zip(problems, greedy)])}
    if cfg.ks:
        n = max(cfg.ks)
        sampled = backend.sample(prompts, n=n, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        groups = [judge(task, p, [s.text for s in g]) for p, g in zip(problems, sampled)]
        out[f"{prefix}/pass_at_1_sampled"] = pass_at_1(groups)
        golds = [p.answer for p in problems]
        for k in cfg.ks:
            out[f"{prefix}/maj_at_{k}"] = maj_at_k(groups, golds, k)
    return with_counts(out, len(problems), list(out))  # every one a share of the problems
