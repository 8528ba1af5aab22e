"""The decision procedure alone, on thousands of synthetic studies with known effects.

No Ray: ablab.stats is pure. Fixed RNG seeds; the bounds allow for Monte Carlo error
(two standard errors of a binomial proportion).
"""

from __future__ import annotations

import math

import numpy as np

from ablab.stats import Arm, compare, decide_table, evaluation_variance, open_arms

ALPHA = 0.05
ARMS = ("a", "b", "c")


def _mc_bound(rate: float, n: int) -> float:
    return rate + 2 * math.sqrt(rate * (1 - rate) / n)


def _seed_value(rng, p_true: float, seed_sd: float, n_eval: int) -> tuple[float, float]:
    """One seed's accuracy: its own true accuracy, measured on n_eval examples (binomial)."""
    p = min(max(p_true + rng.normal(0, seed_sd), 0.0), 1.0)
    value = rng.binomial(n_eval, p) / n_eval
    return value, evaluation_variance(value, n_eval)


def _study(rng, effects: dict[str, float], seeds: tuple[int, int], sd: float = 1.0, delta=None) -> tuple[dict, int]:
    """One study under the adaptive rule (fixed seeds when min == max); returns decisions, trials."""
    data = {arm: list(rng.normal(effects.get(arm, 0.0), sd, seeds[0])) for arm in ("base", *ARMS)}
    while True:
        decisions = decide_table({"m": Arm(tuple(data["base"]))}, {(a, "m"): Arm(tuple(data[a])) for a in ARMS},
                                 {"m": "max"}, ALPHA, "holm", {"m": delta} if delta else None, seeds)
        undecided = [a for a in open_arms(decisions) if len(data[a]) < seeds[1]]
        if not undecided:
            return decisions, sum(len(v) for v in data.values())
        for a in undecided:
            data[a].append(rng.normal(effects.get(a, 0.0), sd))
        data["base"].append(rng.normal(0.0, sd))


def _false_positive_rate(seeds: tuple[int, int], studies: int) -> float:
    rng = np.random.default_rng(20261124)
    hits = 0
    for _ in range(studies):
        decisions, _ = _study(rng, {}, seeds)
        hits += any(d.verdict in ("better", "worse") for d in decisions.values())
    return hits / studies


def test_family_wise_error_with_fixed_seeds():
    studies = 4000
    assert _false_positive_rate((3, 3), studies) <= _mc_bound(ALPHA, studies)


def test_family_wise_error_with_adaptive_seeds():
    # no smallest effect: no arm can resolve as equivalent, so every null arm is looked at
    # after 3, 4, ..., 10 seeds, the worst case for optional stopping
    studies = 2000
    assert _false_positive_rate((3, 10), studies) <= _mc_bound(ALPHA, studies)


def test_naive_optional_stopping_would_inflate_the_error():
    # the same looks with an unadjusted test at each: the reason for the spending above
    rng = np.random.default_rng(7)
    studies, hits = 1000, 0
    for _ in range(studies):
        b, o = list(rng.normal(0, 1, 3)), list(rng.normal(0, 1, 3))
        while True:
            if compare(b, o).p_value <= ALPHA:
                hits += 1
                break
            if len(b) >= 10:
                break
            b.append(rng.normal())
            o.append(rng.normal())
    assert hits / studies > 0.08


def test_equivalence_is_found_when_the_effect_is_zero_and_delta_generous():
    rng = np.random.default_rng(3)
    studies, found = 1000, 0
    for _ in range(studies):
        decisions, _ = _study(rng, {}, (5, 5), sd=1.0, delta=6.0)
        found += sum(d.verdict == "equivalent" for d in decisions.values())
    assert found / (studies * len(ARMS)) >= 0.95


def test_adaptive_seeds_find_real_effects_with_fewer_trials():
    rng = np.random.default_rng(5)
    effects = {"a": 3.0, "b": 0.0, "c": 1.5}  # clearly better, equal, needs more seeds
    studies, right, trials = 300, 0, 0
    for _ in range(studies):
        decisions, n = _study(rng, effects, (3, 10), delta=2.0)
        trials += n
        right += decisions[("a", "m")].verdict == "better"
    assert right / studies >= 0.9
    assert trials / studies < 4 * 10  # fewer than every arm at max seeds


def test_combined_interval_covers_the_truth_under_binomial_evaluation_noise():
    rng = np.random.default_rng(11)
    for seed_sd in (0.0, 0.01, 0.03):  # none, small and large seed variance beside n = 200
        studies, covered = 2000, 0
        for _ in range(studies):
            base = [_seed_value(rng, 0.70, seed_sd, 200) for _ in range(3)]
            other = [_seed_value(rng, 0.73, seed_sd, 200) for _ in range(3)]
            c = compare([v for v, _ in base], [v for v, _ in other], 0.95,
                        [e for _, e in base], [e for _, e in other])
            covered += c.ci_low <= 0.03 <= c.ci_high
        assert covered / studies >= 0.93, (seed_sd, covered / studies)
