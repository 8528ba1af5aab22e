import pytest

from core.distill.data import DataConfig, load_dataset
from core.distill.networks import NetConfig
from core.distill.references import CeilingConfig, ReferenceConfig, compute_ceiling, compute_floor

NET = NetConfig(width=16, depth=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


def test_ceiling_beats_floor_on_a_small_dataset(digits):
    # sklearn's 8x8 digits: one real image per class against the whole training split,
    # both under the same recipe (30 epochs, DSA); the ceiling stops early on validation
    floor = compute_floor(ReferenceConfig(ipc=1, net=NET, eval_nets=2, subsets=3, eval_epochs=30, device="cpu"),
                          digits)
    ceiling = compute_ceiling(CeilingConfig(net=NET, nets=1, epochs=30, patience=5, device="cpu"), digits)
    assert ceiling["ceiling/test_acc"] > floor["floor/test_acc"] + 0.2, (floor, ceiling)
    assert ceiling["ceiling/test_acc"] > 0.8  # measured 0.886
    assert 1 <= ceiling["ceiling/epochs"] <= 30
    # between-subset spread: three subsets of one image per class do not agree
    assert floor["floor/test_acc_std"] > 0
    assert floor["floor/test_n"] == ceiling["ceiling/test_n"] == len(digits.y_test)


def test_ceiling_without_early_stopping_takes_the_last_epoch(toy):
    r = compute_ceiling(CeilingConfig(net=NetConfig(width=8, depth=1), epochs=3, patience=0, device="cpu"), toy)
    assert r["ceiling/epochs"] == 3
