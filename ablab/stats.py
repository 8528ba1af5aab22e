"""The statistics behind an ablation verdict: pure functions, no Ray, no MLflow.

Noise. An arm's value on one seed is its seed's true value plus the evaluation set's
sampling error. We use a variance-components interval rather than a hierarchical
bootstrap: with the 3-10 seeds of an ablation a bootstrap over seeds cannot see more
spread than the few values it resamples (3 identical values resample to zero width),
while the t interval keeps its small-sample calibration. The between-seed sample
variance s² estimates seed variance + evaluation variance; the evaluation part alone is
known from what the trainable reported (a proportion's n, or a per-example sd), so the
per-seed variance used is max(s², mean evaluation variance). The floor only widens the
interval, and it never lets a deterministic evaluation (all seeds equal) produce a zero
denominator. Without any evaluation information and with s² = 0 there is no noise
estimate at all, and no verdict. The seeds' evaluation errors are treated as independent
(each seed's model errs on its own examples); seeds that share one test set and make
nearly the same mistakes share their error too, which this floor then understates.

Decisions. Two-sided Welch tests give p-values for "the arm differs from the baseline";
two one-sided tests (TOST) against ±δ (the smallest effect of interest) give p-values for
"the arm is equivalent". Both families are Holm-adjusted over the arms × metrics of one
table. Adaptive seeds look at an arm several times (after k = min, min+1, ..., max seeds);
each look k gets a fixed share f_k of the error rate (Lan-DeMets spending with the Pocock-
type function ln(1 + (e - 1) t), t = k / max), and the arm's sequential p-value is
min_k p_k / f_k. By the union bound P(min_k p_k / f_k <= a) <= sum_k a f_k = a whatever
rule decided when to stop looking, so it is a valid p-value for Holm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr, stdtrit

POWER = 0.8  # the power at which a row's minimum detectable effect is stated


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation over seeds (ddof=1); NaN when n < 2: no spread is known

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.4g} (1 seed)"
        return f"{self.mean:.4g} ± {self.std:.2g}"


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean(other) - mean(baseline)
    ci_low: float  # the unadjusted interval at the study's confidence
    ci_high: float
    p_value: float  # two-sided, unadjusted (for adaptive seeds: the sequential p-value)
    se: float = math.nan  # standard error of diff, seed and evaluation noise combined
    df: float = math.nan
    p_equivalent: float = math.nan  # TOST against ±smallest_effect (NaN: no smallest effect given)

    @property
    def beyond_noise(self) -> bool:
        return not (math.isnan(self.ci_low) or self.ci_low <= 0 <= self.ci_high)


def summarize(values) -> Summary:
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(int(x.size), float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan)


def evaluation_variance(value: float, n: float | None, sd: float | None = None) -> float:
    """Variance of one seed's value caused by the evaluation set being a sample of n examples.

    A proportion (n given, no sd) is binomial; its p is shrunk towards 1/2 (Laplace) so that
    an accuracy of exactly 0 or 1 still carries the uncertainty of a finite test set."""
    if n is None or not n or n <= 0 or math.isnan(n):
        return 0.0
    if sd is not None and not math.isnan(sd):
        return float(sd) ** 2 / n
    p = (value * n + 1) / (n + 2)
    return p * (1 - p) / n


def arm_variance(values: Sequence[float], eval_vars: Sequence[float] = ()) -> float:
    """Per-seed variance of an arm: seed variance, floored at the known evaluation variance."""
    floor = sum(eval_vars) / len(eval_vars) if len(eval_vars) else 0.0
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    s2 = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    if s2 <= (1e-9 * max(abs(mean), 1.0)) ** 2:  # rounding of equal floats, not seed noise
        s2 = 0.0
    return max(s2, floor)


def compare(baseline, other, confidence: float = 0.95, baseline_eval=(), other_eval=(),
            smallest_effect: float | None = None) -> Comparison:
    """Welch comparison of two arms' per-seed values; `*_eval` are per-seed evaluation variances."""
    b = np.asarray(list(baseline), dtype=float)
    o = np.asarray(list(other), dtype=float)
    if b.size == 0 or o.size == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan)
    diff = float(o.mean() - b.mean())
    if b.size < 2 or o.size < 2:  # one seed says nothing about seed variance
        return Comparison(diff, math.nan, math.nan, math.nan)
    vb, vo = arm_variance(b, list(baseline_eval)) / b.size, arm_variance(o, list(other_eval)) / o.size
    se2 = vb + vo
    if not se2 > 0:  # no noise estimate at all: no interval, no verdict
        return Comparison(diff, math.nan, math.nan, math.nan)
    se = math.sqrt(se2)
    df = se2**2 / (vb**2 / (b.size - 1) + vo**2 / (o.size - 1))
    # scipy.special's t functions: the simulation tests call this hundreds of thousands of times
    t = float(stdtrit(df, 0.5 + confidence / 2))
    p = float(2 * stdtr(df, -abs(diff) / se))
    p_eq = math.nan
    if smallest_effect is not None:
        # TOST: both "diff > -δ" and "diff < +δ" must be shown; the larger p decides
        p_eq = float(max(stdtr(df, -(diff + smallest_effect) / se), stdtr(df, (diff - smallest_effect) / se)))
    return Comparison(diff, diff - t * se, diff + t * se, p, se, float(df), p_eq)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment; NaN p-values (no test) are left out of the family."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def minimum_detectable_effect(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at level `alpha` detects with `power`."""
    if math.isnan(se) or math.isnan(df):
        return math.nan
    return float((stdtrit(df, 1 - alpha / 2) + stdtrit(df, power)) * se)


