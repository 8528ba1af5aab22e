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
    assert summarize([5.0]).std == 0 and summarize([]).n == 0


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
