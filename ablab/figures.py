"""The report's figures: bars per ablation and learning curves per arm.

Each figure is written as PNG (for the HTML report and the MLflow UI) and as SVG and PDF
(vector, for a paper). The figures show the same trials and intervals as the tables:
bars are means over finished seeds, the whisker is the interval the verdict uses, and
stopped trials are drawn apart, never folded into a mean.
"""

from __future__ import annotations

import atexit
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ablab.analysis import Report, Row
from ablab.expand import BASELINE, context_label
from ablab.records import TrialRecord, TrialState

FORMATS = ("png", "svg", "pdf")
# The formats to draw, comma-separated (default: all of FORMATS). PNG is always drawn: the
# HTML report and MLflow show it. `ABLAB_FIGURE_FORMATS=png` leaves out the vector formats
# for quick iterations (each format is a full draw, and with more than one the drawing
# processes start: about 2 s of CPU a report); the test suite sets it where a test does
# not look at the vector files.
FORMATS_ENV = "ABLAB_FIGURE_FORMATS"
VERDICT_COLORS = {"baseline": "#6b6b6b", "better": "#2e9e5b", "worse": "#c8453b", "equivalent": "#b59a3c"}
OTHER_COLOR = "#6f9fd8"


def formats() -> tuple[str, ...]:
    """The formats to draw (FORMATS_ENV); raises UserError for one ablab does not draw."""
    from ablab.errors import UserError

    named = [f.strip().lower() for f in os.environ.get(FORMATS_ENV, ",".join(FORMATS)).split(",") if f.strip()]
    unknown = [f for f in named if f not in FORMATS]
    if unknown:
        raise UserError(f"{FORMATS_ENV} names a figure format ablab does not draw: {', '.join(unknown)}",
                        key=FORMATS_ENV, value=os.environ[FORMATS_ENV], allowed=", ".join(FORMATS))
    return tuple(f for f in FORMATS if f == "png" or f in named)


@dataclass(frozen=True)
class Figure:
    """One figure on disk, in every format drawn (`formats()`)."""

    stem: str
    """File name without extension (bars_0, curves)."""
    alt: str
    """What the figure shows, in words: the HTML alt text and the markdown image label."""

    @property
    def png(self) -> str:
        return f"{self.stem}.png"


def arm_records(report: Report, ctx: str, variant: str, state: TrialState) -> list[TrialRecord]:
    """An arm's trials in `state`; finished ones only when selected (those the means use)."""
    return [r for r in report.records
            if r.state == state and r.spec.variant == variant and context_label(r.spec.context) == ctx
            and (state != TrialState.FINISHED or r.spec.key in report.selected)]


def tick_label(report: Report, row: Row) -> str:
    """The arm's own value: '64 (baseline)', '16'; for a grid, the grid point."""
    if row.ablation == "grid":
        return row.variant
    if row.variant == BASELINE:
        base = next((a.baseline for a in report.study.ablations if a.part == row.ablation), None)
        value = context_label({"": base})[1:] if base is not None else ""
        return f"{value} (baseline)".strip()
    return row.variant.split("=", 1)[-1]


def _save(fig, out: Path, stem: str, formats: tuple[str, ...]) -> None:
    for fmt in formats:
        # bbox "tight" grows the canvas to fit rotated tick labels instead of clipping them
        fig.savefig(out / f"{stem}.{fmt}", dpi=120, bbox_inches="tight")


def _jitter(n: int, width: float = 0.22) -> list[float]:
    return [0.0] if n == 1 else [-width / 2 + width * i / (n - 1) for i in range(n)]


def bars(report: Report, out: Path, fmt_value, formats: tuple[str, ...] = FORMATS) -> dict[str, list[Figure]]:
    """One figure per (grid point, ablation), one panel per metric."""
    import matplotlib.pyplot as plt

    grouped: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in report.rows:
        grouped[(row.context, row.ablation)].append(row)
    files: dict[str, list[Figure]] = defaultdict(list)
    for i, ((ctx, part), rows) in enumerate(grouped.items()):
        metrics = list(dict.fromkeys(r.metric for r in rows))
        n_arms = max(len([r for r in rows if r.metric == m]) for m in metrics)
        fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2, 0.75 * n_arms + 1.6) * len(metrics), 3.8),
                                 squeeze=False)
        alt = []
        for ax, m in zip(axes[0], metrics):
            alt.append(_bar_panel(ax, report, [r for r in rows if r.metric == m], m, fmt_value))
        where = "" if ctx in ("all", "all grid points") else f" — {ctx}"
        fig.suptitle(f"{'grid' if part == 'grid' else part}{where}", fontsize=11)
        fig.tight_layout()
        handles: dict[str, object] = {}
        for ax in axes[0]:
            for h, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, h)
        # one legend under the panels: inside a panel it would hide bars or labels; none when
        # nothing was drawn (a study interrupted before any trial reported)
        if handles:
            fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                       ncol=min(len(handles), 4), fontsize=8, frameon=False)
        stem = f"bars_{i}"
        _save(fig, out, stem, formats)
        plt.close(fig)
        files[f"{ctx}|{part}"].append(Figure(stem, f"Bar chart, {part}{where}: " + "; ".join(alt)))
    return files


