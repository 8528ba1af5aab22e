"""Every sweeps/**/*_smoke.yaml runs end to end through `ablab run` (real Ray, real MLflow),
and its report holds every variant with numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from ablab.cli import main
from ablab.records import StudyPaths, TrialState, load_records
from tests.conftest import REPO

SMOKE = sorted((REPO / "sweeps").rglob("*_smoke.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE, ids=[p.stem for p in SMOKE])
def test_smoke_sweep_runs_end_to_end(path, ray_session, tmp_path, capsys):
    data = yaml.safe_load(path.read_text())
    data["storage"] = str(tmp_path / "results")
    sweep = tmp_path / path.name
    sweep.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["run", str(sweep), "--no-live"])
    out = capsys.readouterr()
    assert code == 0, out.out[-3000:] + out.err[-3000:]

    paths = StudyPaths(tmp_path / "results", data["name"])
    records = load_records(paths)
    assert records and all(r.state == TrialState.FINISHED for r in records), [
        (r.spec.key, r.state, r.error) for r in records]
    report = json.loads((paths.report_dir / "report.json").read_text())
    variants = {r.spec.variant for r in records}
    reported = {row["variant"] for row in report["rows"]}
    assert variants <= reported | {r.spec.context_label for r in records}
    # the selection and test metrics have numbers for every arm; other metrics may be
    # undefined at smoke scale (the false positive rate of an empty kept set) and say so
    for row in report["rows"]:
        if row["metric"] == data["metric"] or row["metric"].startswith("test/"):
            assert row["summary_n"] >= 1, row
        else:
            assert row["summary_n"] >= 1 or row["verdict"] == "not reported", row
    md = (paths.report_dir / "report.md").read_text()
    if data["trainable"] == "distill":
        assert "## Pictures" in md and list(paths.report_dir.glob("pic_*.png"))
        assert any(row["metric"] == "test/acc_cross" for row in report["rows"])
