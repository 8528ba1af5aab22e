"""What the vllm and openai backend tests ask of their samples, and how they check them.

The calls (``CALLS``) run on the same prompts through each backend; :func:`check_records`
then checks the records against the model itself, loaded with transformers in the main
venv: the text is the decoding of the ids, the ids end with the end token exactly when
the sample stopped, ``n`` samples per prompt, greedy samples are ``n`` copies of the argmax
continuation, and the log-probs are those of the tokens under the distribution they were
sampled from (temperature-scaled softmax; top-p renormalisation can only raise them).
"""

from __future__ import annotations

from pathlib import Path

PROMPTS = ["12+30=", "Ann has 3 apples.\n", "x"]
CALLS = {
    "seed7": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7),
    "seed7_again": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7),
    "seed8": dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=8),
    "top_p": dict(n=2, temperature=0.8, top_p=0.9, max_new_tokens=16, seed=7),
    "greedy": dict(n=2, temperature=0.0, max_new_tokens=16),
    # ~1% of a random model's mass is on the end token: 24 x 64 tokens stop a few times
    "long": dict(n=8, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=3),
}


def write_tiny_llama(path: Path) -> Path:
    """A random 2-layer Llama (d_model 64, head dim 32, 2 heads) with the offline char
    tokenizer, as a plain Hugging Face directory."""
    from core.reasoning.models import TinyLMConfig, build_model, save_hf_dir
    from core.reasoning.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    model = build_model(TinyLMConfig(d_model=64, n_layers=2, head_dim=32), tok, seed=0)
    return save_hf_dir(model, tok, path)


def check_records(results: dict[str, list[list[dict]]], model_dir: Path) -> dict[str, int]:
    """Assert everything above; ``results[call]`` holds per prompt the samples as dicts
    (``dataclasses.asdict(Sample)``). Returns counts for the test's message."""
    import torch

    from core.reasoning.models import load_causal_lm

    model, tok = load_causal_lm(model_dir)
    eos = tok.eos_token_id
    assert set(results) == set(CALLS)
    stops = 0
    for name, kw in CALLS.items():
        groups = results[name]
        assert len(groups) == len(PROMPTS), name
        for prompt, group in zip(PROMPTS, groups):
            assert len(group) == kw["n"], (name, len(group))
            for s in group:
                ids = list(s["token_ids"])
                assert 1 <= len(ids) <= kw["max_new_tokens"], (name, len(ids))
                assert s["text"] == tok.decode(ids, skip_special_tokens=True), name
                if s["finish_reason"] == "stop":
                    assert ids[-1] == eos and eos not in ids[:-1], (name, ids)
                    stops += 1
                else:
                    assert s["finish_reason"] == "length", s["finish_reason"]
                    assert len(ids) == kw["max_new_tokens"] and eos not in ids, (name, ids)
                lps = s["logprobs"]
                assert lps is not None and len(lps) == len(ids), name
                assert all(lp <= 1e-6 for lp in lps), name
                if kw["temperature"] == 0:
                    continue
                # reference: the model's own distribution at each generated position
                enc = tok(prompt, return_tensors="pt")["input_ids"][0].tolist()
                with torch.no_grad():
                    logits = model(torch.tensor([enc + ids])).logits[0, len(enc) - 1 : -1]
                ref = torch.log_softmax(logits.float() / kw["temperature"], -1)
                ref = ref[torch.arange(len(ids)), torch.tensor(ids)].tolist()
                if kw["top_p"] == 1.0:
                    assert max(abs(a - b) for a, b in zip(lps, ref)) < 2e-3, (name, lps, ref)
                else:  # renormalised over the nucleus: never below the full softmax
                    assert all(a >= b - 2e-3 for a, b in zip(lps, ref)), (name, lps, ref)
        if kw["temperature"] == 0:
            for prompt, group in zip(PROMPTS, groups):
                assert all(s == group[0] for s in group), "greedy: n identical samples"
                ids = list(group[0]["token_ids"])
                enc = tok(prompt, return_tensors="pt")["input_ids"][0].tolist()
                with torch.no_grad():
                    logits = model(torch.tensor([enc + ids])).logits[0, len(enc) - 1 : -1]
                chosen = logits[torch.arange(len(ids)), torch.tensor(ids)]
                # the argmax, up to float noise between near-tied logits of a random model
                assert (logits.max(-1).values - chosen).max().item() < 1e-3, (prompt, ids)
    assert results["seed7"] == results["seed7_again"], "same seed, same samples"
    assert results["seed7"] != results["seed8"], "another seed, other samples"
    flat = [tuple(s["token_ids"]) for g in results["seed7"] for s in g]
    assert len(set(flat)) == len(flat), "the n samples of a prompt differ"
    assert stops > 0, "no sample stopped at the end token"
    return {"samples": sum(len(g) for r in results.values() for g in r), "stops": stops}