def _bar_panel(ax, report: Report, rows: list[Row], metric: str, fmt_value) -> str:
    base = next((r for r in rows if r.variant == BASELINE and r.summary.n), None)
    described = []
    for x, row in enumerate(rows):
        # a plain grid has one row per grid point, each the baseline config at that point
        ctx, variant = (row.variant, BASELINE) if row.ablation == "grid" else (row.context, row.variant)
        seeds = [v for v in (r.final(metric) for r in arm_records(report, ctx, variant, TrialState.FINISHED))
                 if v is not None]
        stopped = [v for v in (r.final(metric) for r in arm_records(report, ctx, variant, TrialState.STOPPED))
                   if v is not None]
        color = VERDICT_COLORS.get(row.verdict, OTHER_COLOR)
        if row.summary.n:
            ax.bar(x, row.summary.mean, width=0.6, color=color, alpha=0.8, zorder=1)
            c = row.comparison
            if c is not None and base is not None and not math.isnan(c.ci_low):
                # the interval of the difference to the baseline, drawn around the arm's mean:
                # where it crosses the dashed line (the baseline's mean), the difference is not clear
                lo, hi = base.summary.mean + c.ci_low, base.summary.mean + c.ci_high
                mean = base.summary.mean + c.diff
                ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="none", ecolor="black", capsize=5,
                            lw=1.2, zorder=3, label=f"{report.study.stats.confidence:.0%} CI of Δ vs baseline (unadjusted)")
            ax.scatter([x + d for d in _jitter(len(seeds))], seeds, s=14, color="black", zorder=4,
                       label="seed (finished)" if x == 0 else None)
            described.append(f"{tick_label(report, row)} {fmt_value(metric, row.summary.mean)} ({row.verdict})")
        else:  # no bar: the tick label says why (below the axis, where no mark can hide it)
            described.append(f"{tick_label(report, row)}: {row.verdict}")
        if stopped:
            ax.scatter([x + d for d in _jitter(len(stopped))], stopped, s=22, marker="x", color="#c8453b", zorder=4,
                       label="stopped early (last value, not in the mean)")
    if base is not None:
        ax.axhline(base.summary.mean, ls="--", lw=0.8, color="#444", zorder=2, label="baseline mean")
    labels = [tick_label(report, r) + ("" if r.summary.n else f"\n({r.verdict})") for r in rows]
    ax.set_xticks(range(len(rows)), labels, rotation=25, ha="right")
    ax.set_title(metric, fontsize=10)
    return f"{metric}: " + ", ".join(described)


