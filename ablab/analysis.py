"""The ablation analysis: from the trial records to table rows with verdicts.

Which trials count. With `tune:` every arm x seed runs each tuned value and only the one
best on the selection metric (validation) is selected; the others never enter the table.
Only finished, selected trials enter the means. A seed without a finished trial (stopped
early, failed) is censored: it is listed on its arm's rows with its last validation value
and step, and an arm with fewer surviving seeds than the study's minimum is marked, so a
verdict resting on fewer seeds than planned is visible. Rendering (markdown, HTML, JSON,
plots) lives in ablab/report.py and only reads these rows.

How verdicts are reached is ablab/stats.py: an interval combining seed and evaluation
noise, Holm-adjusted p-values over each table's arms x metrics, TOST equivalence against
`stats.smallest_effect`, and sequential p-values for adaptive seeds.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from ablab.expand import BASELINE, context_label
from ablab.records import StudyPaths, TrialRecord, TrialState, load_records
from ablab.spec import Study, parse_study
from ablab.stats import Arm, Comparison, Summary, decide_table, evaluation_variance, summarize

SEEDS_FILE = "seeds.json"  # the adaptive-seed searcher's log, in the study folder


@dataclass(frozen=True)
class Censored:
    """A seed of an arm with no finished trial: what it had reached when it ended."""

    seed: int
    state: str  # stopped | failed | running | pending
    last_value: float | None  # of the study's selection metric
    step: int | None


@dataclass(frozen=True)
class Row:
    context: str
    ablation: str  # the ablated part, or "grid" for a study without ablations
    variant: str
    metric: str
    summary: Summary
    comparison: Comparison | None  # None for the baseline row
    verdict: str  # baseline | better | worse | equivalent | inconclusive | n<2 | no data | why missing
    p_adjusted: float = math.nan  # the p-value the verdict uses (Holm-adjusted unless correction: none)
    p_equivalent_adjusted: float = math.nan  # TOST, adjusted likewise; NaN without a smallest effect
    mde: float = math.nan  # the smallest effect this row's seeds detect with 80% power
    seeds: tuple[int, ...] = ()  # the seeds in the mean
    tuned: dict[str, int] = field(default_factory=dict)  # chosen tuned value -> seeds it won
    censored: tuple[Censored, ...] = ()  # seeds left out of the mean, with their last value
    below_min: bool = False  # fewer surviving seeds than the study's (minimum) seeds


@dataclass(frozen=True)
class Report:
    study: Study
    records: list[TrialRecord]
    rows: list[Row]
    methods: str = ""  # one paragraph: what was combined, adjusted, selected
    selected: frozenset[str] = frozenset()  # keys of the trials that enter the tables

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TrialState}
        for r in self.records:
            out[r.state.value] += 1
        return out


def load_study_of(paths: StudyPaths) -> Study:
    import yaml

    return parse_study(yaml.safe_load(paths.sweep_file.read_text()), str(paths.sweep_file))


def directions(study: Study) -> dict[str, str]:
    """max|min per metric, as the trainable declares them now: only for a study folder that
    predates `directions` in study.json (the study's mode is the fallback after that)."""
    try:
        from ablab import registry

        return dict(registry.load(study.trainable).METRICS)
    except Exception:  # noqa: BLE001 - a report must not need the trainable's dependencies
        return {}


def seeds_log(paths: StudyPaths) -> dict:
    f = paths.dir / SEEDS_FILE
    return json.loads(f.read_text()) if f.exists() else {}


def planned(study: Study, records: list[TrialRecord], paths: StudyPaths | None) -> list[TrialRecord]:
    """The records of trials that are part of the study: with adaptive seeds, seeds beyond
    `min` that the searcher never asked for (once it finished) were not needed, not missed."""
    if not study.adaptive_seeds or paths is None or not seeds_log(paths).get("finished"):
        return records
    low = study.adaptive_seeds[0]
    return [r for r in records if not (r.state == TrialState.PENDING and r.spec.seed >= low)]


def select(study: Study, records: list[TrialRecord]) -> dict[str, bool]:
    """Per trial key, whether it enters the table: per arm and seed, the finished trial best
    on the selection metric among the tuned values (decided once all of them ended)."""
    sign = 1.0 if study.mode == "max" else -1.0
    groups: dict[tuple, list[TrialRecord]] = defaultdict(list)
    for r in records:
        groups[(context_label(r.spec.context), r.spec.variant, r.spec.seed)].append(r)
    chosen: dict[str, bool] = {}
    for group in groups.values():
        for r in group:
            chosen[r.spec.key] = False
        if not all(r.state.is_done for r in group):
            continue  # a tuned value still running could win
        done = [r for r in group if r.state == TrialState.FINISHED and r.final(study.metric) is not None]
        if done:
            best = max(done, key=lambda r: sign * r.final(study.metric))
            chosen[best.spec.key] = True
    return chosen


def build(paths: StudyPaths) -> Report:
    from ablab.records import directions as saved_directions

    study = load_study_of(paths)
    return analyse(study, planned(study, load_records(paths), paths), saved_directions(paths) or None)


def analyse(study: Study, records: list[TrialRecord], direction: dict[str, str] | None = None) -> Report:
    """`direction`: max|min per metric as saved at prepare time (study.json); else the trainable's."""
    direction = direction if direction is not None else directions(study)
    chosen = select(study, records)
    alpha = 1 - study.stats.confidence
    by_arm: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.spec.seed):
        if chosen.get(r.spec.key):
            by_arm[(context_label(r.spec.context), r.spec.variant)].append(r)
    minimum = study.adaptive_seeds[0] if study.adaptive_seeds else len(study.seed_list)
    contexts = list(dict.fromkeys(context_label(r.spec.context) for r in records))
    rows: list[Row] = []
    for ctx in contexts:
        if not study.ablations:  # a plain grid: one table, a row per grid point
            for m in study.report_metrics:
                s = summarize(_values(by_arm[(ctx, BASELINE)], m))
                rows.append(Row("all grid points", "grid", ctx, m, s, None,
                                "" if s.n else _missing(records, ctx, BASELINE),
                                **_arm_facts(study, records, by_arm, ctx, BASELINE, minimum)))
            continue
        for a in study.ablations:
            metrics = a.metrics or study.report_metrics
            arms = [v for v in dict.fromkeys(r.spec.variant for r in records) if _part_of(records, v) == a.part]
            baseline = {m: _arm(by_arm[(ctx, BASELINE)], m) for m in metrics}
            decisions = decide_table(
                baseline, {(v, m): _arm(by_arm[(ctx, v)], m) for v in arms for m in metrics},
                {m: direction.get(m, study.mode) for m in metrics}, alpha, study.stats.correction,
                study.stats.smallest_effect, study.adaptive_seeds,
            )
            for m in metrics:
                for v in [BASELINE, *arms]:
                    s = summarize(_values(by_arm[(ctx, v)], m))
                    facts = _arm_facts(study, records, by_arm, ctx, v, minimum)
                    if v == BASELINE:
                        verdict = "baseline" if s.n else _missing(records, ctx, v)
                        rows.append(Row(ctx, a.part, v, m, s, None, verdict, **facts))
                        continue
                    d = decisions[(v, m)]
                    n_base = len(baseline[m].values)
                    if s.n == 0 or n_base == 0:
                        verdict = _missing(records, ctx, v) if s.n == 0 else "no data"
                    elif s.n < 2 or n_base < 2:
                        verdict = "n<2"
                    else:
                        verdict = d.verdict
                    rows.append(Row(ctx, a.part, v, m, s, d.comparison, verdict, d.p_adjusted,
                                    d.p_equivalent_adjusted, d.mde, **facts))
    selected = frozenset(k for k, ok in chosen.items() if ok)
    return Report(study, records, rows, methods(study, rows), selected)


