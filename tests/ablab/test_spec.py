"""Sweep files: every bad one fails with its own message and exit code 2; good ones expand right."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablab.cli import main
from ablab.expand import expand
from ablab.spec import load_study

BAD = sorted((Path(__file__).parent / "bad_sweeps").glob("*.yaml"))
REPO = Path(__file__).resolve().parents[2]


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_sweep_file_fails_with_its_message(path, capsys):
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert expected_message(path) in err


def test_every_bad_file_has_a_distinct_message():
    messages = [expected_message(p) for p in BAD]
    assert len(BAD) >= 20 and len(set(messages)) == len(messages)


def test_bad_set_override_names_the_key(write_sweep, capsys):
    sweep = write_sweep("""
        name: ok
        trainable: synthetic
        metric: val/score
        mode: max
    """)
    assert main(["validate", str(sweep), "--set", "quality=high"]) == 2
    assert "base.quality: expected a number (got 'high')" in capsys.readouterr().err


def test_missing_file(capsys):
    assert main(["validate", "nope.yaml"]) == 2
    assert "nope.yaml: no such sweep file" in capsys.readouterr().err


def test_run_rejects_bad_file_before_starting_anything(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text((Path(__file__).parent / "bad_sweeps/unknown_base_key.yaml").read_text()
                   + f"storage: {tmp_path / 'results'}\n")
    proc = subprocess.run([sys.executable, "-m", "ablab.cli", "run", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith("error: ") and "base.stepz: unknown key" in proc.stderr
    assert "Ray" not in proc.stderr  # no Ray instance was started
    assert not (tmp_path / "results").exists()  # and no study folder made


def test_ablation_expands_to_baseline_plus_one_change_at_a_time(write_sweep):
    sweep = write_sweep("""
        name: ok
        trainable: synthetic
        base: {steps: 4, quality: 0.7}
        grid: {noise: [0.0, 0.1]}
        ablations:
          - part: rate
            baseline: 0.5
            replacements: [0.1, 1.0]
          - part: quality
            action: remove
            baseline: 0.9
            replacements: [0.0]
        seeds: [3, 4]
        metric: val/score
        mode: max
    """)
    study = load_study(sweep, ["steps=5"])
    trials = expand(study)
    # 2 grid points x (baseline + 2 + 1 variants) x 2 seeds
    assert len(trials) == 2 * 4 * 2
    assert len({t.key for t in trials}) == len(trials)
    by_variant = {}
    for t in trials:
        by_variant.setdefault(t.variant, []).append(t)
    assert set(by_variant) == {"baseline", "rate=0.1", "rate=1.0", "quality=0.0"}
    base = by_variant["baseline"][0].config
    # the ablation's baseline value wins over `base`; --set reached base
    assert base["quality"] == 0.9 and base["rate"] == 0.5 and base["steps"] == 5
    for t in trials:
        assert t.config["seed"] == t.seed and t.config["noise"] == t.context["noise"]
        diff = {k for k in base if k not in ("seed", "noise") and t.config[k] != base[k]}
        assert len(diff) == (0 if t.variant == "baseline" else 1)
    assert by_variant["quality=0.0"][0].action == "remove"
    # defaults of the trainable's Config are filled in, so each trial logs its whole config
    assert base["crash_at_step"] == 0 and base["work"] == 0


def test_shipped_sweep_files_validate(capsys):
    files = sorted((REPO / "sweeps").rglob("*.yaml"))
    assert files
    for f in files:
        assert main(["validate", str(f)]) == 0, capsys.readouterr().err


def test_unwritable_results_folder_fails_before_anything(write_sweep, tmp_path, capsys):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the results folder should be")
    sweep = write_sweep(f"""
        name: ok
        trainable: synthetic
        metric: val/score
        mode: max
        storage: {blocked / 'results'}
    """)
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "storage: cannot write the results folder" in err and str(blocked) in err


def test_huge_grid_needs_confirmation(write_sweep, capsys):
    sweep = write_sweep("""
        name: huge
        trainable: synthetic
        grid: {rate: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], quality: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], steps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
        metric: val/score
        mode: max
    """)
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "this study expands to 1100 trials (more than 1000)" in err and "--yes" in err
    assert not (sweep.parent / "results" / "huge").exists()
