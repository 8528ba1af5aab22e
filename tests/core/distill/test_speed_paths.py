"""The fast CPU paths (channels-last 1D convs, sliced pooling) and the precision option:
the same maths as the reference kernels, and both precisions train."""

import dataclasses
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.distill.augment import DiffAugment
from core.distill.config import DistillConfig
from core.distill.distiller import Distiller
from core.distill.evaluate import evaluate_set
from core.distill.networks import NetConfig, Pool2, channels_last_conv1d, reference_kernels, seeded_network
from core.device import native_bf16
from core.distill.train import TrainConfig, autocast, resolve_precision


@pytest.mark.parametrize("arch", ["convnet", "lenet", "alexnet", "resnet18"])
def test_fast_kernels_give_the_reference_outputs_and_gradients(arch):
    shape = (1, 40)
    net = seeded_network(NetConfig(arch=arch, width=16), shape, 10, 3)
    x = torch.randn(12, *shape, generator=torch.Generator().manual_seed(0))

    def run():
        xg = x.clone().requires_grad_(True)
        net.zero_grad(set_to_none=True)
        out = net(xg)
        F.cross_entropy(out, torch.arange(12) % 10).backward()
        return out.detach(), xg.grad, [p.grad.clone() for p in net.parameters()]

    with channels_last_conv1d():
        out_fast, gx_fast, gp_fast = run()
    with reference_kernels():
        out_ref, gx_ref, gp_ref = run()
    # float reordering only; instance norm over the 1-5 wide maps deep in resnet18 amplifies
    # it, so each tensor is compared relative to its own scale
    for a, b in zip([out_fast, gx_fast, *gp_fast], [out_ref, gx_ref, *gp_ref]):
        assert (a - b).abs().max() <= 2e-3 * b.abs().max() + 1e-6


@pytest.mark.parametrize("k, stride, bias", [(3, 1, True), (5, 1, True), (3, 2, False), (1, 2, False)])
def test_fast_conv1d_equals_conv1d(k, stride, bias):
    conv = torch.nn.Conv1d(6, 8, k, stride=stride, padding=k // 2, bias=bias)
    fast = seeded_network(NetConfig(), (1, 40), 10, 0).features[0].__class__(6, 8, k, stride=stride,
                                                                              padding=k // 2, bias=bias)
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(4, 6, 21, requires_grad=True)
    with channels_last_conv1d():
        a = fast(x)
    b = conv(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    (ga,) = torch.autograd.grad(a.square().sum(), x)
    (gb,) = torch.autograd.grad(b.square().sum(), x)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_sliced_pooling_is_bit_identical(kind):
    x = torch.randn(5, 7, 41)  # odd length: the last sample is dropped by both
    fast = Pool2(kind, 1)(x)
    with reference_kernels():
        ref = Pool2(kind, 1)(x)
    assert fast.shape == (5, 7, 20)
    assert torch.equal(fast, ref)


def test_fast_conv_keeps_the_parameters_of_conv1d():
    # same initialisation and state dict keys: PTM pools saved before load unchanged
    net = seeded_network(NetConfig(), (1, 40), 10, 5)
    with reference_kernels():
        ref = seeded_network(NetConfig(), (1, 40), 10, 5)
    conv = net.features[0]
    assert isinstance(conv, torch.nn.Conv1d)
    sa, sb = net.state_dict(), ref.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_precision_trains_a_network_above_chance(toy, precision):
    net = NetConfig(arch="convnet", width=16, depth=2)
    aug = DiffAugment.for_input(toy.input_shape)
    short = evaluate_set(toy.x_train, toy.y_train, toy, net, TrainConfig(epochs=1, precision=precision),
                         num_nets=2, seed=0, augment=aug)
    r = evaluate_set(toy.x_train, toy.y_train, toy, net, TrainConfig(epochs=30, precision=precision),
                     num_nets=2, seed=0, augment=aug)
    assert r.train_loss < short.train_loss  # the loss falls
    assert r.test_mean > 0.5  # 4 classes: chance is 0.25


def test_bf16_batched_path_trains(toy):
    net = NetConfig(arch="convnet", width=16, depth=2)
    r = evaluate_set(toy.x_train, toy.y_train, toy, net, TrainConfig(epochs=30, precision="bf16"),
                     num_nets=2, seed=0, batched=True)
    assert r.test_mean > 0.5


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dm_step_in_each_precision_lowers_the_loss_and_keeps_the_set_float32(toy, precision):
    cfg = DistillConfig(ipc=2, batch_real=8, iterations=0, lr_img=0.1, dsa=False,
                        net=NetConfig(width=16, depth=2), precision=precision)
    d = Distiller(cfg, toy, seed=0)
    x0 = d.x_syn.detach().clone()
    losses = [d.step()["loss/base"] for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert d.x_syn.dtype == torch.float32 and not torch.equal(d.x_syn.detach(), x0)
    assert sum(losses[-5:]) < sum(losses[:5])


def test_precision_is_validated():
    assert typing.get_args(typing.get_type_hints(DistillConfig)["precision"]) == ("auto", "fp32", "bf16")
    assert DistillConfig().precision == "auto" and TrainConfig().precision == "auto"
    assert DistillConfig(precision="bf16").eval_train.precision == "bf16"
    with pytest.raises(ValueError, match="DistillConfig.precision"):
        DistillConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        dataclasses.replace(TrainConfig(), precision="half")  # type: ignore[arg-type]


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU's flags from /proc/cpuinfo (Linux)")
def test_auto_is_bf16_exactly_on_a_cpu_with_bfloat16_arithmetic():
    """What the kernel says the CPU can do, against what ablab concludes from torch."""
    cpu = torch.device("cpu")
    hardware = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert native_bf16(cpu) == hardware
    assert resolve_precision("auto", cpu) == ("bf16" if hardware else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert torch.is_autocast_enabled("cpu") is False
    with autocast(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu") == hardware
