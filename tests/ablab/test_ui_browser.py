"""The MLflow UI and the HTML report, looked at in a real headless Chromium.

Screenshots land in the study folder (screenshots/) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ablab.cli import main

from .browser import chromium, require_chromium
from .helpers import descendants, free_port, mlflow_runs, pid_alive, study_paths

pytestmark = pytest.mark.slow

SWEEP = """
    name: browse
    trainable: synthetic
    base: {steps: 4}
    ablations:
      - part: quality
        baseline: 0.9
        replacements: [0.7]
      - part: rate
        baseline: 0.5
        replacements: [0.2]
    seeds: 2
    metric: val/score
    mode: max
    metrics: [val/score, test/score]
"""


@pytest.fixture(scope="module")
def study(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    sweep = root / "sweep.yaml"
    sweep.write_text(textwrap.dedent(SWEEP) + f"\nstorage: {root / 'results'}\n")
    assert main(["run", str(sweep), "--no-live"]) == 0
    paths = study_paths(sweep, "browse")
    (paths.dir / "screenshots").mkdir(exist_ok=True)
    return paths


def _ui_url(proc: subprocess.Popen, timeout: float = 240) -> str:
    """The runs view's URL, the line `ablab ui` prints once the server answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if line.startswith("http://"):
            return line.strip()
    raise AssertionError(f"ablab ui printed no URL (exit code {proc.poll()})")


def test_ui_opens_the_runs_grouped_by_arm(study):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    require_chromium()
    _, _, children = mlflow_runs(study)
    names = sorted(c.info.run_name for c in children)
    assert names == sorted(f"{v} | seed={s}" for v in ("baseline", "quality=0.7", "rate=0.2") for s in (0, 1))
    ablab = Path(sys.executable).with_name("ablab")
    proc = subprocess.Popen(
        [str(ablab), "ui", study.name, "--storage", str(study.storage), "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = _ui_url(proc)
        assert "viewStateShareKey=" in url
        # one server, without MLflow's job runners (eight processes, 1.8 GB, that ablab never uses)
        started = descendants(proc.pid)
        assert started and not [c for c in started.values() if "huey" in c], started
        with chromium() as browser:
            browser.get(url)
            shot = study.dir / "screenshots" / "mlflow-runs.png"
            try:
                WebDriverWait(browser, 180).until(
                    lambda d: all(n in d.find_element(By.TAG_NAME, "body").text for n in names))
            finally:
                browser.save_screenshot(str(shot))
            headers = [h.get_attribute("col-id") for h in browser.find_elements(By.CSS_SELECTOR, ".ag-header-cell[col-id]")]
            # the ablated params and the report's metrics are columns, without any clicking
            for column in ("params.`quality`", "params.`rate`", "metrics.`val/score`", "metrics.`test/score`"):
                assert column in headers, headers
            text = browser.find_element(By.TAG_NAME, "body").text
            assert "Group: baseline" in text and "Group: quality=0.7" in text
            assert "Judges" not in text and "Evaluation runs" not in text  # the model-training pages, not GenAI's
    finally:
        proc.terminate()  # ablab ui stops the MLflow server it started
        proc.wait(timeout=60)
    deadline = time.time() + 30
    while any(pid_alive(pid) for pid in started) and time.time() < deadline:
        time.sleep(0.2)
    assert not [c for pid, c in started.items() if pid_alive(pid)], "ablab ui left its server running"


def test_report_html_is_self_contained(study, tmp_path):
    from selenium.webdriver.common.by import By

    require_chromium()
    copy = tmp_path / "sent-to-a-colleague.html"  # away from the report's folder and its PNGs
    shutil.copyfile(study.report_dir / "report.html", copy)
    with chromium() as browser:
        browser.get(copy.as_uri())
        images = browser.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 3  # two ablations' bars and the curves
        deadline = time.time() + 30
        while not all(browser.execute_script("return arguments[0].complete", i) for i in images):
            assert time.time() < deadline, "images never finished loading"
            time.sleep(0.5)
        for img in images:
            assert browser.execute_script("return arguments[0].naturalWidth", img) > 0
            assert img.get_attribute("alt")
        assert "Welch" in browser.find_element(By.TAG_NAME, "body").text  # the methods paragraph
        browser.save_screenshot(str(study.dir / "screenshots" / "report-html.png"))


def test_ui_on_a_busy_port_exits_2_naming_the_port(study, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", study.name, "--storage", str(study.storage), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err


def test_output_piped_into_a_closed_reader_ends_quietly(study):
    ablab = Path(sys.executable).with_name("ablab")
    r, w = os.pipe()
    os.close(r)  # the reader (like `head`) is gone before the first line is written
    proc = subprocess.run([str(ablab), "report", study.name, "--storage", str(study.storage), "--no-mlflow"],
                          stdout=w, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_unknown_study_names_where_it_looked_and_how_to_point_elsewhere(study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["status", "browse"]) == 2
    err = capsys.readouterr().err
    assert "no study named 'browse'" in err and "--storage" in err
    assert main(["status", str(study.dir)]) == 0  # the study's folder works from anywhere
    assert main(["status", "browse", "--storage", str(study.storage)]) == 0