def methods(study: Study, rows: list[Row]) -> str:
    """What the table's numbers are, in one paragraph."""
    conf = f"{study.stats.confidence:.0%}"
    comparisons = defaultdict(int)
    for r in rows:
        if r.comparison is not None and not math.isnan(r.comparison.p_value):
            comparisons[(r.context, r.ablation, r.metric)] += 1
    family = max(comparisons.values(), default=0)
    parts = [
        f"Means over seeds of finished trials; Δ = mean(arm) − mean(baseline) with a {conf} Welch interval "
        "whose per-seed variance combines seed variance and evaluation-sampling variance (the between-seed "
        "variance, floored at the variance the evaluation set's size implies when a trainable reports `m:n`).",
        (f"p-values are Holm-adjusted over the arms of each table, per metric (up to {family} comparisons); "
         if study.stats.correction == "holm" else "p-values are not adjusted for multiple comparisons; ")
        + f"better/worse means adjusted p ≤ {1 - study.stats.confidence:.2g}.",
    ]
    if study.stats.smallest_effect:
        deltas = ", ".join(f"{m}: ±{d:g}" for m, d in study.stats.smallest_effect.items())
        parts.append(f"Equivalent: two one-sided tests show the difference inside ({deltas}), adjusted likewise.")
    parts.append("MDE: the smallest true difference each row's seeds detect with 80% power at the "
                 "table's Bonferroni level.")
    if study.adaptive_seeds:
        lo, hi = study.adaptive_seeds
        parts.append(f"Adaptive seeds ({lo} to {hi}): seeds were added only to arms (and the baseline) with an "
                     "open verdict; each arm's p-value is sequential (alpha spent over its looks), so the "
                     "error rate holds under this optional stopping.")
    tuned = sorted(set(study.tune) | {k for a in study.ablations for k in a.tune})
    if tuned:
        parts.append(f"Tuned per arm and seed ({', '.join(tuned)}): the value best on {study.metric} "
                     f"({study.mode}) is selected; only selected trials are in the table.")
    return " ".join(parts)