def curves(report: Report, out: Path, formats: tuple[str, ...] = FORMATS) -> list[Figure]:
    """The selection metric over steps: per arm the mean over finished seeds with a band
    (± one std over seeds), and each stopped trial as a thin dashed line up to where it stopped."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    metric = report.study.metric
    contexts = list(dict.fromkeys(context_label(r.spec.context) for r in report.records))
    if not contexts:  # no trial has started yet (a study interrupted at once): nothing to draw
        return []
    fig, axes = plt.subplots(1, len(contexts), figsize=(max(6.5, 5.0 * len(contexts)), 4.0), squeeze=False)
    arms = list(dict.fromkeys(r.spec.variant for r in report.records))
    colors = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(arms)}
    alt = []
    for ax, ctx in zip(axes[0], contexts):
        for variant in arms:
            finished = [r for r in arm_records(report, ctx, variant, TrialState.FINISHED) if r.curve(metric)[0]]
            stopped = [r for r in arm_records(report, ctx, variant, TrialState.STOPPED) if r.curve(metric)[0]]
            label = variant
            if finished:
                steps = sorted({s for r in finished for s in r.curve(metric)[0]})
                values = [[r.history[s][metric] for r in finished if metric in r.history.get(s, {})] for s in steps]
                mean = np.array([np.mean(v) for v in values])
                std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
                ax.plot(steps, mean, color=colors[variant], lw=2.2 if variant == BASELINE else 1.4,
                        label=f"{label} (n={len(finished)})")
                ax.fill_between(steps, mean - std, mean + std, color=colors[variant], alpha=0.15, lw=0)
                alt.append(f"{variant} ends at {mean[-1]:.3g}")
            for j, r in enumerate(stopped):
                xs, ys = r.curve(metric)
                ax.plot(xs, ys, color=colors[variant], lw=0.8, ls="--",
                        label=f"{label} (stopped)" if j == 0 and not finished else None)
            if stopped:
                alt.append(f"{variant}: {len(stopped)} stopped early")
        if len(contexts) > 1:
            ax.set_title(ctx, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"{metric}: mean over finished seeds, band ± 1 std; dashed: stopped early", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "curves", formats)
    plt.close(fig)
    return [Figure("curves", f"Learning curves of {metric} per arm: " + "; ".join(alt))]


def draw(report: Report, out: Path, fmt_value) -> dict[str, list[Figure]]:
    """Every figure of the report: key 'context|ablation' for bars, 'curves' for the curves.

    With more than one format, each is drawn in a process of its own, side by side:
    matplotlib draws a figure anew for every file, and at the end of a study the driver
    would otherwise draw them one after another on one core while the others idle
    (seconds, most of what the command waits for after the table). The driver then draws
    none itself, so it never imports matplotlib (0.4 s). `fmt_value` must pickle (a
    module-level function or a partial of one). Where processes cannot be had, or only
    PNG is drawn, they are drawn here."""
    out = Path(out).resolve()  # the drawing processes have the folder they were started in
    wanted = formats()
    if len(wanted) == 1:
        return _draw_formats(report, out, fmt_value, wanted)
    try:
        pool = _format_pool()
        jobs = {fmt: pool.submit(_draw_formats, report, out, fmt_value, (fmt,)) for fmt in wanted}
    except Exception:  # noqa: BLE001 - no processes here (a sandbox, a broken pool): all drawn here
        return _draw_formats(report, out, fmt_value, wanted)
    files: dict[str, list[Figure]] = {}
    for fmt, job in jobs.items():
        try:
            drawn = job.result()
        except Exception:  # noqa: BLE001 - its process died: drawn here instead
            drawn = _draw_formats(report, out, fmt_value, (fmt,))
        files = files or drawn  # every format's list names the same figures
    return files


def _draw_formats(report: Report, out: Path, fmt_value, formats: tuple[str, ...]) -> dict[str, list[Figure]]:
    import matplotlib

    matplotlib.use("Agg")
    files = bars(report, out, fmt_value, formats)
    if any(r.history for r in report.records):
        files["curves"] = curves(report, out, formats)
    return files


_POOL = None


def _format_pool():
    """Processes that draw figures, forked from a forkserver that has imported matplotlib
    and this module already (a clean process: the caller's threads, Ray's and gRPC's
    among them, are not forked with it); made once per process."""
    global _POOL
    if _POOL is None:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["ablab.figures", "ablab.report", "matplotlib.pyplot"])
        _POOL = concurrent.futures.ProcessPoolExecutor(len(FORMATS), mp_context=context, initializer=_end_with,
                                                       initargs=(os.getpid(),))
        # shut down before the interpreter tears its modules down: collected after that,
        # the pool prints "Exception ignored in weakref_cb" on the way out (Python 3.11)
        atexit.register(_shutdown_pool)
    return _POOL


def _end_with(owner: int) -> None:
    """In each drawing process: end when the process that made the pool ends. A driver
    killed with SIGKILL (`kill -9`, the OOM killer) runs no exit hook, and the drawing
    processes would wait on their queue forever, the forkserver with them (each holds the
    forkserver's keep-alive pipe): four processes (66-91 MB RSS each, ~90 MB of memory
    together) left behind per killed study."""
    import select
    import threading
    import time

    def wait_then_exit() -> None:
        try:
            fd = os.pidfd_open(owner)  # Linux >= 5.3: readable once the process has ended
            select.select([fd], [], [])
        except OSError:  # no pidfd here (or the owner is gone already): ask once a second
            while True:
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    break
                except PermissionError:  # alive, another user's
                    pass
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=wait_then_exit, name="ablab-end-with-owner", daemon=True).start()


def _shutdown_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def prestart() -> None:
    """Start the drawing processes now, without waiting for them (their imports take about
    a second of CPU), so that the report at the end does not wait for them; called while
    the trials run."""
    try:
        if len(formats()) == 1:  # drawn in the driver
            return
        pool = _format_pool()
        for _ in range(len(FORMATS)):
            pool.submit(int)
    except Exception:  # noqa: BLE001 - `draw` falls back to drawing here
        pass
