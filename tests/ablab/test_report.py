"""The report's files and the MLflow parent run, from a study folder written by hand.

The study folder is the real thing (sweep.yaml, study.json, trial event logs, a SQLite
MLflow store) with chosen values, so every case a report must render is there without
running Ray: stopped and failed trials, an arm with one seed, seeds that agree to the
last digit, a "|" in an error message.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml

from ablab import report as report_mod
from ablab.console import duration
from ablab.expand import expand
from ablab.progress import eta_seconds
from ablab.records import EventLog, StudyPaths, write_json_atomic
from ablab.spec import load_study
from ablab.tracking import CLASSIC_ML, EXPERIMENT_KIND_TAG, NOTE_TAG, SHARED_VIEW_TAG, Tracker, run_name, view_key

SWEEP = """
    name: hand
    description: A study written by hand.
    trainable: synthetic
    ablations:
      - part: quality
        baseline: 0.9
        replacements: [0.5, 0.7, 0.8]
      - part: rate
        baseline: 0.5
        replacements: [0.3]
    seeds: 3
    metric: val/score
    mode: max
    metrics: [val/score, test/score]
    early_stopping: {type: margin, margin: 0.2, grace_period: 2}
"""

ONE_ULP = 0.9000000000000001  # 0.9 and its next float: seeds that agree to the last digit
ERROR = "ValueError: val/score is nan at step 2 | worker 3"

# (variant, seed) -> (state, last val/score, last test/score)
OUTCOMES = {
    ("baseline", 0): ("finished", 0.9, 0.812), ("baseline", 1): ("finished", ONE_ULP, 0.834),
    ("baseline", 2): ("finished", 0.9, 0.821),
    ("quality=0.5", 0): ("stopped", 0.41, 0.40), ("quality=0.5", 1): ("stopped", 0.43, 0.42),
    ("quality=0.5", 2): ("stopped", 0.42, 0.41),
    ("quality=0.7", 0): ("finished", 0.7012, 0.689), ("quality=0.7", 1): ("stopped", 0.45, 0.44),
    ("quality=0.7", 2): ("failed", None, None),
    ("quality=0.8", 0): ("finished", ONE_ULP, 0.80), ("quality=0.8", 1): ("finished", 0.9, 0.81),
    ("quality=0.8", 2): ("finished", 0.9, 0.79),
    ("rate=0.3", 0): ("finished", 0.8123, 0.7981), ("rate=0.3", 1): ("finished", 0.8174, 0.8065),
    ("rate=0.3", 2): ("finished", 0.8098, 0.8012),
}


@pytest.fixture
def study(tmp_path, mlflow_template) -> StudyPaths:
    sweep = tmp_path / "hand.yaml"
    sweep.write_text(textwrap.dedent(SWEEP) + f"\nstorage: {tmp_path / 'results'}\n")
    spec = load_study(sweep)
    trials = expand(spec, str(sweep))
    paths = StudyPaths(tmp_path / "results", "hand")
    paths.dir.mkdir(parents=True)
    shutil.copyfile(mlflow_template, paths.mlflow_db)  # the schema, made once per session
    paths.sweep_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    tracker = Tracker(paths.default_tracking_uri, "hand", artifact_location=paths.mlflow_artifacts.resolve().as_uri())
    parent = tracker.start_parent("hand", paths.sweep_file, tags={"git.commit": "abc123"})
    write_json_atomic(paths.study_file, {
        "name": "hand", "fingerprint": "f" * 16, "created": "now", "source_file": str(sweep),
        "tracking_uri": paths.default_tracking_uri, "experiment": "hand", "parent_run_id": parent,
        "trials": [t.to_json() for t in trials],
    })
    log = EventLog(paths)
    for i, t in enumerate(trials):
        state, val, test = OUTCOMES[(t.variant, t.seed)]
        tid = f"t{i:02d}"
        log.append(tid, {"event": "start", "spec": t.to_json()})
        last = 2 if state == "stopped" else 4
        for step in range(1, last + 1):
            if val is None:
                break
            frac = step / last
            log.append(tid, {"event": "result", "step": step,
                             "metrics": {"val/score": val * frac, "test/score": test * frac}})
        log.append(tid, {"event": "end", "state": state, **({"error": ERROR} if state == "failed" else {})})
    return paths


def _md_cells(line: str) -> list[str]:
    """A markdown table row's cells: split on '|' that is not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _table(md: str, heading: str) -> list[list[str]]:
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [_md_cells(line) for line in block.splitlines() if line.startswith("|")]
    return rows[2:]  # without header and rule


