"""Secrets stay in the environment: never in MLflow params, tags, artifacts or the study folder."""

from __future__ import annotations

import pytest

from ablab.cli import main

from .helpers import mlflow_runs, study_paths

SECRET = "sk-test-7f3a9c1e5b2d4f6a8c0e"


@pytest.mark.slow
def test_environment_secrets_are_never_logged(ray_session, write_sweep, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ABLAB_TEST_TOKEN", SECRET)
    sweep = write_sweep("""
        name: secrets
        trainable: synthetic
        base: {steps: 2}
        seeds: 1
        metric: val/score
        mode: max
    """)
    assert main(["run", str(sweep), "--no-live"]) == 0
    paths = study_paths(sweep, "secrets")
    client, parents, children = mlflow_runs(paths)
    for run in [*parents, *children]:
        values = [*run.data.params.values(), *run.data.tags.values(), *map(str, run.data.metrics.values())]
        assert not any(SECRET in v for v in values), run.info.run_id
        for art in client.list_artifacts(run.info.run_id):
            if not art.is_dir:
                local = client.download_artifacts(run.info.run_id, art.path, str(tmp_path / "dl"))
                assert SECRET not in open(local, errors="replace").read()
    for f in paths.dir.rglob("*"):
        if f.is_file() and f.suffix in {".json", ".jsonl", ".yaml", ".md", ".html", ".txt", ".csv", ".pkl"}:
            assert SECRET not in f.read_text(errors="replace"), f
