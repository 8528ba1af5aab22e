"""trainables/distill.py driven directly (no Ray): reports, stages, pictures, resume."""

import dataclasses


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


def test_reports_every_eval_and_cross_arch_at_the_end(tmp_path):
    from ablab.stages import StageCache

    with trial.local(tmp_path) as first_seed:
        trainable.train(TINY)
    with trial.local(tmp_path) as second_seed:
        trainable.train(dataclasses.replace(TINY, seed=1))
    # the PTM pool stage is built once for both trials
    pools = list((tmp_path / "stages" / "ptm_pool").glob("*/stage.json"))
    assert len(pools) == 1 and StageCache(tmp_path / "stages").exists("ptm_pool", TINY.ptm)
    reports = first_seed.reports
    assert [s for s, _ in reports] == [2, 4] and [s for s, _ in second_seed.reports] == [2, 4]
    _, first = reports[0]
    _, last = reports[1]
    assert "test/acc_mlp" not in first and "test/acc_cross" not in first
    assert last["test/acc_cross"] == last["test/acc_mlp"]
    for key in ("val/acc", "test/acc", "loss/ptm", "time/sec_per_iter", "cost/ptm_forwards",
                "time/ptm_share", "ref/floor_acc", "ref/ceiling_acc"):
        assert key in last, key
    assert set(last) <= set(trainable.METRICS)
    assert first_seed.states[-1]["distiller"]["iteration"] == 4
    assert (tmp_path / "artifacts" / "synthetic.png").is_file()


def test_resumes_from_its_checkpoint(tmp_path):
    cfg = dataclasses.replace(TINY, references=False)
    with trial.local(tmp_path) as full:
        trainable.train(cfg)
    with trial.local(tmp_path, resume_from=full.states[0]) as resumed:  # the checkpoint at step 2
        trainable.train(cfg)
    assert [s for s, _ in resumed.reports] == [4]
    assert resumed.reports[0][1]["test/acc"] == full.reports[1][1]["test/acc"]  # bit-for-bit the same run
