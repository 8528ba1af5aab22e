"""Networks for distillation and evaluation, 1D and 2D, built from a name and an input shape.

Every network is a `Net`: `embed(x)` gives the penultimate features (N, D) and
`forward(x) = classifier(embed(x))` the logits (N, num_classes). The dimension (Conv1d or
Conv2d) follows the input shape: (C, L) builds the 1D variant, (C, H, W) the 2D one.

The architectures are the small-input variants used across the dataset-distillation
literature (DC/DSA/DM reference code), so that cross-architecture evaluation means the same
thing as in the papers:

- mlp:      `depth` hidden layers of `width` units (no normalisation).
- convnet:  `depth` x [conv 3, `width` channels -> norm -> activation -> avg-pool 2];
            the literature's standard is depth 3, width 128, instance norm, ReLU.
- lenet:    conv5(6) -> pool -> conv5(16) -> pool -> fc 120 -> fc 84 (padding keeps small
            inputs valid).
- alexnet:  conv5(128) pool conv5(192) pool conv3(256) conv3(192) conv3(192) pool.
- vgg11:    VGG-11 (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M), conv 3.
- resnet18: ResNet-18 with a 3x3 stride-1 stem and no stem pooling (the CIFAR variant).

Pooling is skipped once a spatial side is 1, so 8x8 digits and length-40 signals work with
every depth. `width` and `depth` apply to mlp and convnet; `activation` to all; `norm` to
every convolution (mlp has none). "instancenorm" is GroupNorm(C, C, affine=True), as in the
reference code: per-sample statistics, so batches of different classes can share one forward.

Speed on the CPU (benchmarks/distill.py, BENCHMARKS.md): 1D pooling is two strided slices
(bit-identical to the reshape + mean, fewer ops; the default). Opt-in, within
`channels_last_conv1d()`: stride-1 1D convolutions run as 2D convolutions of height 1 in
channels-last memory (same parameters and maths, float reordering only); 2.2x per layer
but not a reliable gain over whole training runs on the loaded machine, so off by default
until re-measured. `reference_kernels()` switches everything back, for side-by-side checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from core.distill._checks import require

Arch = Literal["mlp", "convnet", "lenet", "alexnet", "vgg11", "resnet18"]
Norm = Literal["instancenorm", "batchnorm", "none"]
Activation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu"]
ARCHS: tuple[str, ...] = get_args(Arch)

_FAST_KERNELS = True
"""Whether Pool2 (and Conv1d, if _CL_CONV1D) take their fast CPU paths (read at every forward)."""
_CL_CONV1D = False
"""Whether Conv1d runs as a channels-last 2D convolution on the CPU (opt-in, see above)."""


@contextlib.contextmanager
def channels_last_conv1d() -> Iterator[None]:
    """Within the block, stride-1 Conv1d runs as a channels-last 2D convolution on the CPU."""
    global _CL_CONV1D
    before, _CL_CONV1D = _CL_CONV1D, True
    try:
        yield
    finally:
        _CL_CONV1D = before


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Within the block, 1D convolutions and pooling use the plain torch kernels: the
    reference the fast paths are measured and checked against (benchmarks, tests)."""
    global _FAST_KERNELS
    before, _FAST_KERNELS = _FAST_KERNELS, False
    try:
        yield
    finally:
        _FAST_KERNELS = before


@dataclass(frozen=True)
class NetConfig:
    """A network family and its shape options."""

    arch: Arch = "convnet"
    """Architecture: mlp, convnet (the distillation standard), lenet, alexnet, vgg11, resnet18."""
    width: int = 128
    """Channels per conv layer (convnet) or hidden units (mlp). Ignored by the others."""
    depth: int = 3
    """Conv blocks (convnet) or hidden layers (mlp). Ignored by the others."""
    activation: Activation = "relu"
    """Nonlinearity after every conv / hidden layer."""
    norm: Norm = "instancenorm"
    """Normalisation after every convolution; instancenorm = GroupNorm(C, C) (per sample)."""

    def __post_init__(self) -> None:
        require(self.width >= 1, self, "width", "must be >= 1")
        require(self.depth >= 1, self, "depth", "must be >= 1")


class Net(nn.Module):
    """features (input -> (N, D)) followed by a linear classifier (D -> num_classes)."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, (N, D)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, (N, num_classes)."""
        return self.classifier(self.features(x))


