"""Mean ± std over seeds, and whether a difference to the baseline beats the noise.

The difference of means gets a 95% confidence interval from Welch's t-test (unequal
variances, the honest choice with 3-5 seeds per arm); "beyond noise" means the interval
excludes zero. With fewer than 2 seeds on either side there is no interval to give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 when n == 1

    def __str__(self) -> str:
        return "-" if self.n == 0 else f"{self.mean:.4g} ± {self.std:.2g}"


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean(other) - mean(baseline)
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def beyond_noise(self) -> bool:
        return not (math.isnan(self.ci_low) or self.ci_low <= 0 <= self.ci_high)


def summarize(values) -> Summary:
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(int(x.size), float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0)


def compare(baseline, other, confidence: float = 0.95) -> Comparison:
    from scipy import stats

    b = np.asarray(list(baseline), dtype=float)
    o = np.asarray(list(other), dtype=float)
    if b.size == 0 or o.size == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan)
    diff = float(o.mean() - b.mean())
    if b.size < 2 or o.size < 2:
        return Comparison(diff, math.nan, math.nan, math.nan)
    if b.std() == 0 and o.std() == 0:  # no noise at all: the interval is the point
        p = 1.0 if diff == 0 else 0.0
        return Comparison(diff, diff, diff, p)
    res = stats.ttest_ind(o, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Comparison(diff, float(ci.low), float(ci.high), float(res.pvalue))