def spending(min_seeds: int, max_seeds: int) -> dict[int, float]:
    """Share of the error rate spent at the look after k seeds, k = min..max (sums to 1)."""
    def cumulative(k: int) -> float:
        return math.log(1 + (math.e - 1) * k / max_seeds)

    return {k: (cumulative(k) if k == min_seeds else cumulative(k) - cumulative(k - 1))
            for k in range(min_seeds, max_seeds + 1)}


def sequential_p(p_by_look: dict[int, float], shares: dict[int, float]) -> float:
    """The arm's p-value over its looks: min_k p_k / f_k, capped at 1 (NaN when no look tested)."""
    ratios = [p / shares[k] for k, p in p_by_look.items() if not math.isnan(p) and k in shares]
    return min(1.0, min(ratios)) if ratios else math.nan


def verdict(diff: float, p_adjusted: float, p_equivalent_adjusted: float, alpha: float, mode: str) -> str:
    """better | worse | equivalent | inconclusive, from Holm-adjusted p-values."""
    if not math.isnan(p_adjusted) and p_adjusted <= alpha:
        return "better" if (diff > 0) == (mode == "max") else "worse"
    if not math.isnan(p_equivalent_adjusted) and p_equivalent_adjusted <= alpha:
        return "equivalent"
    return "inconclusive"


@dataclass(frozen=True)
class Arm:
    """One arm's per-seed observations on one metric, in seed order."""

    values: tuple[float, ...]
    eval_vars: tuple[float, ...] = ()


@dataclass(frozen=True)
class Decision:
    comparison: Comparison
    p_adjusted: float
    p_equivalent_adjusted: float
    verdict: str
    mde: float  # minimum detectable effect at 80% power, at the Bonferroni level of its metric's family


def decide_table(baseline: dict[str, Arm], arms: dict[tuple[str, str], Arm], modes: dict[str, str],
                 alpha: float = 0.05, correction: str = "holm", smallest_effect: dict[str, float] | None = None,
                 seeds: tuple[int, int] | None = None) -> dict[tuple[str, str], Decision]:
    """Verdicts for every (arm, metric) of one table against the baseline (per metric).

    With `seeds=(min, max)` (adaptive seeds) each arm is looked at after every k in min..max
    seeds it has, comparing its first k seeds with the baseline's first k, and its p-values
    are the sequential ones; otherwise one look with all seeds.
    """
    smallest_effect = smallest_effect or {}
    keys = list(arms)
    comps, p_diff, p_eq = {}, [], []
    for key in keys:
        metric = key[1]
        b, o, delta = baseline[metric], arms[key], smallest_effect.get(metric)
        full = compare(b.values, o.values, 1 - alpha, b.eval_vars, o.eval_vars, delta)
        if seeds is not None and seeds[0] < seeds[1]:
            shares = spending(*seeds)
            looks = {}
            for k in range(seeds[0], min(len(b.values), len(o.values), seeds[1]) + 1):
                looks[k] = compare(b.values[:k], o.values[:k], 1 - alpha, b.eval_vars[:k], o.eval_vars[:k], delta)
            full = Comparison(full.diff, full.ci_low, full.ci_high,
                              sequential_p({k: c.p_value for k, c in looks.items()}, shares),
                              full.se, full.df,
                              sequential_p({k: c.p_equivalent for k, c in looks.items()}, shares))
        comps[key] = full
        p_diff.append(full.p_value)
        p_eq.append(full.p_equivalent)
    # One family per metric: the arms compared with the baseline on it. A table lists
    # descriptive metrics beside the one the study is about (how many samples a filter
    # kept, its false-positive rate); pooling them into one family would charge the
    # primary comparison for every descriptive row (48 comparisons for 4 arms x 12
    # metrics) and report a minimum detectable effect no design could reach.
    adj_diff, adj_eq = list(p_diff), list(p_eq)
    family: dict[str, int] = {}
    for metric in dict.fromkeys(k[1] for k in keys):
        idx = [i for i, k in enumerate(keys) if k[1] == metric]
        if correction == "holm":
            for i, a, e in zip(idx, holm([p_diff[i] for i in idx]), holm([p_eq[i] for i in idx])):
                adj_diff[i], adj_eq[i] = a, e
            family[metric] = max(1, sum(not math.isnan(p_diff[i]) for i in idx))
        else:
            family[metric] = 1
    out = {}
    for i, key in enumerate(keys):
        c = comps[key]
        out[key] = Decision(c, adj_diff[i], adj_eq[i], verdict(c.diff, adj_diff[i], adj_eq[i], alpha, modes[key[1]]),
                            minimum_detectable_effect(c.se, c.df, alpha / family[key[1]]))
    return out


def open_arms(decisions: dict[tuple[str, str], Decision]) -> set[str]:
    """Arms with a metric whose verdict is still inconclusive: the ones that need more seeds."""
    return {arm for (arm, _), d in decisions.items() if d.verdict == "inconclusive"}
