"""Sampling backends and compute-matched sampling budgets.

The backend interface is one method, kept small so a vLLM backend can implement it too::

    backend.sample(prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[Sample]]

returning, for every prompt, its ``n`` samples. ``temperature == 0`` means greedy decoding
(then all ``n`` samples are the same). Backends are built by :func:`make_backend`.

Budgets (Bansal et al. 2024): sampling a model with P parameters costs about 2P FLOPs per
token, so at matched compute a WC model draws ``S_WC = round(P_SE / P_WC * S_SE)`` samples
per problem for every ``S_SE`` of the SE model (:func:`sampling_budget`); prices per token
replace parameter counts when the latter are unknown (an API model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import torch


@dataclass(frozen=True)
class Sample:
    """One generated continuation of a prompt (the prompt itself is not included)."""

    text: str
    token_ids: tuple[int, ...]  # generated tokens, up to and including the end token
    logprobs: tuple[float, ...] | None = None  # log p of each generated token under the
    # distribution it was sampled from (after temperature / top-p), or None
    finish_reason: Literal["stop", "length"] = "stop"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class SamplingBackend(Protocol):
    """Generates ``n`` samples per prompt. Same seed, same outputs (on the same device)."""

    def sample(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
    ) -> list[list[Sample]]: ...


class HFBackend:
    """transformers ``generate``: batched (left padding), KV cache, CPU or GPU.

    ``batch_size`` is the number of sequences (prompts x n) decoded together; 1 gives the
    one-prompt-at-a-time baseline of the throughput benchmark. ``tokens_generated`` and
    ``seconds`` accumulate over calls, for throughput figures.
    """

    def __init__(self, model, tokenizer, batch_size: int = 256):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.tokens_generated, self.seconds = 0, 0.0

    @classmethod
    def from_dir(cls, path: str | Path, device=None, batch_size: int = 256) -> "HFBackend":
        from core.reasoning.models import default_device, load_causal_lm

        model, tok = load_causal_lm(path, device=device or default_device())
        return cls(model, tok, batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample(self, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=0):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        tok, model = self.tokenizer, self.model
        was_training = model.training
        model.eval()
        greedy = temperature == 0
        # prompts per generate call, so that prompts x n sequences fit one batch
        per_call = max(1, self.batch_size // n)
        out: list[list[Sample]] = []
        t0 = time.perf_counter()
        # a private RNG stream: sampling never disturbs the caller's torch RNG
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for i in range(0, len(prompts), per_call):
                chunk = list(prompts[i : i + per_call])
                enc = tok(chunk, return_tensors="pt", padding=True).to(self.device)
                gen = model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else temperature,
                    top_p=None if greedy else top_p,
                    top_k=None,
                    num_return_sequences=1 if greedy else n,
                    max_new_tokens=max_new_tokens,
                    return_dict_in_generate=True,
                    output_scores=True,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
                new = gen.sequences[:, enc["input_ids"].shape[1] :]  # (B*n, T_new)
                scores = model.compute_transition_scores(
                    gen.sequences, gen.scores, normalize_logits=True
                )  # (B*n, T_new)
                for j in range(len(chunk)):
                    rows = [j] * n if greedy else range(j * n, (j + 1) * n)
                    out.append([self._record(new[r], scores[r]) for r in rows])
        self.seconds += time.perf_counter() - t0
        self.tokens_generated += sum(s.num_tokens for group in out for s in group)
        model.train(was_training)
        return out

    def _record(self, ids: torch.Tensor, scores: torch.Tensor) -> Sample:
        ids_l = ids.tolist()
        eos = self.tokenizer.eos_token_id
        if eos in ids_l:
            end, reason = ids_l.index(eos) + 1, "stop"
        else:
            end, reason = len(ids_l), "length"
        kept = ids_l[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Sample(text=text, token_ids=tuple(kept),
                      logprobs=tuple(scores[:end].float().tolist()), finish_reason=reason)


def make_backend(name: str, model_dir: str | Path, **kwargs) -> SamplingBackend:
    """A sampling backend by name: "hf", "vllm" (in-process vLLM engine), "openai"
    (an OpenAI-compatible completions endpoint; needs base_url)."""
    if name == "hf":
        return HFBackend.from_dir(model_dir, **kwargs)
    # imported here: openai_backend imports this module, and vllm is an optional extra
    if name == "vllm":
        from core.reasoning.vllm_backend import VLLMBackend

        return VLLMBackend.from_dir(model_dir, **kwargs)
    if name == "openai":
        from core.reasoning.openai_backend import OpenAIBackend

        return OpenAIBackend.from_dir(model_dir, **kwargs)
    raise ValueError(f"unknown sampling backend {name!r}; allowed: hf, vllm, openai")


# --------------------------------------------------------------------------------------
# Budgets


def compute_matched_samples(s_se: int, cost_se: float, cost_wc: float) -> int:
    """``S_WC = round(cost_SE / cost_WC * S_SE)``: cost is the parameter count (FLOPs per
    token are ~2P) or the price per token. Rounded half up (not Python's half-to-even),
    with a tolerance for float noise such as 0.15 / 0.10 = 1.4999999999999998."""
    if s_se < 0 or cost_se <= 0 or cost_wc <= 0:
        raise ValueError(f"need s_se >= 0 and positive costs, got {s_se}, {cost_se}, {cost_wc}")
    return max(1, math.floor(cost_se / cost_wc * s_se + 0.5 + 1e-9)) if s_se else 0


def sampling_budget(
    match: Literal["compute", "number"], s_se: int, cost_se: float, cost_wc: float
) -> tuple[int, int]:
    """Samples per problem ``(S_WC, S_SE)``: compute-matched, or number-matched (equal)."""
    if match == "compute":
        return compute_matched_samples(s_se, cost_se, cost_wc), s_se
    if match == "number":
        return s_se, s_se
    raise ValueError(f"unknown budget match {match!r}; allowed: compute, number")