def _arm(records: list[TrialRecord], metric: str) -> Arm:
    values, eval_vars = [], []
    for r in records:
        v = r.final(metric)
        if v is None:
            continue
        values.append(v)
        eval_vars.append(evaluation_variance(v, r.final(f"{metric}:n"), r.final(f"{metric}:sd")))
    return Arm(tuple(values), tuple(eval_vars))


def _arm_facts(study: Study, records: list[TrialRecord], by_arm, ctx: str, variant: str, minimum: int) -> dict:
    chosen = by_arm[(ctx, variant)]
    arm = [r for r in records if r.spec.variant == variant and context_label(r.spec.context) == ctx]
    survived = {r.spec.seed for r in chosen}
    tuned: dict[str, int] = defaultdict(int)
    for r in chosen:
        if r.spec.tune:
            tuned[context_label(r.spec.tune)] += 1
    censored = []
    sign = 1.0 if study.mode == "max" else -1.0
    for seed in sorted({r.spec.seed for r in arm} - survived):
        trials = [r for r in arm if r.spec.seed == seed]
        if all(r.state == TrialState.PENDING for r in trials):
            continue
        reached = [r for r in trials if r.final(study.metric) is not None]
        best = max(reached, key=lambda r: sign * r.final(study.metric)) if reached else trials[0]
        state = next((s for s in (TrialState.STOPPED, TrialState.FAILED, TrialState.RUNNING)
                      if any(r.state == s for r in trials)), TrialState.PENDING)
        censored.append(Censored(seed, state.value, best.final(study.metric), best.steps[-1] if best.steps else None))
    return {"seeds": tuple(sorted(survived)), "tuned": dict(tuned), "censored": tuple(censored),
            "below_min": len(survived) < minimum}


def _missing(records: list[TrialRecord], ctx: str, variant: str) -> str:
    """Why an arm has no value: e.g. 'stopped early 3/3', or a metric its trials never
    reported (an undefined quantity, such as a false positive rate of an empty set)."""
    arm = [r for r in records if r.spec.variant == variant and context_label(r.spec.context) == ctx]
    counts = defaultdict(int)
    for r in arm:
        counts[r.state.value] += 1
    if arm and counts.get("finished") == len(arm):
        return "not reported"
    return "; ".join(f"{'stopped early' if k == 'stopped' else k} {n}/{len(arm)}" for k, n in counts.items()) or "no data"


def _part_of(records: list[TrialRecord], variant: str) -> str | None:
    for r in records:
        if r.spec.variant == variant:
            return r.spec.ablation
    return None


def _values(records: list[TrialRecord], metric: str) -> list[float]:
    return [v for v in (r.final(metric) for r in records) if v is not None]


def not_averaged(report: Report) -> list[TrialRecord]:
    return [r for r in report.records if r.state != TrialState.FINISHED]
