"""Summaries and comparisons against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ablab.stats import compare, summarize


def test_summary_is_mean_and_sample_std():
    s = summarize([1.0, 2.0, 4.0])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert math.isnan(summarize([5.0]).std) and summarize([]).n == 0
    assert str(summarize([5.0])) == "5 (1 seed)"  # never "± 0"


def test_welch_interval_matches_the_formula():
    b, o = np.array([0.50, 0.52, 0.49]), np.array([0.60, 0.63, 0.58, 0.61])
    c = compare(b, o)
    vb, vo = b.var(ddof=1) / len(b), o.var(ddof=1) / len(o)
    se = math.sqrt(vb + vo)
    df = (vb + vo) ** 2 / (vb**2 / (len(b) - 1) + vo**2 / (len(o) - 1))
    t = sps.t.ppf(0.975, df)
    diff = o.mean() - b.mean()
    assert c.diff == pytest.approx(diff)
    assert (c.ci_low, c.ci_high) == pytest.approx((diff - t * se, diff + t * se))
    assert c.beyond_noise


def test_overlapping_noise_is_not_beyond_noise():
    c = compare([0.5, 0.6, 0.4], [0.52, 0.41, 0.63])
    assert c.ci_low < 0 < c.ci_high and not c.beyond_noise


def test_single_seed_gives_no_interval():
    c = compare([0.5], [0.6, 0.7])
    assert c.diff == pytest.approx(0.15) and math.isnan(c.ci_low) and not c.beyond_noise


def test_zero_seed_variance_uses_the_evaluation_noise():
    # 3 identical seeds per arm on a 200-example test set: the test set alone has se ~0.033
    from ablab.stats import evaluation_variance

    ev = [evaluation_variance(0.695, 200)] * 3, [evaluation_variance(0.700, 200)] * 3
    c = compare([0.695] * 3, [0.700] * 3, baseline_eval=ev[0], other_eval=ev[1])
    assert c.p_value > 0.5 and c.ci_low < 0 < c.ci_high
    assert c.se == pytest.approx(math.sqrt(0.695 * 0.305 / 200 / 3 + 0.7 * 0.3 / 200 / 3), rel=0.02)


def test_zero_seed_variance_without_evaluation_noise_gives_no_verdict():
    c = compare([0.695] * 3, [0.700] * 3)
    assert math.isnan(c.p_value) and math.isnan(c.ci_low) and not c.beyond_noise


def test_holm_matches_the_step_down_definition():
    from ablab.stats import holm

    p = [0.01, 0.04, 0.03, math.nan, 0.005]
    adj = holm(p)
    # sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1 (monotone)
    assert adj[4] == pytest.approx(0.02) and adj[0] == pytest.approx(0.03)
    assert adj[2] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06) and math.isnan(adj[3])


def test_issue_example_does_not_survive_holm():
    from ablab.stats import holm

    assert min(holm([0.046, 0.036, 0.4, 0.7])) > 0.05


def test_tost_and_verdicts():
    from ablab.stats import verdict

    c = compare([0.50, 0.51, 0.49, 0.50], [0.50, 0.505, 0.495, 0.50], smallest_effect=0.05)
    assert c.p_equivalent < 0.01
    assert verdict(c.diff, 0.9, c.p_equivalent, 0.05, "max") == "equivalent"
    assert verdict(0.1, 0.01, math.nan, 0.05, "max") == "better"
    assert verdict(0.1, 0.01, math.nan, 0.05, "min") == "worse"
    assert verdict(0.1, 0.2, math.nan, 0.05, "max") == "inconclusive"


def test_spending_sums_to_one_and_fixed_seeds_spend_all_at_once():
    from ablab.stats import spending

    shares = spending(3, 10)
    assert sum(shares.values()) == pytest.approx(1) and list(shares) == list(range(3, 11))
    assert spending(5, 5) == {5: pytest.approx(1)}


def test_minimum_detectable_effect_shrinks_with_seeds():
    from ablab.stats import minimum_detectable_effect

    rng = np.random.default_rng(1)
    few = compare(rng.normal(0, 1, 3), rng.normal(0, 1, 3))
    many = compare(rng.normal(0, 1, 30), rng.normal(0, 1, 30))
    assert minimum_detectable_effect(many.se, many.df, 0.05) < minimum_detectable_effect(few.se, few.df, 0.05)
    # with many seeds, close to the normal formula (1.96 + 0.84) * se
    assert minimum_detectable_effect(many.se, many.df, 0.05) == pytest.approx(2.8 * many.se, rel=0.05)


def test_each_metric_is_its_own_family_for_holm():
    """Descriptive metrics listed beside the primary one must not change its adjusted
    p-values or its minimum detectable effect."""
    from ablab.stats import Arm, decide_table

    base = {"acc": Arm((0.70, 0.71, 0.69)), "kept": Arm((100.0, 110.0, 90.0))}
    arms = {("a", "acc"): Arm((0.76, 0.77, 0.75)), ("b", "acc"): Arm((0.70, 0.72, 0.69))}
    alone = decide_table({"acc": base["acc"]}, arms, {"acc": "max"})
    more = dict(arms)
    for i in range(10):  # ten descriptive rows: 2 arms x 5 metrics
        for v in ("a", "b"):
            base[f"kept{i}"] = base["kept"]
            more[(v, f"kept{i}")] = Arm((50.0 + i, 55.0, 45.0))
    pooled = decide_table(base, more, {m: "max" for m in base})
    for key in arms:
        assert pooled[key].p_adjusted == pytest.approx(alone[key].p_adjusted)
        assert pooled[key].mde == pytest.approx(alone[key].mde)
    assert alone[("a", "acc")].verdict == "better"
    # within one metric the arms are still adjusted together: more than the raw p-value
    assert alone[("b", "acc")].p_adjusted >= alone[("b", "acc")].comparison.p_value
