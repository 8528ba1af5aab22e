import pytest
import torch

from core.distill.data import Dataset


def make_toy(input_shape=(1, 16), num_classes=4, n_train=80, n_test=40, seed=0) -> Dataset:
    """A small learnable dataset: class c = a class template plus noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, *input_shape, generator=g)

    def split(n):
        y = torch.arange(n) % num_classes
        return templates[y] + 0.7 * torch.randn(n, *input_shape, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(n_test // 2), split(n_test)
    return Dataset(xt, yt, xv, yv, xs, ys, num_classes, tuple(input_shape))


@pytest.fixture
def toy() -> Dataset:
    return make_toy()


@pytest.fixture(autouse=True)
def _few_threads():
    # the machine is shared: tests stay on one thread
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
