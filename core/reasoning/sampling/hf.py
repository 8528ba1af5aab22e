"""The "hf" sampling backend: transformers ``generate``, batched (left padding), KV cache,
CPU or GPU."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from core.device import resolve_device
from core.reasoning.sampling.base import Decoding, Sample


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
        from core.reasoning.models import load_causal_lm

        model, tok = load_causal_lm(path, device=resolve_device(device))
        return cls(model, tok, batch_size)

    @classmethod
    def from_config(cls, cfg, role: str, model_dir: str | Path, device=None) -> "HFBackend":
        return cls.from_dir(model_dir, device)

    def close(self) -> None:
        """Nothing to free: the model is the caller's (or garbage once this goes)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample(self, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=0):
        d = Decoding.of(n, temperature, top_p)
        tok, model = self.tokenizer, self.model
        was_training = model.training
        model.eval()
        # prompts per generate call, so that prompts x n sequences fit one batch
        per_call = max(1, self.batch_size // d.n)
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
                    do_sample=not d.greedy,
                    temperature=None if d.greedy else d.temperature,
                    top_p=None if d.greedy else d.top_p,
                    top_k=None,
                    num_return_sequences=d.n,
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
                    rows = range(j * d.n, (j + 1) * d.n)
                    out.append(d.expand([self._record(new[r], scores[r]) for r in rows]))
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
