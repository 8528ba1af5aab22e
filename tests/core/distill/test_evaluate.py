import pytest
import torch

from core.distill.augment import DiffAugment
from core.distill.evaluate import evaluate_set
from core.distill.networks import NetConfig
from core.distill.train import TrainConfig


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm"])
def test_batched_matches_sequential_on_a_fixed_seed(toy, norm):
    net = NetConfig(arch="convnet", width=16, depth=2, norm=norm)
    cfg = TrainConfig(epochs=12, batch_size=32)  # 3 minibatches per epoch, lr decay at 6
    aug = DiffAugment.for_input(toy.input_shape)
    x, y = toy.x_train[:80], toy.y_train[:80]
    a = evaluate_set(x, y, toy, net, cfg, num_nets=3, seed=7, augment=aug, batched=True)
    b = evaluate_set(x, y, toy, net, cfg, num_nets=3, seed=7, augment=aug, batched=False)
    # the same networks, batches and augmentations: equal up to float reordering
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-3)
    for ta, tb in zip(a.test_accs, b.test_accs):
        assert abs(ta - tb) <= 1 / len(toy.x_test) + 1e-9
    assert len(a.test_accs) == 3 and len(a.val_accs) == 3
    assert a.test_mean > 0.5  # it learned the toy problem


def test_seed_changes_networks_and_final_epoch_is_reported(toy):
    net = NetConfig(arch="mlp", width=16, depth=1)
    cfg = TrainConfig(epochs=3)
    a = evaluate_set(toy.x_train, toy.y_train, toy, net, cfg, num_nets=2, seed=0)
    b = evaluate_set(toy.x_train, toy.y_train, toy, net, cfg, num_nets=2, seed=1)
    c = evaluate_set(toy.x_train, toy.y_train, toy, net, cfg, num_nets=2, seed=0)
    assert a.test_accs == c.test_accs and a.train_loss == c.train_loss
    assert a.train_loss != b.train_loss
