"""The ablation report rendered: tables (markdown, HTML, JSON) and plots.

The numbers and verdicts come from ablab/analysis.py; this module only renders them.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from ablab.analysis import Report, Row, build, not_averaged
from ablab.expand import BASELINE, context_label
from ablab.records import StudyPaths, TrialRecord



def _num(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.4g}"


def table_rows(report: Report) -> dict[tuple[str, str], list[list[str]]]:
    """(context, ablation) -> table rows of strings, shared by markdown and HTML."""
    tables: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for row in report.rows:
        c = row.comparison
        tables[(row.context, row.ablation)].append([
            row.variant, row.metric, str(row.summary.n), str(row.summary),
            "" if c is None else f"{_num(c.diff)} [{_num(c.ci_low)}, {_num(c.ci_high)}]",
            "" if c is None or math.isnan(row.p_adjusted) else f"{row.p_adjusted:.3g}",
            "" if c is None or math.isnan(row.mde) else f"{row.mde:.3g}",
            notes(row),
            row.verdict,
        ])
    return tables


def notes(row: Row) -> str:
    """Chosen tuned values with their wins, censored seeds, an arm short of seeds."""
    out = []
    if row.tuned:
        out.append("tuned: " + ", ".join(f"{v} ({n}×)" for v, n in sorted(row.tuned.items(), key=lambda x: -x[1])))
    for c in row.censored:
        last = "-" if c.last_value is None else f"{c.last_value:.4g}"
        out.append(f"seed {c.seed} {c.state} at step {c.step if c.step is not None else '-'} ({last})")
    if row.below_min:
        out.append("fewer seeds than planned")
    return "; ".join(out)


HEADER = ["variant", "metric", "n", "mean ± std", "Δ vs baseline [CI]", "p (adjusted)", "MDE (80%)", "notes", "verdict"]


def to_markdown(report: Report, plots: dict[str, list[str]] | None = None, pictures: dict[str, str] | None = None) -> str:
    s = report.study
    c = report.counts
    lines = [
        f"# Ablation report: {s.name}",
        "",
        s.description.strip() or "",
        "",
        f"Trainable `{s.trainable}`, seeds {s.seeds}, selection metric `{s.metric}` ({s.mode}). "
        f"Trials: {len(report.records)} — {c['finished']} finished, {c['stopped']} stopped early, "
        f"{c['failed']} failed, {c['running'] + c['pending']} not done. "
        + report.methods,
        "",
    ]
    for (ctx, part), rows in table_rows(report).items():
        title = "Grid" if part == "grid" else f"Ablation `{part}`"
        lines += [f"## {title} — {ctx}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        for p in (plots or {}).get(f"{ctx}|{part}", []):
            lines += ["", f"![{part} {ctx}]({p})"]
        lines.append("")
    for p in (plots or {}).get("curves", []):
        lines += [f"![learning curves]({p})", ""]
    if pictures:
        lines += ["## Pictures (first seed of each variant)", ""]
        for label, p in pictures.items():
            lines += [f"**{label}**", "", f"![{label}]({p})", ""]
    apart = not_averaged(report)
    if apart:
        lines += ["## Trials not in the means", "", "| trial | state | last step | reason |", "|---|---|---|---|"]
        for r in apart:
            step = r.steps[-1] if r.steps else "-"
            lines.append(f"| {r.spec.key} | {r.state.value} | {step} | {(r.error or '').replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def to_html(report: Report, plots: dict[str, list[str]], pictures: dict[str, str]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(report.study.name)} — ablab report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "td.better{background:#dfd}td.worse{background:#fdd}img{max-width:100%}</style></head><body>",
        f"<h1>Ablation report: {e(report.study.name)}</h1><p>{e(report.study.description)}</p>",
        "<p>" + e(", ".join(f"{k}: {v}" for k, v in report.counts.items())) + "</p>",
    ]
    for (ctx, part), rows in table_rows(report).items():
        parts.append(f"<h2>{'Grid' if part == 'grid' else 'Ablation ' + e(part)} — {e(ctx)}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in HEADER] + ["</tr>"]
        for r in rows:
            parts.append("<tr>" + "".join(
                f"<td class='{e(cell) if i == len(r) - 1 else ''}'>{e(cell)}</td>" for i, cell in enumerate(r)
            ) + "</tr>")
        parts.append("</table>")
        parts += [f"<img src='{e(p)}'>" for p in plots.get(f"{ctx}|{part}", [])]
    parts += [f"<img src='{e(p)}'>" for p in plots.get("curves", [])]
    for label, p in pictures.items():
        parts.append(f"<h3>{e(label)}</h3><img src='{e(p)}'>")
    apart = not_averaged(report)
    if apart:
        parts.append("<h2>Trials not in the means</h2><table><tr><th>trial</th><th>state</th><th>reason</th></tr>")
        parts += [f"<tr><td>{e(r.spec.key)}</td><td>{r.state.value}</td><td>{e(r.error or '')}</td></tr>" for r in apart]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_json(report: Report) -> dict:
    return {
        "study": report.study.name,
        "counts": report.counts,
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


# ------------------------------------------------------------------------ plots


def plot(report: Report, out: Path) -> dict[str, list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, list[str]] = defaultdict(list)
    grouped: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in report.rows:
        grouped[(row.context, row.ablation)].append(row)
    for i, ((ctx, part), rows) in enumerate(grouped.items()):
        metrics = list(dict.fromkeys(r.metric for r in rows))
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
        for ax, m in zip(axes[0], metrics):
            mrows = [r for r in rows if r.metric == m]
            colors = ["#555" if r.variant == BASELINE else ("#2a7" if r.verdict == "better" else "#c44" if r.verdict == "worse" else "#79c") for r in mrows]
            ax.bar(range(len(mrows)), [r.summary.mean for r in mrows], yerr=[r.summary.std for r in mrows],
                   color=colors, capsize=4)
            base_value = next((a.baseline for a in report.study.ablations if a.part == part), None)
            labels = [f"{base_value} (baseline)" if r.variant == BASELINE and base_value is not None
                      else r.variant.split("=", 1)[-1] for r in mrows]
            ax.set_xticks(range(len(mrows)), labels, rotation=30, ha="right")
            ax.set_title(m)
        fig.suptitle(f"{part} — {ctx} (mean ± std over seeds)")
        fig.tight_layout()
        name = f"bars_{i}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files[f"{ctx}|{part}"].append(name)
    # learning curves of the selection metric, one panel per grid point
    metric = report.study.metric
    contexts = list(dict.fromkeys(context_label(r.spec.context) for r in report.records))
    fig, axes = plt.subplots(1, len(contexts), figsize=(max(7.5, 5.5 * len(contexts)), 4.2), squeeze=False)
    for ax, ctx in zip(axes[0], contexts):
        curves: dict[str, list[TrialRecord]] = defaultdict(list)
        for r in report.records:
            if context_label(r.spec.context) == ctx and r.history:
                curves[r.spec.variant].append(r)
        for variant, recs in curves.items():
            steps = sorted({s for r in recs for s in r.curve(metric)[0]})
            mean = []
            for s in steps:
                vals = [r.history[s][metric] for r in recs if s in r.history and metric in r.history[s]]
                mean.append(sum(vals) / len(vals))
            ax.plot(steps, mean, label=variant, lw=2 if variant == BASELINE else 1)
        ax.set_title(ctx)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{metric}: mean over seeds (stopped trials included)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    files["curves"].append("curves.png")
    return files


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
            found[f"{variant} — {ctx} (seed {r.spec.seed}): {png.stem}"] = name
    return found


def artifact_folder(paths: StudyPaths, key: str) -> Path:
    from ablab.trial import safe_name

    return paths.dir / "artifacts" / safe_name(key)


def write(paths: StudyPaths, out: Path | None = None) -> tuple[Report, Path]:
    out = Path(out) if out else paths.report_dir
    out.mkdir(parents=True, exist_ok=True)
    report = build(paths)
    plots = plot(report, out)
    pics = pictures(report, paths, out)
    (out / "report.md").write_text(to_markdown(report, plots, pics))
    (out / "report.html").write_text(to_html(report, plots, pics))
    (out / "report.json").write_text(json.dumps(to_json(report), indent=2, default=str))
    return report, out
