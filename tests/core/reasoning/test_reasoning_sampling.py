"""Compute-matched budgets and the hf sampling backend."""

import pytest

from core.reasoning.sampling import (Decoding, HFBackend, SamplingConfig, compute_matched_samples,
                                     make_backend, sampling_budget)


def test_compute_matched_budget_formula():
    # S_WC = round(P_SE / P_WC * S_SE)
    assert compute_matched_samples(1, 27e9, 9e9) == 3
    assert compute_matched_samples(4, 1_062_528, 72_128) == round(1_062_528 / 72_128 * 4) == 59
    assert compute_matched_samples(0, 3, 1) == 0
    assert compute_matched_samples(1, 0.15, 0.10) == 2  # prices per token: round(1.5)
    assert sampling_budget("compute", 2, 300, 100) == (6, 2)
    assert sampling_budget("number", 2, 300, 100) == (2, 2)


def test_hf_backend_batched_equals_one_at_a_time_and_is_seeded(tiny_lm_dir):
    prompts = ["Ann has 32 coins, gets 54. How many?\n", "12+3=?\n", "x\n"]
    batched = make_backend(SamplingConfig(), "wc", tiny_lm_dir, device="cpu")
    assert isinstance(batched, HFBackend)
    single = HFBackend(batched.model, batched.tokenizer, batch_size=1)
    g1 = batched.sample(prompts, n=2, temperature=0.0, max_new_tokens=12)
    g2 = single.sample(prompts, n=2, temperature=0.0, max_new_tokens=12)
    assert [[s.token_ids for s in g] for g in g1] == [[s.token_ids for s in g] for g in g2]
    assert all(len(g) == 2 and g[0] == g[1] for g in g1)  # greedy: n identical samples
    s1 = batched.sample(prompts, n=3, temperature=1.0, max_new_tokens=12, seed=7)
    s2 = batched.sample(prompts, n=3, temperature=1.0, max_new_tokens=12, seed=7)
    assert s1 == s2 and len(s1) == 3 and all(len(g) == 3 for g in s1)
    for s in s1[0]:
        assert s.num_tokens == len(s.logprobs) <= 12
        assert all(lp <= 0 for lp in s.logprobs)
        assert s.finish_reason in ("stop", "length")
    assert batched.tokens_generated > 0
    batched.close()


def test_greedy_decodes_once_and_repeats():
    assert Decoding.of(4, 0.0, 0.9) == Decoding(n=1, temperature=0.0, top_p=1.0, repeat=4)
    assert Decoding.of(4, 0.7, 0.9) == Decoding(n=4, temperature=0.7, top_p=0.9, repeat=1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        Decoding.of(0, 1.0, 1.0)
