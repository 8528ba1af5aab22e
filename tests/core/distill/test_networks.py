import pytest
import torch

from core.distill.networks import ARCHS, NetConfig, build_network
from core.distill.train import TrainConfig, accuracy, make_optimizer, train_epoch


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("input_shape", [(1, 40), (2, 12), (1, 8, 8), (3, 16, 16)])
def test_every_arch_1d_and_2d(arch, input_shape):
    torch.manual_seed(0)
    net = build_network(NetConfig(arch=arch), input_shape, num_classes=7)
    x = torch.randn(3, *input_shape)
    logits, feats = net(x), net.embed(x)
    assert logits.shape == (3, 7)
    assert feats.shape == (3, net.feature_dim)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "leaky_relu"])
def test_norms_and_activations(norm, activation):
    net = build_network(NetConfig(norm=norm, activation=activation), (1, 40), 10)
    assert net(torch.randn(2, 1, 40)).shape == (2, 10)


def test_convnet_is_the_literature_standard():
    net = build_network(NetConfig(), (1, 40), 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == 3 and all(c.out_channels == 128 for c in convs)
    assert len(norms) == 3 and all(n.num_groups == n.num_channels for n in norms)
    assert net.feature_dim == 128 * 5  # 40 -> 20 -> 10 -> 5 by avg pooling


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="NetConfig.width"):
        NetConfig(width=0)
    with pytest.raises(ValueError, match="input_shape"):
        build_network(NetConfig(), (40,), 10)


def test_training_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 16, generator=g)
    y = (x.mean(dim=(1, 2)) > 0).long()
    torch.manual_seed(0)
    net = build_network(NetConfig(arch="mlp", width=32, depth=1), (1, 16), 2)
    cfg = TrainConfig(epochs=30, lr=0.05, batch_size=50)
    opt, sched = make_optimizer(net, cfg)
    losses = []
    for _ in range(cfg.epochs):
        losses.append(train_epoch(net, opt, x, y, cfg.batch_size, g))
        sched.step()
    assert losses[-1] < losses[0] * 0.5
    assert accuracy(net, x, y) > 0.9
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # x0.1 at half
