import numpy as np
import pytest
import torch

from core.distill.data import DataConfig, load_dataset


def test_mnist1d_splits_shapes_and_normalisation():
    d = load_dataset(DataConfig())
    assert d.input_shape == (1, 40) and d.num_classes == 10
    assert len(d.x_train) + len(d.x_val) == 4000 and len(d.x_test) == 1000
    assert 395 <= len(d.x_val) <= 405  # round(10%) of each class (classes hold ~400)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-3
    # stratified: every class is in val with about the same share
    counts = torch.bincount(d.y_val, minlength=10)
    assert counts.min() >= 30


def test_split_seed_changes_val_not_test():
    a, b = load_dataset(DataConfig(split_seed=0)), load_dataset(DataConfig(split_seed=1))
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_val, b.x_val)


def test_mnist1d_loading_leaves_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_dataset(DataConfig())
    assert np.random.rand() == expected


def test_digits():
    d = load_dataset(DataConfig(name="digits", val_fraction=0.0))
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.x_val) == 0 and len(d.x_train) + len(d.x_test) == 1797


@pytest.mark.parametrize(
    "x_shape, input_shape",
    [((50, 20), (1, 20)), ((50, 6, 6), (1, 6, 6)), ((50, 3, 6, 6), (3, 6, 6)), ((50, 6, 6, 3), (3, 6, 6))],
)
def test_npz_layouts(tmp_path, x_shape, input_shape):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.normal(size=x_shape), y_train=np.arange(50) % 5,
        x_test=rng.normal(size=(10, *x_shape[1:])), y_test=np.arange(10) % 5,
    )
    d = load_dataset(DataConfig(name="npz", path=str(path), val_fraction=0.2))
    assert d.input_shape == input_shape and d.num_classes == 5
    assert len(d.x_val) == 10 and len(d.x_train) == 40


def test_npz_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        load_dataset(DataConfig(name="npz", path=str(tmp_path / "nope.npz")))
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 3)), y_train=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"missing arrays \['x_test', 'y_test'\]"):
        load_dataset(DataConfig(name="npz", path=str(path)))


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="DataConfig.path"):
        DataConfig(name="npz")
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(val_fraction=1.0)


def test_torchvision_missing_files_is_a_clear_error(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="download"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))
