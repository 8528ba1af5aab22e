"""trainables/distill.py driven directly (no Ray): reports, stages, pictures, resume."""

import dataclasses

import pytest

pytest.importorskip("ablab.trial")

from ablab import trial  # noqa: E402
from core.distill.distill import DistillConfig  # noqa: E402
from core.distill.networks import NetConfig  # noqa: E402
from core.distill.ptm import PTMPoolConfig  # noqa: E402
from trainables import distill as trainable  # noqa: E402

TINY = trainable.Config(
    distill=DistillConfig(ipc=1, iterations=4, eval_every=2, batch_real=8, net=NetConfig(width=8),
                          ptm_loss="kl", alpha=0.5, eval_nets=2, eval_epochs=3, cross_arch=("mlp",),
                          device="cpu"),
    ptm=PTMPoolConfig(architectures=("mlp",), inits=1, epochs=(1,), device="cpu"),
    reference_subsets=1, reference_full_epochs=1,
)


@pytest.fixture
def reports(monkeypatch, tmp_path):
    got = []
    monkeypatch.setenv("ABLAB_STAGES", str(tmp_path / "stages"))
    monkeypatch.setattr(trial, "report", lambda metrics, *, step, state=None: got.append((step, dict(metrics), state)))
    monkeypatch.setattr(trial, "restore", lambda: None)
    monkeypatch.setattr(trial, "artifact_dir", lambda: tmp_path / "artifacts")
    return got


def test_reports_every_eval_and_cross_arch_at_the_end(reports, tmp_path, monkeypatch):
    import core.distill.ptm as ptm_mod

    builds = []
    real_build = ptm_mod.build_pool
    monkeypatch.setattr(ptm_mod, "build_pool", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    trainable.train(TINY)
    trainable.train(dataclasses.replace(TINY, seed=1))
    assert len(builds) == 1  # the PTM pool stage is built once for both trials
    steps = [s for s, _, _ in reports]
    assert steps == [2, 4, 2, 4]
    _, first, _ = reports[0]
    _, last, state = reports[1]
    assert "test/acc_mlp" not in first and "test/acc_cross" not in first
    assert last["test/acc_cross"] == last["test/acc_mlp"]
    for key in ("val/acc", "test/acc", "loss/ptm", "time/sec_per_iter", "cost/ptm_forwards",
                "time/ptm_share", "ref/floor_acc", "ref/ceiling_acc"):
        assert key in last, key
    assert set(last) <= set(trainable.METRICS)
    assert state["distiller"]["iteration"] == 4
    assert (tmp_path / "artifacts" / "synthetic.png").is_file()


def test_resumes_from_its_checkpoint(reports, monkeypatch):
    cfg = dataclasses.replace(TINY, references=False)
    trainable.train(cfg)
    full = reports[:]
    reports.clear()
    monkeypatch.setattr(trial, "restore", lambda: full[0][2])  # the checkpoint at step 2
    trainable.train(cfg)
    assert [s for s, _, _ in reports] == [4]
    assert reports[0][1]["test/acc"] == full[1][1]["test/acc"]  # bit-for-bit the same run
