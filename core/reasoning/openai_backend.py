"""The "openai" sampling backend: any OpenAI-compatible *completions* endpoint.

That covers a ``vllm serve`` server shared by many trials and API models. One request per
prompt (``n`` choices each), sent from a thread pool (``concurrency`` requests in flight),
retried with exponential backoff and jitter on connection errors, timeouts, 408/409/429 and
5xx (honouring ``Retry-After``); other HTTP errors fail at once with the server's message.

HTTP is plain ``urllib`` from the standard library, not the ``openai`` client package: the
backend needs one POST and its JSON, the client is not in the project's dependencies, and
its own retry/concurrency layer would sit under ours. Nothing new to install.

The API key is read from the environment variable whose *name* is given (``api_key_env``)
at each request; the key itself is never stored on the backend, in configs, in records or
in error messages.

Records are the :class:`~core.reasoning.sampling.Sample` of the "hf" backend:

- ``token_ids``: the server's generated token ids when it returns them (vLLM does with
  ``return_token_ids``, sent when ``return_token_ids=True``; or in the log-probs when the
  server runs with ``--return-tokens-as-token-ids``). vLLM's ids end with the end token
  on a "stop" finish, as the "hf" records do (checked by tests/vllm).
- Without ids (API models), ``token_ids`` is empty and the sample is an
  :class:`APISample` whose ``num_tokens`` is the count the server reported: the number of
  log-probs when returned, else ``usage.completion_tokens`` (split over the ``n`` choices of
  a request in proportion to their text length when there are several: an estimate,
  flagged by ``APISample.tokens_estimated``).
- ``logprobs``: when ``logprobs=True`` (requested as ``logprobs: 0``, the sampled token's
  only). vLLM reports the raw model distribution unless the server runs with
  ``--logprobs-mode processed_logprobs`` (the "hf" backend reports the distribution after
  temperature / top-p).

Seeds: every request carries its own seed, a hash of ``(seed, prompt index)``
(``seed_requests=True``), so the samples of a prompt do not depend on the order the pool
sends requests in. Not ``seed + index``: vLLM seeds the ``n`` samples of a request with
``seed + 0 .. n-1``, so consecutive seeds would give prompt i+1 the random stream of prompt
i's second sample (and a random model the same text). Servers that ignore ``seed`` (most
APIs) are not reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from core.reasoning.sampling import Sample

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class APISample(Sample):
    """A sample from a server that returned no token ids: ``num_tokens`` is the server's
    count (``token_ids`` is empty)."""

    reported_tokens: int = 0
    tokens_estimated: bool = False  # True when split from a request's total usage

    @property
    def num_tokens(self) -> int:
        return self.reported_tokens


class OpenAIError(RuntimeError):
    """The endpoint refused a request, or kept failing after every retry."""


class OpenAIBackend:
    """Samples from an OpenAI-compatible ``/v1/completions`` endpoint.

    ``tokens_generated``, ``seconds``, ``requests`` and ``retries`` accumulate over calls.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 600.0,
        logprobs: bool = False,
        return_token_ids: bool = False,
        seed_requests: bool = True,
        extra_body: dict[str, Any] | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ValueError(f"the API key variable {api_key_env!r} is not set in the environment")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.api_key_env = model, api_key_env
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff, self.max_backoff, self.timeout = backoff, max_backoff, timeout
        self.logprobs, self.return_token_ids = logprobs, return_token_ids
        self.seed_requests = seed_requests
        self.extra_body = dict(extra_body or {})
        self.tokens_generated, self.seconds, self.requests, self.retries = 0, 0.0, 0, 0
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs) -> "OpenAIBackend":
        """For :func:`~core.reasoning.sampling.make_backend`: the model is the one the
        server serves as ``model`` (default: ``model_dir`` as given, which is the name
        ``vllm serve MODEL_DIR`` serves it under); ``base_url`` is required."""
        if "base_url" not in kwargs:
            raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        kwargs.pop("device", None)  # the server's business
        kwargs.pop("batch_size", None)  # the server batches; `concurrency` is ours
        kwargs.setdefault("model", str(model_dir))
        return cls(**kwargs)

    def __repr__(self) -> str:  # no key, ever
        return (f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})")

    # ------------------------------------------------------------------------------------

    def sample(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
    ) -> list[list[Sample]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        greedy = temperature == 0
        t0 = time.perf_counter()

        def one(i: int) -> list[Sample]:
            body: dict[str, Any] = {
                "model": self.model, "prompt": prompts[i], "max_tokens": max_new_tokens,
                "n": 1 if greedy else n,  # greedy: one decode, repeated n times (as "hf")
                "temperature": 0.0 if greedy else temperature,
                "top_p": 1.0 if greedy else top_p,
            }
            if self.seed_requests:
                body["seed"] = request_seed(seed, i)
            if self.logprobs:
                body["logprobs"] = 0
            if self.return_token_ids:
                body["return_token_ids"] = True
            body.update(self.extra_body)
            group = self._records(self._post("/completions", body))
            return group * n if greedy else group

        if len(prompts) <= 1 or self.concurrency == 1:
            out = [one(i) for i in range(len(prompts))]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
                out = list(pool.map(one, range(len(prompts))))
        with self._lock:
            self.seconds += time.perf_counter() - t0
            self.tokens_generated += sum(s.num_tokens for g in out for s in g)
        return out

    # ------------------------------------------------------------------------------------

    def _records(self, resp: dict) -> list[Sample]:
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise OpenAIError(f"{self.base_url}: a response without choices: {str(resp)[:500]}")
        usage = (resp.get("usage") or {}).get("completion_tokens")
        texts = [c.get("text") or "" for c in choices]
        # the split of a request's usage over its choices, for servers that give no counts
        shares = _split(usage, [max(1, len(t)) for t in texts]) if usage is not None else None
        out: list[Sample] = []
        for k, c in enumerate(choices):
            reason = "length" if c.get("finish_reason") == "length" else "stop"
            lp = c.get("logprobs") or {}
            lps = lp.get("token_logprobs")
            logprobs = tuple(float(x) if x is not None else 0.0 for x in lps) if lps is not None else None
            ids = c.get("token_ids")
            if ids is None and lp.get("tokens") and all(
                    isinstance(t, str) and t.startswith("token_id:") for t in lp["tokens"]):
                ids = [int(t.split(":", 1)[1]) for t in lp["tokens"]]
            if ids is not None:
                ids = [int(t) for t in ids]
                out.append(Sample(text=texts[k], token_ids=tuple(ids), logprobs=logprobs,
                                  finish_reason=reason))
            elif logprobs is not None:
                out.append(APISample(text=texts[k], token_ids=(), logprobs=logprobs,
                                     finish_reason=reason, reported_tokens=len(logprobs)))
            else:
                out.append(APISample(text=texts[k], token_ids=(), logprobs=None,
                                     finish_reason=reason,
                                     reported_tokens=shares[k] if shares else 0,
                                     tokens_estimated=len(choices) > 1 or shares is None))
        return out

    def _post(self, route: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise OpenAIError(f"the API key variable {self.api_key_env!r} is not set")
            headers["Authorization"] = f"Bearer {key}"
        url = self.base_url + route
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    with self._lock:
                        self.requests += 1
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                msg = _error_text(e)
                if e.code not in RETRY_STATUS:
                    raise OpenAIError(f"POST {url} -> HTTP {e.code}: {msg}") from None
                last = f"HTTP {e.code}: {msg}"
                wait = _retry_after(e.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except json.JSONDecodeError as e:
                last = f"invalid JSON: {e}"
            if attempt == self.max_retries:
                break
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** attempt)
                wait *= 0.5 + random.random()  # jitter: retries of many threads spread out
            with self._lock:
                self.retries += 1
            time.sleep(wait)
        raise OpenAIError(f"POST {url} failed after {self.max_retries + 1} attempts; last: {last}")


def request_seed(seed: int, index: int) -> int:
    """A request's seed from the call's seed and the prompt's index: 31 bits of a hash,
    far apart for neighbouring prompts (the server adds 0..n-1 for the n samples)."""
    digest = hashlib.sha256(f"ablab:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read().decode(errors="replace")
    except Exception:  # noqa: BLE001 - the body is only for the message
        return str(e.reason)
    try:
        err = json.loads(raw)
        err = err.get("error", err) if isinstance(err, dict) else err
        return str(err.get("message", err) if isinstance(err, dict) else err)[:1000]
    except ValueError:
        return raw[:1000]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, min(float(value), 120.0)) if value else None
    except ValueError:
        return None


def _split(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), summing to it."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    parts = [int(x) for x in raw]
    for k in sorted(range(len(raw)), key=lambda k: raw[k] - parts[k], reverse=True)[: total - sum(parts)]:
        parts[k] += 1
    return parts
