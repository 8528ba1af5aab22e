"""The ablation analysis: from the trial records to table rows with verdicts.

Only trials that finished enter the means. Early-stopped and failed trials are listed
apart with their reason, so nothing is averaged in (or dropped) silently. Rendering
(markdown, HTML, JSON, plots) lives in ablab/report.py and only reads these rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ablab.expand import BASELINE, context_label
from ablab.records import StudyPaths, TrialRecord, TrialState, load_records
from ablab.spec import Study, parse_study
from ablab.stats import Comparison, Summary, compare, summarize


@dataclass(frozen=True)
class Row:
    context: str
    ablation: str  # the ablated part, or "grid" for a study without ablations
    variant: str
    metric: str
    summary: Summary
    comparison: Comparison | None  # None for the baseline row
    verdict: str  # baseline | better | worse | within noise | n<2 | no data


@dataclass(frozen=True)
class Report:
    study: Study
    records: list[TrialRecord]
    rows: list[Row]

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
    """max|min per metric, as the trainable declares them (the study's mode as fallback)."""
    try:
        from ablab import registry

        return dict(registry.load(study.trainable).METRICS)
    except Exception:  # noqa: BLE001 - a report must not need the trainable's dependencies
        return {}


def build(paths: StudyPaths) -> Report:
    study = load_study_of(paths)
    records = load_records(paths)
    direction = directions(study)
    finished = [r for r in records if r.state == TrialState.FINISHED]
    by_arm: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
    for r in finished:
        by_arm[(context_label(r.spec.context), r.spec.variant)].append(r)
    contexts = list(dict.fromkeys(context_label(r.spec.context) for r in records))
    rows: list[Row] = []
    for ctx in contexts:
        if not study.ablations:  # a plain grid: one table, a row per grid point
            for m in study.report_metrics:
                s = summarize(_values(by_arm[(ctx, BASELINE)], m))
                rows.append(Row("all grid points", "grid", ctx, m, s, None,
                                "" if s.n else _missing(records, ctx, BASELINE)))
            continue
        for a in study.ablations:
            metrics = a.metrics or study.report_metrics
            arms = [BASELINE] + [
                v for v in dict.fromkeys(r.spec.variant for r in records) if _part_of(records, v) == a.part
            ]
            for m in metrics:
                base_vals = _values(by_arm[(ctx, BASELINE)], m)
                for v in arms:
                    vals = _values(by_arm[(ctx, v)], m)
                    s = summarize(vals)
                    if v == BASELINE:
                        verdict = "baseline" if s.n else _missing(records, ctx, v)
                        rows.append(Row(ctx, a.part, v, m, s, None, verdict))
                        continue
                    c = compare(base_vals, vals)
                    verdict = _verdict(c, s, len(base_vals), direction.get(m, study.mode))
                    if s.n == 0:
                        verdict = _missing(records, ctx, v)
                    rows.append(Row(ctx, a.part, v, m, s, c, verdict))
    return Report(study, records, rows)


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


def _verdict(c: Comparison, s: Summary, n_base: int, mode: str) -> str:
    if s.n == 0 or n_base == 0:
        return "no data"
    if s.n < 2 or n_base < 2:
        return "n<2"
    if not c.beyond_noise:
        return "within noise"
    return "better" if (c.diff > 0) == (mode == "max") else "worse"


def not_averaged(report: Report) -> list[TrialRecord]:
    return [r for r in report.records if r.state != TrialState.FINISHED]