def build_network(cfg: NetConfig, input_shape: tuple[int, ...], num_classes: int) -> Net:
    """A freshly initialised `cfg.arch` for inputs of `input_shape` ((C, L) or (C, H, W))."""
    if len(input_shape) not in (2, 3):
        raise ValueError(f"input_shape must be (C, L) or (C, H, W), got {input_shape}")
    b = _Builder(cfg, input_shape)
    features = {
        "mlp": b.mlp,
        "convnet": b.convnet,
        "lenet": b.lenet,
        "alexnet": b.alexnet,
        "vgg11": b.vgg11,
        "resnet18": b.resnet18,
    }[cfg.arch]()
    return Net(features, b.feature_dim(features), num_classes)


# --- construction ---------------------------------------------------------------------


class _Builder:
    """Layer factories for one dimension (1D or 2D), tracking the spatial size."""

    def __init__(self, cfg: NetConfig, input_shape: tuple[int, ...]):
        self.cfg = cfg
        self.input_shape = tuple(input_shape)
        self.channels = input_shape[0]
        self.size = list(input_shape[1:])  # spatial sides, updated as layers are added
        self.d = len(self.size)  # 1 or 2
        self.conv_cls = Conv1d if self.d == 1 else nn.Conv2d

    # building blocks
    def act(self) -> nn.Module:
        return {
            "relu": lambda: nn.ReLU(inplace=True),
            "gelu": nn.GELU,
            "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid,
            "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
        }[self.cfg.activation]()

    def norm(self, c: int) -> nn.Module:
        if self.cfg.norm == "instancenorm":
            return nn.GroupNorm(c, c, affine=True)
        if self.cfg.norm == "batchnorm":
            return nn.BatchNorm1d(c) if self.d == 1 else nn.BatchNorm2d(c)
        return nn.Identity()

    def conv(self, c_out: int, k: int, stride: int = 1, bias: bool = True) -> nn.Module:
        conv = self.conv_cls(self.channels, c_out, k, stride=stride, padding=k // 2, bias=bias)
        self.channels = c_out
        self.size = [(s + 2 * (k // 2) - k) // stride + 1 for s in self.size]
        return conv

    def conv_block(self, c_out: int, k: int = 3) -> list[nn.Module]:
        return [self.conv(c_out, k), self.norm(c_out), self.act()]

    def pool(self, kind: Literal["avg", "max"]) -> nn.Module:
        """Pool by 2 along every side longer than 1 (identity once the map is 1 wide)."""
        if min(self.size) < 2:
            return nn.Identity()
        self.size = [s // 2 for s in self.size]
        return Pool2(kind, self.d)

    def flat_dim(self) -> int:
        n = self.channels
        for s in self.size:
            n *= s
        return n

    def feature_dim(self, features: nn.Module) -> int:
        was_training = features.training
        features.eval()  # no batch-norm statistics updated by the probe
        with torch.no_grad():
            dim = features(torch.zeros(2, *self.input_shape)).shape[1]
        features.train(was_training)
        return int(dim)

    # architectures
    def mlp(self) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        n = self.flat_dim()
        for _ in range(self.cfg.depth):
            layers += [nn.Linear(n, self.cfg.width), self.act()]
            n = self.cfg.width
        return nn.Sequential(*layers)

    def convnet(self) -> nn.Module:
        layers: list[nn.Module] = []
        for _ in range(self.cfg.depth):
            layers += self.conv_block(self.cfg.width) + [self.pool("avg")]
        return nn.Sequential(*layers, nn.Flatten())

    def lenet(self) -> nn.Module:
        layers = self.conv_block(6, 5) + [self.pool("max")]
        layers += self.conv_block(16, 5) + [self.pool("max")]
        n = self.flat_dim()
        return nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(n, 120), self.act(), nn.Linear(120, 84), self.act()
        )

    def alexnet(self) -> nn.Module:
        layers = self.conv_block(128, 5) + [self.pool("max")]
        layers += self.conv_block(192, 5) + [self.pool("max")]
        layers += self.conv_block(256, 3) + self.conv_block(192, 3) + self.conv_block(192, 3)
        layers += [self.pool("max"), nn.Flatten()]
        return nn.Sequential(*layers)

    def vgg11(self) -> nn.Module:
        layers: list[nn.Module] = []
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
            layers += [self.pool("max")] if v == "M" else self.conv_block(int(v))
        return nn.Sequential(*layers, nn.Flatten())

    def resnet18(self) -> nn.Module:
        layers: list[nn.Module] = [self.conv(64, 3, bias=False), self.norm(64), self.act()]
        for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [self.basic_block(c, stride), self.basic_block(c, 1)]
        pool = nn.AdaptiveAvgPool1d(1) if self.d == 1 else nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(*layers, pool, nn.Flatten())

    def basic_block(self, c_out: int, stride: int) -> nn.Module:
        c_in = self.channels
        conv1 = self.conv(c_out, 3, stride, bias=False)
        norm1, act1 = self.norm(c_out), self.act()
        conv2 = self.conv(c_out, 3, 1, bias=False)
        norm2 = self.norm(c_out)
        shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            shortcut = nn.Sequential(
                self.conv_cls(c_in, c_out, 1, stride=stride, bias=False), self.norm(c_out)
            )
        return _BasicBlock(nn.Sequential(conv1, norm1, act1, conv2, norm2), shortcut, self.act())


class Pool2(nn.Module):
    """Average or max pooling by 2 (floor), as a reshape and a reduction.

    The same result as nn.AvgPool{1,2}d(2) / nn.MaxPool{1,2}d(2), about twice as fast on CPU
    (those go through the generic 2D pooling kernels), and plain tensor ops under vmap.
    """

    def __init__(self, kind: Literal["avg", "max"], dims: int):
        super().__init__()
        self.kind, self.dims = kind, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1 and _FAST_KERNELS:  # the same sums as the reshape below, fewer ops
            even = x.shape[-1] // 2 * 2
            a, b = x[..., 0:even:2], x[..., 1:even:2]
            return (a + b) * 0.5 if self.kind == "avg" else torch.maximum(a, b)
        if self.dims == 1:
            n, c, length = x.shape
            x = x[..., : length // 2 * 2].reshape(n, c, length // 2, 2)  # (N, C, L/2, 2)
            red = (-1,)
        else:
            n, c, h, w = x.shape
            x = x[..., : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)  # (N, C, H/2, 2, W/2, 2)
            red = (3, 5)
        return x.mean(red) if self.kind == "avg" else x.amax(red)

    def extra_repr(self) -> str:
        return f"{self.kind}, {self.dims}d"


class Conv1d(nn.Conv1d):
    """nn.Conv1d (same parameters, initialisation and state dict) that on the CPU, within
    `channels_last_conv1d()`, runs as a
    2D convolution of height 1 in channels-last memory: measured 2.2x faster than Conv1d's
    kernel on (100, 128, 20) inputs, forward and backward, 1 thread (BENCHMARKS.md). Strided
    convolutions (resnet18's downsampling) keep nn.Conv1d's kernel: through the channels-
    last path resnet18's input gradient was 1% off float64 (the reference: 2e-5). Other
    devices, and `reference_kernels()`, use nn.Conv1d's own forward too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_FAST_KERNELS and _CL_CONV1D and x.device.type == "cpu" and self.stride == (1,) and self.padding_mode == "zeros"
                and isinstance(self.padding, tuple) and not _under_vmap(x, self.weight)):
            return super().forward(x)
        cl = torch.channels_last
        w = self.weight.unsqueeze(2).contiguous(memory_format=cl)
        out = F.conv2d(x.unsqueeze(2).contiguous(memory_format=cl), w, self.bias, 1,
                       (0, self.padding[0]), (1, self.dilation[0]), self.groups)
        return out.squeeze(2).contiguous()  # back to (N, C, L): the norms are faster on it


def _under_vmap(*tensors: torch.Tensor) -> bool:
    """Whether any tensor is batched by torch.func.vmap (memory formats are not, there)."""
    return any(torch._C._functorch.is_batchedtensor(t) for t in tensors)


class _BasicBlock(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module):
        super().__init__()
        self.body, self.shortcut, self.act = body, shortcut, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def seeded_network(
    cfg: NetConfig, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> Net:
    """`build_network` with its initialisation drawn from `seed`, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(cfg, input_shape, num_classes)
