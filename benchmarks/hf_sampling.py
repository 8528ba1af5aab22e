"""hf sampling backend: batched vs one prompt at a time, same model, same greedy outputs.

    .venv/bin/python benchmarks/hf_sampling.py                       # the shipped SE model
    .venv/bin/python benchmarks/hf_sampling.py core/reasoning/zoo_default/wc 64
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.reasoning.throughput import measure  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    model = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "core/reasoning/zoo_default/se")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    print(f"model {model}, {n} prompts, 1 thread; command: python benchmarks/hf_sampling.py {' '.join(sys.argv[1:])}")
    print(json.dumps(measure(model, n), indent=1))