def _decimals(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def test_numbers_read_alike_and_baseline_names_its_value(study):
    rep, out = report_mod.write(study, publish=False)
    md = (out / "report.md").read_text()
    rows = _table(md, "## Ablation `quality`")
    assert rows[0][0].startswith("[quality=0.9 (baseline)]")
    decimals: dict[str, set[int]] = {}
    for arm, metric, n, mean, diff, p, mde, notes, verdict in rows:
        numbers = re.findall(r"[−+]?\d+\.\d+", mean + " " + diff)
        decimals.setdefault(metric, set()).update(_decimals(x) for x in numbers)
        if n == "1":
            assert mean.endswith("± —"), mean  # one seed: no spread, not "± 0"
        if n == "0":
            assert mean == "—" and verdict.startswith("stopped early")
    assert all(len(d) == 1 for d in decimals.values()), decimals  # one precision per metric
    assert decimals["val/score"] != decimals["test/score"]  # chosen per metric, from its spread


def test_trials_not_in_the_means_keep_their_columns_and_say_why(study):
    _, out = report_mod.write(study, publish=False)
    md = (out / "report.md").read_text()
    rows = _table(md, "## Trials not in the means")
    assert len(rows) == 5  # 3 + 1 stopped, 1 failed
    assert all(len(r) == 6 and r[-1] for r in rows), rows
    failed = next(r for r in rows if r[2] == "failed")
    assert failed[-1] == ERROR.replace("|", "\\|")
    assert {r[-1] for r in rows if r[2] == "stopped"} == {"stopped early by the scheduler after step 2"}


def test_no_numeric_warning_when_seeds_agree_to_the_last_digit(study):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep, _ = report_mod.write(study, publish=False)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    row = next(r for r in rep.rows if r.variant == "quality=0.8" and r.metric == "val/score")
    assert row.verdict in ("within noise", "inconclusive", "equivalent")


def test_html_stands_alone_and_other_formats_are_written(study, all_figure_formats):
    rep, out = report_mod.write(study, publish=False)
    page = (out / "report.html").read_text()
    sources = re.findall(r"<img src='([^']*)' alt='([^']*)'", page)
    assert len(sources) == page.count("<img") >= 3
    assert all(src.startswith("data:image/png;base64,") and alt for src, alt in sources)
    assert "Welch" in page and "Trainable <code>synthetic</code>" in page  # the methods paragraph
    for table in re.findall(r"<table>(.*?)</table>", page, re.S):  # every row as wide as its header
        widths = {len(re.findall(r"<t[hd][ >]", row)) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)}
        assert len(widths) == 1, widths
    for png in out.glob("*.png"):
        assert png.with_suffix(".svg").stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0

    tex = (out / "report.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2
    assert r"quality=0.9 (baseline) & val/score & 3 &" in tex
    assert r"$\pm$" in tex and "±" not in tex

    with open(out / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == len(rep.records) == 15
    by_key = {(t["variant"], int(t["seed"])): t for t in trials}
    for (variant, seed), (state, val, _) in OUTCOMES.items():
        row = by_key[(variant, seed)]
        assert row["state"] == state
        assert row["config.quality"] == str(0.5 if variant == "quality=0.5" else 0.7 if variant == "quality=0.7"
                                            else 0.8 if variant == "quality=0.8" else 0.9)
        assert (row["val/score"] == "") == (val is None)
    assert by_key[("quality=0.7", 2)]["error"] == ERROR


@pytest.mark.parametrize("formats", [None, "png"])
def test_figures_are_drawn_beside_the_driver_in_every_format(study, formats, all_figure_formats, monkeypatch):
    """By default each format is drawn in a process of its own, so the process that writes
    the report (at the end of a study: the driver, the table printed, the user waiting)
    never imports matplotlib itself. With ABLAB_FIGURE_FORMATS=png only the PNGs are
    drawn, in that process, and no drawing process starts."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from ablab import figures, report
        from ablab.records import StudyPaths
        report.write(StudyPaths(Path({str(study.storage)!r}), {study.name!r}), publish=False)
        print("matplotlib" in sys.modules, figures._POOL is not None)
    """)
    if formats:
        monkeypatch.setenv("ABLAB_FIGURE_FORMATS", formats)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pngs = sorted(study.report_dir.glob("*.png"))
    assert [p.stem for p in pngs] == ["bars_0", "bars_1", "curves"]
    if formats is None:
        assert done.stdout.split() == ["False", "True"], done.stdout
        for png in pngs:
            assert png.with_suffix(".svg").stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0
    else:
        assert done.stdout.split() == ["True", "False"], done.stdout
        assert not list(study.report_dir.glob("*.svg")) and not list(study.report_dir.glob("*.pdf"))


def test_drawing_processes_end_with_a_killed_driver(all_figure_formats):
    """A driver killed with SIGKILL runs no exit hook: its drawing processes (a forkserver
    and one per format, started while the trials run) must end by themselves, not wait on
    their queue forever."""
    import signal
    import time

    from tests.ablab.helpers import descendants, pid_alive

    driver = subprocess.Popen([sys.executable, "-c", "from ablab import figures; figures.prestart(); "
                               "import time; time.sleep(120)"])
    try:
        deadline = time.monotonic() + 60
        drawing: dict[int, str] = {}
        while len(drawing) < 4 and time.monotonic() < deadline:  # the forkserver and three workers
            drawing = {pid: c for pid, c in descendants(driver.pid).items() if "forkserver" in c}
            time.sleep(0.2)
        assert len(drawing) == 4, drawing
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in drawing) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in drawing if pid_alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, [drawing[pid] for pid in left]


