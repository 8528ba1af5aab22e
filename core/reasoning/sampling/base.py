"""What every sampling backend shares: the :class:`Sample` record, the
:class:`SamplingBackend` protocol, greedy-versus-sampled decoding and per-request seeds.

The interface is one call, kept small so that any engine can implement it::

    backend.sample(prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[Sample]]

returning, for every prompt, its ``n`` samples. ``temperature == 0`` means greedy decoding:
every backend decodes once per prompt and repeats that sample ``n`` times
(:class:`Decoding`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence


@dataclass(frozen=True)
class Sample:
    """One generated continuation of a prompt (the prompt itself is not included)."""

    text: str
    token_ids: tuple[int, ...]
    """Generated tokens, up to and including the end token; empty when a server returned
    none (then ``reported_tokens`` counts them)."""
    logprobs: tuple[float, ...] | None = None
    """log p of each generated token under the distribution it was sampled from (after
    temperature / top-p), or None."""
    finish_reason: Literal["stop", "length"] = "stop"
    reported_tokens: int | None = None
    """The server's token count, for servers that return no ids (API models)."""
    tokens_estimated: bool = False
    """True when ``reported_tokens`` is a request's usage split over its samples by text
    length, not a count of this sample's tokens."""

    @property
    def num_tokens(self) -> int:
        if self.token_ids or self.reported_tokens is None:
            return len(self.token_ids)
        return self.reported_tokens


class SamplingBackend(Protocol):
    """Generates ``n`` samples per prompt. Same seed, same outputs (on the same device).

    ``tokens_generated`` and ``seconds`` accumulate over calls (throughput figures and the
    compute a sample set cost); ``close`` frees what the backend holds (an engine, a GPU).
    """

    tokens_generated: int
    seconds: float

    def sample(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
    ) -> list[list[Sample]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Decoding:
    """What a backend decodes for a call asking for ``n`` samples: greedy calls decode one
    sample per prompt and repeat it ``n`` times."""

    n: int
    """Samples decoded per prompt."""
    temperature: float
    top_p: float
    repeat: int
    """Copies of each decoded group that make the ``n`` samples asked for."""

    @classmethod
    def of(cls, n: int, temperature: float, top_p: float) -> "Decoding":
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if temperature == 0:
            return cls(n=1, temperature=0.0, top_p=1.0, repeat=n)
        return cls(n=n, temperature=temperature, top_p=top_p, repeat=1)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def expand(self, group: list[Sample]) -> list[Sample]:
        return group * self.repeat


def request_seed(seed: int, index: int) -> int:
    """A request's seed from the call's seed and the prompt's index: 31 bits of a hash.

    Not ``seed + index``: vLLM seeds the ``n`` samples of a request with ``seed + 0 ..
    n-1``, so consecutive seeds would give prompt i+1 the random stream of prompt i's
    second sample. Per-prompt seeds also make a prompt's samples independent of the order
    requests are sent in and of the other prompts of a batch.
    """
    digest = hashlib.sha256(f"ablab:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1
