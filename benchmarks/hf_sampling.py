"""hf sampling backend: batched vs one prompt at a time, same model, same greedy outputs.

    .venv/bin/python benchmarks/hf_sampling.py                       # the shipped SE model
    .venv/bin/python benchmarks/hf_sampling.py core/reasoning/zoo_default/wc 64
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.reasoning.sampling import HFBackend  # noqa: E402
from core.reasoning.tasks import ArithConfig, ArithTask  # noqa: E402


def measure(model_dir: str, n_prompts: int = 64, max_new_tokens: int = 48,
            batch_size: int = 256, task_cfg: ArithConfig = ArithConfig()) -> dict[str, float]:
    """Greedy tokens/s batched and one at a time, the speed-up, and output equality;
    plus sampled tokens/s (n=8 per prompt) batched."""
    task = ArithTask(task_cfg)
    prompts = [task.prompt(p) for p in task.problems("test", n_prompts)]
    batched = HFBackend.from_dir(model_dir, device="cpu", batch_size=batch_size)
    single = HFBackend(batched.model, batched.tokenizer, batch_size=1)
    out = {}
    results = {}
    for name, backend in (("batched", batched), ("single", single)):
        t0 = time.perf_counter()
        res = backend.sample(prompts, n=1, temperature=0.0, max_new_tokens=max_new_tokens)
        dt = time.perf_counter() - t0
        toks = sum(s.num_tokens for g in res for s in g)
        out[f"greedy_{name}_tokens_per_s"] = toks / dt
        results[name] = [g[0].token_ids for g in res]
    out["speedup"] = out["greedy_batched_tokens_per_s"] / out["greedy_single_tokens_per_s"]
    out["greedy_outputs_equal"] = float(results["batched"] == results["single"])
    t0 = time.perf_counter()
    res = batched.sample(prompts, n=8, temperature=0.7, max_new_tokens=max_new_tokens, seed=0)
    out["sampled_n8_batched_tokens_per_s"] = sum(s.num_tokens for g in res for s in g) / (time.perf_counter() - t0)
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "core/reasoning/zoo_default/se")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    print(f"model {model}, {n} prompts, 1 thread; command: python benchmarks/hf_sampling.py {' '.join(sys.argv[1:])}")
    print(json.dumps(measure(model, n), indent=1))
