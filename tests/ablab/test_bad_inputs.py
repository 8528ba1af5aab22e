"""Inputs a hostile or hurried user gives: each ends in one line and exit code 2, fast,
and nothing is started or written (no study folder, no Ray)."""

from __future__ import annotations

import json
import os
import time

import pytest

from ablab.cli import main

OK = """
name: fine
trainable: synthetic
base: {steps: 2}
ablations:
  - part: quality
    baseline: 0.9
    replacements: [0.5]
metric: val/score
mode: max
"""


def _one_line_exit_2(argv, capsys, within_s: float = 60) -> str:
    start = time.monotonic()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert time.monotonic() - start < within_s
    return err


def _no_study(tmp_path):
    results = tmp_path / "results"
    assert not results.exists() or not any(results.iterdir()), list(results.iterdir())


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_file_that_is_not_utf8(tmp_path, capsys, encoding):
    path = tmp_path / "s.yaml"
    path.write_bytes(OK.replace("fine", "fïne").encode(encoding))
    assert "not UTF-8" in _one_line_exit_2(["validate", str(path)], capsys)


def test_an_unreadable_file(capsys):
    _one_line_exit_2(["validate", "/proc/self/mem"], capsys)


def test_a_fifo_is_refused_without_waiting(tmp_path, capsys):
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _one_line_exit_2(["validate", str(fifo)], capsys, within_s=5)


def test_a_list_nested_5000_deep(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(OK + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than" in _one_line_exit_2(["validate", str(path)], capsys)


def test_set_base_to_a_scalar(write_sweep, capsys):
    _one_line_exit_2(["validate", str(write_sweep(OK)), "--set", "base=1"], capsys)


@pytest.mark.parametrize("package, body, problem", [
    ("broken_raises", "raise RuntimeError('boom')", "fails on import: RuntimeError: boom"),
    ("broken_syntax", "def broken(:\n    pass", "fails on import: SyntaxError"),
])
def test_a_trainable_module_that_breaks_on_import(write_sweep, tmp_path, monkeypatch, capsys, package, body, problem):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "x.py").write_text(body + "\n")
    sweep = write_sweep(OK.replace("trainable: synthetic", f"trainable: {package}.x"))
    assert problem in _one_line_exit_2(["validate", str(sweep)], capsys)


def test_set_on_an_ablated_part_names_the_ablation(write_sweep, capsys):
    err = _one_line_exit_2(["validate", str(write_sweep(OK)), "--set", "quality=0.3"], capsys)
    assert "ablation of 'quality'" in err


def test_set_on_a_grid_key_is_refused(write_sweep, capsys):
    sweep = write_sweep(OK.replace("ablations:", "grid: {rate: [0.1, 0.2]}\nablations:"))
    assert "the grid sets this key" in _one_line_exit_2(["validate", str(sweep), "--set", "rate=0.3"], capsys)


def test_a_secret_given_with_set(write_sweep, capsys):
    err = _one_line_exit_2(["validate", str(write_sweep(OK)), "--set", "sampling.api_key=sk-abcdefghijkl"], capsys)
    assert "a secret" in err and "sk-abc" not in err


@pytest.mark.parametrize("extra, key", [
    ("resources: {gpu: 1}", "resources.gpu"),
    ("resources: {cpu: 1000}", "resources.cpu"),
])
def test_resources_the_machine_lacks_start_nothing(write_sweep, tmp_path, capsys, extra, key):
    from ablab.ray_api import ray

    if ray.is_initialized():
        pytest.skip("this process already runs Ray; the check before Ray starts is not reached")
    err = _one_line_exit_2(["run", str(write_sweep(OK + extra + "\n"))], capsys)
    assert key in err
    assert not ray.is_initialized()
    _no_study(tmp_path)


def test_an_unreachable_tracking_server_starts_nothing(write_sweep, tmp_path, capsys):
    from ablab.ray_api import ray
    from tests.ablab.helpers import free_port

    was_running = ray.is_initialized()
    sweep = write_sweep(OK + f"tracking: {{uri: 'http://127.0.0.1:{free_port()}'}}\n")
    assert "unreachable" in _one_line_exit_2(["run", str(sweep)], capsys, within_s=120)
    assert ray.is_initialized() == was_running
    _no_study(tmp_path)


@pytest.mark.parametrize("address, problem", [
    ("garbage", "not a Ray address"),
    ("127.0.0.1:1", "no Ray cluster answers"),
])
def test_a_bad_ray_address_starts_nothing(write_sweep, tmp_path, capsys, address, problem):
    err = _one_line_exit_2(["run", str(write_sweep(OK)), "--address", address], capsys, within_s=30)
    assert problem in err
    _no_study(tmp_path)


def test_a_figure_format_ablab_does_not_draw_starts_nothing(write_sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ABLAB_FIGURE_FORMATS", "png,jpg")
    err = _one_line_exit_2(["run", str(write_sweep(OK))], capsys, within_s=30)
    assert "ABLAB_FIGURE_FORMATS" in err and "jpg" in err and "png, svg, pdf" in err
    _no_study(tmp_path)


def test_resume_of_a_missing_study_leaves_no_folder(write_sweep, tmp_path, capsys):
    assert "--resume" in _one_line_exit_2(["run", str(write_sweep(OK)), "--resume"], capsys)
    _no_study(tmp_path)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"trials": "x"}', '{"trials": [{"key": 1}]}'])
def test_commands_over_a_damaged_study_json(tmp_path, capsys, content):
    study = tmp_path / "broken"
    study.mkdir()
    (study / "study.json").write_text(content)
    for command in ("report", "status", "ui"):
        assert "unreadable study record" in _one_line_exit_2([command, "broken", "--storage", str(tmp_path)], capsys)
    # one damaged study does not break the list of the others
    good = tmp_path / "good"
    good.mkdir()
    (good / "study.json").write_text(json.dumps({"trials": [], "created": "today"}))
    assert main(["list", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "unreadable" in out and "good" in out
