"""The "openai" sampling backend: any OpenAI-compatible *completions* endpoint.

That covers a vLLM server shared by many trials and API models. One request per prompt
(``n`` choices each), sent from a thread pool (``concurrency`` requests in flight).
Retries are tenacity's (the one retry layer): exponential backoff with jitter on
connection errors, timeouts, 408/409/425/429 and 5xx, honouring ``Retry-After``; other
HTTP errors fail at once with the server's message. HTTP is ``urllib``: one POST and its
JSON.

The API key is read from the environment variable whose *name* is given (``api_key_env``)
at each request; the key itself is never stored on the backend, in configs, in records or
in error messages.

Token counts, which the compute-matched budgets rest on, are exact whenever the server can
give them:

- ``return_token_ids`` (on by default) asks for the generated ids (vLLM returns them per
  choice as ``token_ids``; they end with the end token on a "stop" finish, as the "hf"
  records do). A server that refuses the field (HTTP 400 naming it) is asked again
  without it, and never again by this backend.
- Without ids, the count is the number of returned log-probs when ``logprobs=True``
  (exact; a server running with ``--return-tokens-as-token-ids`` gives ids this way
  too), else ``usage.completion_tokens``: exact for one choice, split over the ``n``
  choices of a request in proportion to their text length when there are several. That
  split is an estimate and the sample says so (``Sample.tokens_estimated``).

Seeds: every request carries its own seed (:func:`~core.reasoning.sampling.base.request_seed`
of the call's seed and the prompt's index) when ``seed_requests``; servers that ignore
``seed`` (most APIs) are not reproducible.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from tenacity import (RetryError, Retrying, retry_if_exception_type, stop_after_attempt,
                      wait_random_exponential)

from core.reasoning.sampling.base import Decoding, Sample, request_seed

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIError(RuntimeError):
    """The endpoint refused a request, or kept failing after every retry."""


class _Transient(Exception):
    """A failure worth retrying; ``wait`` is the server's Retry-After, if it sent one."""

    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


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
        return_token_ids: bool = True,
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
    def from_config(cls, cfg, role: str, model_dir: str | Path, device=None) -> "OpenAIBackend":
        """For :func:`~core.reasoning.sampling.make_backend`: ``role``'s server and served
        model (default: ``model_dir`` as given, the name a server started on that
        directory serves it under); ``device`` is the server's business."""
        g = cfg.generator(role)
        return cls(base_url=cfg.base_url_of(role), model=g.model or str(model_dir),
                   api_key_env=cfg.api_key_env or None)

    def __repr__(self) -> str:  # no key, ever
        return (f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})")

    def close(self) -> None:
        """Nothing to free: every request opens and closes its own connection."""

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
        d = Decoding.of(n, temperature, top_p)
        t0 = time.perf_counter()

        def one(i: int) -> list[Sample]:
            body: dict[str, Any] = {"model": self.model, "prompt": prompts[i],
                                    "max_tokens": max_new_tokens, "n": d.n,
                                    "temperature": d.temperature, "top_p": d.top_p}
            if self.seed_requests:
                body["seed"] = request_seed(seed, i)
            if self.logprobs:
                body["logprobs"] = 0
            body.update(self.extra_body)
            return d.expand(self._records(self._complete(body)))

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

    def _complete(self, body: dict) -> dict:
        """POST /completions, asking for token ids while the server accepts the field."""
        if not self.return_token_ids:
            return self._post("/completions", body)
        try:
            return self._post("/completions", {**body, "return_token_ids": True})
        except OpenAIError as e:
            if "HTTP 400" not in str(e) or "return_token_ids" not in str(e):
                raise
        with self._lock:
            self.return_token_ids = False  # this server cannot: counts come from usage
        return self._post("/completions", body)

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
                sample = Sample(texts[k], tuple(int(t) for t in ids), logprobs, reason)
            elif logprobs is not None:
                sample = Sample(texts[k], (), logprobs, reason, reported_tokens=len(logprobs))
            else:
                sample = Sample(texts[k], (), None, reason,
                                reported_tokens=shares[k] if shares else 0,
                                tokens_estimated=len(choices) > 1 or shares is None)
            out.append(sample)
        return out

    def _post(self, route: str, body: dict) -> dict:
        url = self.base_url + route
        attempts = self.max_retries + 1
        backoff = wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)

        def wait(state) -> float:
            told = getattr(state.outcome.exception(), "wait", None)
            return told if told is not None else backoff(state)

        def counted(state) -> None:
            with self._lock:
                self.retries += 1

        try:
            for attempt in Retrying(stop=stop_after_attempt(attempts), wait=wait,
                                    retry=retry_if_exception_type(_Transient),
                                    before_sleep=counted):
                with attempt:
                    return self._post_once(url, body)
        except RetryError as e:
            last = e.last_attempt.exception()
            raise OpenAIError(f"POST {url} failed after {attempts} attempts; last: {last}") from None
        raise AssertionError("unreachable: Retrying either returns or raises")

    def _post_once(self, url: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise OpenAIError(f"the API key variable {self.api_key_env!r} is not set")
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                resp = json.loads(r.read())
        except urllib.error.HTTPError as e:
            msg = _error_text(e)
            if e.code not in RETRY_STATUS:
                raise OpenAIError(f"POST {url} -> HTTP {e.code}: {msg}") from None
            raise _Transient(f"HTTP {e.code}: {msg}", _retry_after(e.headers.get("Retry-After"))) from None
        except json.JSONDecodeError as e:
            raise _Transient(f"invalid JSON: {e}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise _Transient(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
        with self._lock:
            self.requests += 1
        return resp


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
