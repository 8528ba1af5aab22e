"""Every sweeps/**/*_smoke.yaml runs end to end through `ablab run` (real Ray, real MLflow),
and its report holds every variant with numbers."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ablab.cli import main
from ablab.records import StudyPaths, TrialState, load_records
from tests.conftest import REPO

SMOKE = sorted((REPO / "sweeps").rglob("*_smoke.yaml"))


@pytest.fixture(scope="session")
def smoke_storage(tmp_path_factory):
    """One results folder for every smoke study, shared by the xdist workers: the studies'
    shared stages (the reasoning smokes' zoo, the same three times) are built once, by
    whichever study asks first, under the stage cache's own cross-process lock, and
    reused by the others, as in a researcher's storage."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    return base / "smoke-results"


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE, ids=[p.stem for p in SMOKE])
def test_smoke_sweep_runs_end_to_end(path, ray_session, smoke_storage, tmp_path, capsys):
    data = yaml.safe_load(path.read_text())
    data["storage"] = str(smoke_storage)
    sweep = tmp_path / path.name
    sweep.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["run", str(sweep), "--no-live"])
    out = capsys.readouterr()
    assert code == 0, out.out[-3000:] + out.err[-3000:]

    paths = StudyPaths(smoke_storage, data["name"])
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
