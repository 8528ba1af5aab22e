"""Censoring in the open: stopped seeds are listed with their last value and step, never averaged."""

from __future__ import annotations

import pytest

from ablab.analysis import build
from ablab.cli import main
from ablab.records import TrialState, load_records

from .helpers import study_paths

pytestmark = pytest.mark.slow


def test_stopped_seeds_are_listed_and_short_arms_marked(ray_session, write_sweep, capsys):
    sweep = write_sweep("""
        name: censored
        trainable: synthetic
        base: {steps: 6, noise: 0.002, sleep_seconds: 0.1}
        ablations:
          - part: quality
            baseline: 0.9
            replacements: [0.2, 0.88]
        seeds: 2
        metric: val/score
        mode: max
        early_stopping: {type: margin, margin: 0.3, grace_period: 2}
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0, capsys.readouterr().out
    paths = study_paths(sweep, "censored")
    records = load_records(paths)
    hopeless = [r for r in records if r.spec.variant == "quality=0.2"]
    assert all(r.state == TrialState.STOPPED for r in hopeless)
    rows = {r.variant: r for r in build(paths).rows}
    low = rows["quality=0.2"]
    assert low.summary.n == 0 and low.below_min and low.verdict == "stopped early 2/2"
    assert [(c.seed, c.state) for c in low.censored] == [(0, "stopped"), (1, "stopped")]
    for c, r in zip(low.censored, sorted(hopeless, key=lambda r: r.spec.seed)):
        assert c.step == r.steps[-1] and c.last_value == pytest.approx(r.final("val/score"))
    assert not rows["quality=0.88"].censored and not rows["quality=0.88"].below_min
    md = (paths.report_dir / "report.md").read_text()
    assert f"seed 0 stopped at step {low.censored[0].step}" in md and "fewer seeds than planned" in md
