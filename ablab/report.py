"""The ablation report rendered: markdown, a self-contained HTML page, JSON, a LaTeX table,
a CSV of every trial, and figures (ablab/figures.py).

The numbers and verdicts come from ablab/analysis.py; this module only renders them. All
formats share one set of table cells, so a number reads the same in every one of them.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import html
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ablab.analysis import Report, Row, build, not_averaged
from ablab.expand import BASELINE, context_label
from ablab.figures import Figure, draw
from ablab.records import StudyPaths, TrialRecord, TrialState, read_study_file

HEADER = ["variant", "metric", "n", "mean ± std", "Δ vs baseline [CI]", "p (adjusted)", "MDE (80%)", "notes",
          "verdict"]
NO_VALUE = "—"


# ------------------------------------------------------------------------ numbers


def metric_decimals(rows: list[Row]) -> dict[str, int]:
    """Decimals per metric: two significant digits of its typical spread (the median of the
    arms' std and interval half-widths), so that a mean is not printed more precisely than
    the seeds can tell apart. Without any spread, three significant digits of the values."""
    spreads: dict[str, list[float]] = defaultdict(list)
    magnitudes: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.summary.n:
            magnitudes[r.metric].append(abs(r.summary.mean))
        if r.summary.n > 1 and r.summary.std > 0:
            spreads[r.metric].append(r.summary.std)
        c = r.comparison
        if c is not None and _finite(c.ci_low) and c.ci_high > c.ci_low:
            spreads[r.metric].append((c.ci_high - c.ci_low) / 2)
    out = {}
    for m in {r.metric for r in rows}:
        if spreads[m]:
            typical = sorted(spreads[m])[len(spreads[m]) // 2]
            d = 1 - math.floor(math.log10(typical))
        else:
            top = max((x for x in magnitudes[m] if x > 0), default=1.0)
            d = 2 - math.floor(math.log10(top))
        out[m] = min(max(d, 0), 6)
    return out


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def fixed(x: float | None, d: int, sign: bool = False) -> str:
    if not _finite(x):
        return NO_VALUE
    text = f"{x:+.{d}f}" if sign else f"{x:.{d}f}"
    return text.replace("-", "−") if sign else text


def p_text(p: float | None) -> str:
    if not _finite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.2g}"


@dataclass(frozen=True)
class Cells:
    """One table row as text, the same in markdown, HTML, LaTeX and the terminal."""

    arm: str
    """The arm: its variant, or for the baseline its value ("model.width=64 (baseline)")."""
    variant: str
    """The variant name as in the trial records (links and CSS use it)."""
    metric: str
    n: str
    mean: str
    diff: str
    p: str
    mde: str
    notes: str
    verdict: str

    def as_list(self) -> list[str]:
        return [self.arm, self.metric, self.n, self.mean, self.diff, self.p, self.mde, self.notes, self.verdict]


def arm_label(report: Report, row: Row) -> str:
    if row.variant != BASELINE or row.ablation == "grid":
        return row.variant
    a = next((a for a in report.study.ablations if a.part == row.ablation), None)
    return f"{context_label({a.part: a.baseline})} (baseline)" if a else BASELINE


def cells(report: Report, row: Row, d: int) -> Cells:
    s, c = row.summary, row.comparison
    if s.n == 0:
        mean = NO_VALUE
    elif s.n == 1:  # a single seed has no spread to show
        mean = f"{fixed(s.mean, d)} ± {NO_VALUE}"
    else:
        mean = f"{fixed(s.mean, d)} ± {fixed(s.std, d)}"
    diff = ""
    if c is not None and _finite(c.diff):
        interval = f" [{fixed(c.ci_low, d, True)}, {fixed(c.ci_high, d, True)}]" if _finite(c.ci_low) else ""
        diff = fixed(c.diff, d, True) + interval
    return Cells(arm_label(report, row), row.variant, row.metric, str(s.n), mean, diff,
                 p_text(row.p_adjusted) if c is not None else "",
                 fixed(row.mde, d) if c is not None and _finite(row.mde) else "", notes(row, d), row.verdict)


def notes(row: Row, d: int) -> str:
    """Chosen tuned values with their wins, censored seeds, an arm short of seeds."""
    out = []
    if row.tuned:
        out.append("tuned: " + ", ".join(f"{v} ({n}×)" for v, n in sorted(row.tuned.items(), key=lambda x: -x[1])))
    for c in row.censored:
        step = "" if c.step is None else f" at step {c.step}"
        out.append(f"seed {c.seed} {c.state}{step} ({fixed(c.last_value, d)})")
    if row.below_min:
        out.append("fewer seeds than planned")
    return "; ".join(out)


def tables(report: Report) -> dict[tuple[str, str], list[Cells]]:
    """(context, ablation) -> rows of cells, in the order of the analysis."""
    d = metric_decimals(report.rows)
    out: dict[tuple[str, str], list[Cells]] = defaultdict(list)
    for row in report.rows:
        out[(row.context, row.ablation)].append(cells(report, row, d[row.metric]))
    return out


def table_title(ctx: str, part: str) -> str:
    title = "Grid" if part == "grid" else f"Ablation `{part}`"
    return title if ctx == "all" else f"{title} — {ctx}"


def methods(report: Report) -> str:
    """How the numbers were made, in one paragraph (goes into every format): the study, then
    the analysis' own account of its statistics, then how to read the figures."""
    s, c = report.study, report.counts
    seeds = s.seed_list
    return (
        f"Trainable `{s.trainable}`, {len(seeds)} seed(s) per arm ({', '.join(map(str, seeds))}), "
        f"selection metric `{s.metric}` ({s.mode}), early stopping: {s.early_stopping.type}. "
        f"Trials: {len(report.records)} — {c['finished']} finished, {c['stopped']} stopped early, "
        f"{c['failed']} failed, {c['running'] + c['pending']} not done. "
        "Each value is a trial's last reported value; stopped, failed and not selected trials are "
        f"listed apart. {report.methods} A single seed has no spread (± —). In the bar charts the "
        "whisker is the unadjusted interval of Δ, drawn around the arm's mean, and the dashed line is "
        "the baseline's mean."
    )


# ------------------------------------------------------------------------ links into MLflow


@dataclass(frozen=True)
class Links:
    """Where the study's runs are in the MLflow UI."""

    base: str
    """The UI's address: `ablab ui`'s default for a local store, or the tracking server."""
    experiment_id: str
    parent_id: str

    def study(self) -> str:
        from ablab.tracking import runs_url

        return runs_url(self.base, self.experiment_id, self.parent_id)

    def arm(self, variant: str) -> str:
        from ablab.tracking import PARENT_TAG, TAG_VARIANT, runs_url

        return runs_url(self.base, self.experiment_id, self.parent_id,
                        f"tags.`{PARENT_TAG}` = '{self.parent_id}' and tags.`{TAG_VARIANT}` = '{variant}'")


def mlflow_links(paths: StudyPaths) -> Links | None:
    from ablab.tracking import DEFAULT_UI, Tracker

    try:
        record = read_study_file(paths)
        uri = record["tracking_uri"]
        tracker = Tracker(uri, record["experiment"])
        exp = tracker.client.get_experiment_by_name(record["experiment"])
    except Exception:  # noqa: BLE001 - a report must not need a reachable tracking store
        return None
    if exp is None:
        return None
    base = uri if uri.startswith(("http://", "https://")) else DEFAULT_UI
    return Links(base, exp.experiment_id, record["parent_run_id"])


# ------------------------------------------------------------------------ markdown


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_tables(report: Report, links: Links | None = None,
                    figures: dict[str, list[Figure]] | None = None) -> list[str]:
    lines: list[str] = []
    for (ctx, part), rows in tables(report).items():
        lines += [f"## {table_title(ctx, part)}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        for r in rows:
            arm = f"[{_md(r.arm)}]({links.arm(r.variant)})" if links and part != "grid" else _md(r.arm)
            lines.append("| " + " | ".join([arm] + [_md(x) for x in r.as_list()[1:]]) + " |")
        for f in (figures or {}).get(f"{ctx}|{part}", []):
            lines += ["", f"![{_md(f.alt)}]({f.png})"]
        lines.append("")
    return lines


def not_in_the_means(report: Report) -> list[TrialRecord]:
    """Trials that ended early, failed, or lost the selection among tuned values."""
    skipped = [r for r in report.records if r.state == TrialState.FINISHED and r.spec.key not in report.selected]
    return not_averaged(report) + skipped


def apart_rows(report: Report) -> list[list[str]]:
    """Trials not in the means: arm, seed, state, last step, last value, reason."""
    metric = report.study.metric
    out = []
    for r in not_in_the_means(report):
        ctx = context_label(r.spec.context)
        arm = r.spec.variant if ctx == "all" else f"{ctx}, {r.spec.variant}"
        last = r.final(metric)
        out.append([arm, str(r.spec.seed), r.state.value, str(r.steps[-1]) if r.steps else NO_VALUE,
                    NO_VALUE if last is None else f"{last:.4g}", reason(r)])
    return out


def reason(r: TrialRecord) -> str:
    if r.error:
        return r.error
    if r.state == TrialState.FINISHED:
        return "not selected: another tuned value was better on validation"
    return {
        TrialState.STOPPED: f"stopped early by the scheduler after step {r.steps[-1] if r.steps else 0}",
        TrialState.RUNNING: "not finished (interrupted or still running)",
        TrialState.PENDING: "not started",
        TrialState.FAILED: "failed (no error recorded)",
    }.get(r.state, "")


APART_HEADER = ["arm", "seed", "state", "last step", "last value", "reason"]


def to_markdown(report: Report, figures: dict[str, list[Figure]] | None = None,
                pictures: dict[str, str] | None = None, links: Links | None = None) -> str:
    s = report.study
    lines = [f"# Ablation report: {s.name}", ""]
    if s.description.strip():
        lines += [s.description.strip(), ""]
    lines += [methods(report), ""]
    if links:
        lines += [f"MLflow: [all runs of this study, grouped by arm]({links.study()})", ""]
    lines += markdown_tables(report, links, figures)
    for f in (figures or {}).get("curves", []):
        lines += [f"![{_md(f.alt)}]({f.png})", ""]
    if pictures:
        lines += ["## Pictures (first seed of each variant)", ""]
        for label, p in pictures.items():
            lines += [f"**{label}**", "", f"![{label}]({p})", ""]
    apart = apart_rows(report)
    if apart:
        lines += ["## Trials not in the means", "", "| " + " | ".join(APART_HEADER) + " |",
                  "|" + "---|" * len(APART_HEADER)]
        lines += ["| " + " | ".join(_md(x) for x in row) + " |" for row in apart]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------ HTML


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}td.num{text-align:right;white-space:nowrap}
td.better{background:#dfd}td.worse{background:#fdd}img{max-width:100%;display:block;margin:1em 0}
p.methods{color:#444;font-size:0.95em;max-width:60em}"""


def _inline(path: Path) -> str:
    """An image as a data URI, so the page shows it wherever it is sent."""
    mime = {"png": "image/png", "svg": "image/svg+xml", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(
        path.suffix.lstrip(".").lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _img(out: Path, name: str, alt: str) -> str:
    e = html.escape
    return f"<img src='{_inline(out / name)}' alt='{e(alt, quote=True)}'>"


def _md_code(text: str) -> str:
    """Backticks of the shared text as <code>, the rest escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(report: Report, figures: dict[str, list[Figure]], pictures: dict[str, str], out: Path,
            links: Links | None = None) -> str:
    e = html.escape
    s = report.study
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(s.name)} — ablab report</title><style>{CSS}</style></head><body>",
        f"<h1>Ablation report: {e(s.name)}</h1>",
    ]
    if s.description.strip():
        parts.append(f"<p>{e(s.description.strip())}</p>")
    parts.append(f"<p class='methods'>{_md_code(methods(report))}</p>")
    if links:
        parts.append(f"<p>MLflow: <a href='{e(links.study(), quote=True)}'>all runs of this study, grouped by arm</a></p>")
    for (ctx, part), rows in tables(report).items():
        parts.append(f"<h2>{_md_code(table_title(ctx, part))}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in HEADER] + ["</tr>"]
        for r in rows:
            arm = e(r.arm)
            if links and part != "grid":
                arm = f"<a href='{e(links.arm(r.variant), quote=True)}'>{arm}</a>"
            numbers = "".join(f"<td class='num'>{e(x)}</td>" for x in (r.n, r.mean, r.diff, r.p, r.mde))
            parts.append(
                f"<tr><td>{arm}</td><td>{e(r.metric)}</td>{numbers}<td>{e(r.notes)}</td>"
                f"<td class='{e(r.verdict, quote=True)}'>{e(r.verdict)}</td></tr>")
        parts.append("</table>")
        parts += [_img(out, f.png, f.alt) for f in figures.get(f"{ctx}|{part}", [])]
    parts += [_img(out, f.png, f.alt) for f in figures.get("curves", [])]
    if pictures:
        parts.append("<h2>Pictures (first seed of each variant)</h2>")
    for label, p in pictures.items():
        parts.append(f"<h3>{e(label)}</h3>{_img(out, p, label)}")
    apart = apart_rows(report)
    if apart:
        parts.append("<h2>Trials not in the means</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in APART_HEADER) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in row) + "</tr>" for row in apart]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------ LaTeX, CSV, JSON


TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "±": r"$\pm$", "−": r"$-$", "—": "--", "Δ": r"$\Delta$", "<": r"$<$"}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(report: Report) -> str:
    """One booktabs table per ablation (needs \\usepackage{booktabs})."""
    out = [f"% ablab report: {report.study.name}. Needs \\usepackage{{booktabs}}.", ""]
    for (ctx, part), rows in tables(report).items():
        title = table_title(ctx, part).replace("`", "")
        out += [
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{{tex_escape(title)}. Mean $\pm$ std over finished seeds; $\Delta$ vs the baseline "
            rf"with a {tex_escape(f'{report.study.stats.confidence:.0%}')} Welch interval; p adjusted as in the methods.}}",
            r"\begin{tabular}{llrrrrrll}", r"\toprule",
            " & ".join(tex_escape(h) for h in HEADER) + r" \\", r"\midrule",
        ]
        metric = None
        for r in rows:
            if metric is not None and r.metric != metric:
                out.append(r"\midrule")
            metric = r.metric
            out.append(" & ".join(tex_escape(x) for x in r.as_list()) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_trials_csv(report: Report, path: Path) -> None:
    """One row per trial: its arm and seed, how it ended, its config and last metrics."""
    from ablab.tracking import flatten

    configs = [flatten(r.spec.config) for r in report.records]
    metrics = sorted({m for r in report.records for step in r.history.values() for m in step})
    config_keys = sorted({k for c in configs for k in c})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "context", "variant", "seed", "state", "last_step", "error"]
                   + [f"config.{k}" for k in config_keys] + metrics)
        for r, c in zip(report.records, configs):
            w.writerow([r.spec.key, context_label(r.spec.context), r.spec.variant, r.spec.seed, r.state.value,
                        r.steps[-1] if r.steps else "", r.error or ""]
                       + [json.dumps(c[k]) if isinstance(c.get(k), (list, dict)) else c.get(k, "") for k in config_keys]
                       + ["" if r.final(m) is None else r.final(m) for m in metrics])


def to_json(report: Report) -> dict:
    return {
        "study": report.study.name,
        "counts": report.counts,
        "methods": methods(report),
        "rows": [
            {**{k: v for k, v in asdict(r).items() if k not in ("summary", "comparison")},
             **{f"summary_{k}": v for k, v in asdict(r.summary).items()},
             **({f"{k}": v for k, v in asdict(r.comparison).items()} if r.comparison else {})}
            for r in report.rows
        ],
        "trials": [
            {"key": r.spec.key, "state": r.state.value, "error": r.error, "steps": len(r.history),
             "final": r.history[r.steps[-1]] if r.steps else {}}
            for r in report.records
        ],
    }


# ------------------------------------------------------------------------ files


def pictures(report: Report, paths: StudyPaths, out: Path) -> dict[str, str]:
    """The PNGs trials saved with `trial.artifact_dir()`, first seed of each arm."""
    import shutil

    found: dict[str, str] = {}
    first_seed: dict[tuple[str, str], TrialRecord] = {}
    for r in report.records:
        arm = (context_label(r.spec.context), r.spec.variant)
        if arm not in first_seed or r.spec.seed < first_seed[arm].spec.seed:
            first_seed[arm] = r
    for (ctx, variant), r in first_seed.items():
        folder = artifact_folder(paths, r.spec.key)
        for png in sorted(folder.glob("*.png")) if folder.exists() else []:
            name = f"pic_{len(found)}_{png.name}"
            shutil.copyfile(png, out / name)
            where = "" if ctx == "all" else f" — {ctx}"
            found[f"{variant}{where} (seed {r.spec.seed}): {png.stem}"] = name
    return found


def artifact_folder(paths: StudyPaths, key: str) -> Path:
    from ablab.trial import safe_name

    return paths.dir / "artifacts" / safe_name(key)


def formatter(report: Report):
    """value formatter for figures: the same decimals as the tables."""
    return functools.partial(_format_value, metric_decimals(report.rows))


def _format_value(decimals: dict[str, int], metric: str, x: float) -> str:
    return fixed(x, decimals.get(metric, 3))


def write(paths: StudyPaths, out: Path | None = None, publish: bool = True,
          report: Report | None = None) -> tuple[Report, Path]:
    """Every report file into `out` (default: the study's report/ folder); with `publish`,
    the study's parent run in MLflow gets the tables as its description and the files as
    artifacts (a tracking store that cannot be reached only costs a warning). `report`:
    the study's analysis if the caller built it already (`analysis.build(paths)`)."""
    out = Path(out) if out else paths.report_dir
    out.mkdir(parents=True, exist_ok=True)
    report = report if report is not None else build(paths)
    links = mlflow_links(paths)
    figures = draw(report, out, formatter(report))
    pics = pictures(report, paths, out)
    (out / "report.md").write_text(to_markdown(report, figures, pics, links))
    (out / "report.html").write_text(to_html(report, figures, pics, out, links))
    (out / "report.json").write_text(json.dumps(to_json(report), indent=2, default=str))
    (out / "report.tex").write_text(to_latex(report))
    write_trials_csv(report, out / "trials.csv")
    if publish and links is not None:
        try:
            publish_to_mlflow(report, paths, out, links)
        except Exception as exc:  # noqa: BLE001 - the files are written; MLflow is a copy
            print(f"warning: could not publish the report to MLflow ({type(exc).__name__}: {exc})")
    return report, out


def study_params(report: Report) -> dict[str, str]:
    """Study-level settings as the parent run's params (the sweep file's names)."""
    from ablab.tracking import flatten

    settings = report.study.model_dump(mode="json", exclude={"name", "description", "base", "grid", "ablations",
                                                             "storage", "tracking"})
    params = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in flatten(settings).items()}
    params["ablations"] = ", ".join(a.part for a in report.study.ablations) or "(none)"
    params["grid"] = ", ".join(report.study.grid) or "(none)"
    params["trials"] = str(len(report.records))
    return params


def publish_to_mlflow(report: Report, paths: StudyPaths, out: Path, links: Links) -> None:
    from ablab.tracking import Tracker, arms_view

    record = read_study_file(paths)
    tracker = Tracker(record["tracking_uri"], record["experiment"])
    parent = tracker.client.get_run(links.parent_id)
    commit = parent.data.tags.get("git.commit", "unknown")
    description = "\n".join([
        f"**Ablation study {report.study.name}**", "", methods(report), "",
        f"The full report (HTML with figures, markdown, LaTeX, CSV) is in this run's artifacts under report/.", "",
        *markdown_tables(report, links),
    ])
    tracker.publish(
        links.parent_id, description, study_params(report),
        tags={"mlflow.source.git.commit": commit, "ablab.sweep_hash": _file_hash(paths.sweep_file),
              "ablab.fingerprint": record.get("fingerprint", "")},
        artifacts=out,
        view=arms_view(report.study, links.parent_id),
    )


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else ""
