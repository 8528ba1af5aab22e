"""trainables/distill.py driven directly (no Ray): reports, stages, pictures, resume, check."""

import dataclasses
import json

import numpy as np
import torch
import pytest

from ablab import configs, trial
from ablab.errors import UserError
from core.device import native_bf16
from core.distill.config import DistillConfig
from core.distill.data import DataConfig
from core.distill.networks import NetConfig
from core.distill.ptm import PTMPoolConfig
from core.errors import ConfigError
from trainables import distill as trainable

TINY = trainable.Config(
    distill=DistillConfig(ipc=1, iterations=4, eval_every=2, batch_real=8, net=NetConfig(width=8),
                          ptm_loss="kl", alpha=0.5, eval_nets=2, eval_epochs=3, cross_arch=("mlp",),
                          device="cpu"),
    ptm=PTMPoolConfig(architectures=("mlp",), inits=1, epochs=(1,), min_acc=0.0, device="cpu"),
    reference_subsets=2, reference_ceiling_patience=1,
)


def _declared(metric: str) -> bool:
    base, _, n = metric.partition(":")
    return base in trainable.METRICS and n in ("", "n")


def test_reports_every_eval_and_cross_arch_at_the_end(tmp_path):
    from ablab.stages import StageCache

    with trial.local(tmp_path) as first_seed:
        trainable.train(TINY)
    with trial.local(tmp_path) as second_seed:
        trainable.train(dataclasses.replace(TINY, seed=1))
    # the PTM pool stage is built once for both trials, on the target dataset
    pools = list((tmp_path / "stages" / "ptm_pool").glob("*/stage.json"))
    assert len(pools) == 1 and StageCache(tmp_path / "stages").exists("ptm_pool", TINY.pool)
    assert TINY.pool.data == TINY.data
    reports = first_seed.reports
    assert [s for s, _ in reports] == [2, 4] and [s for s, _ in second_seed.reports] == [2, 4]
    _, first = reports[0]
    _, last = reports[1]
    assert "test/acc_mlp" not in first and "test/acc_cross" not in first
    assert last["test/acc_cross"] == last["test/acc_mlp"]
    for key in ("val/acc", "test/acc", "loss/ptm", "time/sec_per_iter", "cost/ptm_forwards",
                "time/ptm_share", "ref/floor_acc", "ref/ceiling_acc", "ref/ceiling_below_floor",
                "distill/ptm_grad_ratio", "distill/syn_std", "ptm/acc_min", "ptm/acc_mean",
                "test/acc:n", "test/acc_cross:n", "val/acc:n", "ref/floor_acc:n"):
        assert key in last, key
    assert last["distill/ptm_grad_ratio"] > 0 and last["ref/ceiling_below_floor"] in (0.0, 1.0)
    # precision auto: bfloat16 exactly where this CPU computes it, and the trial says which
    assert TINY.distill.precision == "auto"
    assert last["distill/bf16"] == float(native_bf16(torch.device("cpu")))
    assert all(_declared(k) for k in last), [k for k in last if not _declared(k)]
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


@pytest.fixture
def odd_images(tmp_path):
    """A .npz of 1x12x10 grey images (a shape no other test uses), 4 learnable classes."""
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(4, 12, 10))

    def split(n):
        y = np.arange(n) % 4
        return (templates[y] + 0.5 * rng.normal(size=(n, 12, 10))).astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = split(160), split(80)
    path = tmp_path / "odd.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return DataConfig(name="npz", path=str(path))


def test_an_npz_of_unusual_images_runs_with_a_ptm_arm(tmp_path, odd_images):
    cfg = dataclasses.replace(
        TINY, data=odd_images, references=False,
        ptm=PTMPoolConfig(architectures=("convnet",), inits=1, epochs=(5,), lr=0.05, batch_size=16, device="cpu"),
        distill=dataclasses.replace(TINY.distill, net=NetConfig(width=8), cross_arch=("lenet",)),
    )
    trainable.check(cfg)
    with trial.local(tmp_path / "run") as run:
        trainable.train(cfg)
    _, last = run.reports[-1]
    assert last["ptm/acc_min"] >= 0.5  # the pool learnt the target data (chance: 0.25)
    assert last["test/acc:n"] == 80 and last["distill/ptm_grad_ratio"] > 0
    # the pool was built on the .npz (its dataset stage), not on MNIST-1D
    pool = json.loads(next((tmp_path / "run" / "stages" / "ptm_pool").glob("*/pool.json")).read_text())
    assert pool["input_shape"] == [1, 12, 10] and pool["test_n"] == 80


@pytest.mark.parametrize("change, key", [
    # VGG-11 pools 12x10 down to 1x1 before its last convolutions: instance norm needs more
    (dict(distill=dataclasses.replace(TINY.distill, cross_arch=("vgg11",))), "distill.cross_arch"),
    # PTMs of MNIST-1D (1x40 signals) cannot guide 2D images: the first failure
    (dict(ptm=dataclasses.replace(TINY.ptm, data=DataConfig())), "ptm.data"),
    (dict(ptm=dataclasses.replace(TINY.ptm, architectures=("vgg11",))), "ptm.architectures"),
])
def test_check_names_the_key_of_a_network_that_cannot_take_the_data(odd_images, change, key):
    with pytest.raises(ConfigError) as err:
        trainable.check(dataclasses.replace(TINY, data=odd_images, **change))
    assert err.value.key == key


def test_literal_values_are_the_platforms_to_check():
    with pytest.raises(UserError, match="distill.ptm_loss.*allowed.*cosine"):
        configs.build(trainable.Config, {"distill": {"ptm_loss": "l1"}})
    with pytest.raises(UserError, match="distill.alpha_mode"):
        configs.build(trainable.Config, {"distill": {"alpha_mode": "auto"}})