def test_parent_run_is_the_study(study, all_figure_formats):
    _, out = report_mod.write(study)
    record = json.loads(study.study_file.read_text())
    tracker = Tracker(record["tracking_uri"], "hand")
    exp = tracker.client.get_experiment_by_name("hand")
    assert exp.tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML
    parent = tracker.client.get_run(record["parent_run_id"])
    note = parent.data.tags[NOTE_TAG]
    assert "| variant | metric | n |" in note and "quality=0.9 (baseline)" in note
    params = parent.data.params
    assert params["trainable"] == "synthetic" and params["metric"] == "val/score"
    assert params["seeds"] == "[0, 1, 2]" and params["ablations"] == "quality, rate"
    assert params["early_stopping.type"] == "margin"
    assert parent.data.tags["mlflow.source.git.commit"] == "abc123"
    assert len(parent.data.tags["ablab.sweep_hash"]) == 16
    artifacts = {a.path for a in tracker.client.list_artifacts(parent.info.run_id, "report")}
    for name in ("report.html", "report.md", "report.tex", "trials.csv", "report.json", "bars_0.svg", "curves.pdf"):
        assert f"report/{name}" in artifacts
    view = json.loads(exp.tags[SHARED_VIEW_TAG + view_key(parent.info.run_id)])
    assert view["selectedColumns"][:4] == ["params.`quality`", "params.`rate`", "metrics.`val/score`",
                                           "metrics.`test/score`"]
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "ablab.variant"}]
    # the report links each arm to its runs in the UI
    md = (out / "report.md").read_text()
    assert f"/#/experiments/{exp.experiment_id}/runs?searchFilter=" in md
    # published again (ablab report twice): no error on the write-once params
    report_mod.write(study)


def test_run_names_say_the_arm_the_seed_and_how_it_ended():
    spec = {"variant": "model.width=16", "seed": 2, "context_label": "all"}
    assert run_name(spec) == "model.width=16 | seed=2"
    assert run_name(spec, "stopped", 5) == "model.width=16 | seed=2 (stopped at step 5)"
    assert run_name(spec, "failed") == "model.width=16 | seed=2 (failed)"
    assert run_name({**spec, "context_label": "data.ipc=10"}) == "data.ipc=10 | model.width=16 | seed=2"
    assert run_name({**spec, "tune": {"train.lr": 0.1}}, selected=False) == (
        "model.width=16 | train.lr=0.1 | seed=2 (not selected)")


def test_eta_is_the_rate_so_far():
    assert eta_seconds(elapsed=60, done=2, remaining=6) == 180
    assert eta_seconds(elapsed=60, done=0, remaining=6) is None
    assert [duration(s) for s in (None, 9.6, 185, 4000)] == ["?", "10s", "3m05s", "1h06m"]


@pytest.mark.slow
def test_a_run_prints_no_start_up_chatter(ray_session, tmp_path):
    """MLflow's "Creating initial MLflow database tables" stays out of a new study's output."""
    sweep = tmp_path / "quiet.yaml"
    sweep.write_text(textwrap.dedent("""
        name: quiet
        trainable: synthetic
        base: {steps: 2}
        metric: val/score
        mode: max
    """) + f"\nstorage: {tmp_path / 'results'}\n")
    ablab = Path(sys.executable).with_name("ablab")
    address = ray_session.get_runtime_context().gcs_address
    proc = subprocess.run([str(ablab), "run", str(sweep), "--no-live", "--address", address],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "quiet" / "mlflow.db").exists()  # a new store was created
    output = proc.stdout + proc.stderr
    assert "Creating initial MLflow database tables" not in output
    assert "Updating database tables" not in output
    assert "[quiet] 1/1 done" in proc.stdout
