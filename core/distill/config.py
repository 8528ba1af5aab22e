"""What one distillation run is: base method, synthetic set, PTM term, evaluation protocol.

Optimiser settings from the papers: synthetic set by SGD with momentum 0.5; lr_img 1.0
(DM) or 0.1 (DC; set it); DC network lr 0.01; real batch 256 per class (DM) / 256 (DC).
Evaluation protocol: SGD 0.01, momentum 0.9, weight decay 5e-4, `eval_epochs` epochs, lr
x0.1 at half, DSA; final-epoch accuracy of `eval_nets` fresh networks.

Allowed values of the `Literal` fields are checked by whoever builds the config from
user input (the platform, with `typing.get_args`); `__post_init__` checks only what a type
cannot say (ranges), naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from core.distill.augment import DiffAugment
from core.distill.guidance import CosineOn, PTMAggregation, PTMLoss
from core.distill.methods import dc_loops
from core.distill.networks import Arch, NetConfig
from core.distill._checks import require
from core.distill.train import Precision, TrainConfig


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run: base method, synthetic set, PTM term, evaluation."""

    method: Literal["dm", "dc"] = "dm"
    """Base objective: dm (distribution matching) or dc (gradient matching)."""
    ipc: int = 10
    """Synthetic images (samples) per class."""
    iterations: int = 1000
    """Distillation iterations (DM: one SGD step each; DC: one outer loop each)."""
    lr_img: float = 1.0
    """Learning rate of the synthetic set (DM paper: 1.0; DC paper: 0.1). Under instance norm
    the embedding is scale-invariant, so the synthetic set's norm only grows; at IPC 1 on
    MNIST-1D its std reaches ~7 within 30 iterations at 1.0 (~2 at 0.1): see `syn_norm`."""
    momentum_img: float = 0.5
    """SGD momentum of the synthetic set (both papers)."""
    syn_norm: Literal["none", "sample"] = "none"
    """none: the synthetic set moves freely (the papers); sample: after every step each
    synthetic sample is rescaled about its mean to the mean per-sample std of the real
    training data, so its scale cannot drift away from the data the evaluation tests on."""
    batch_real: int = 256
    """Real samples drawn per class each iteration."""
    init: Literal["real", "noise"] = "real"
    """Initialise the synthetic set from random real samples of each class, or N(0, 1) noise."""
    dsa: bool = True
    """Differentiable Siamese augmentation while distilling."""
    dsa_strategy: str = ""
    """DSA ops joined by "_"; empty = the default for the input (see augment.py)."""
    net: NetConfig = NetConfig()
    """Network drawn fresh each iteration to distil with (the literature's ConvNet)."""
    ptm_loss: PTMLoss = "none"
    """PTM guidance formulation: none (base method alone), ce (CLoM), kl, mse, cosine."""
    ptm_aggregation: PTMAggregation = "single"
    """single: one random PTM per iteration; ensemble: mean of the losses of all PTMs."""
    alpha: float = 0.1
    """Strength of the PTM term (0 or ptm_loss none: off). Its meaning follows alpha_mode."""
    alpha_mode: Literal["absolute", "relative"] = "absolute"
    """absolute: L = L_base + alpha * L_ptm (the paper). relative: alpha is the target ratio
    of the PTM term's gradient norm on x_syn to the base term's; the weight of L_ptm is set
    each step from a running estimate of the two norms, so formulations whose losses differ
    in scale are compared at the same strength."""
    temperature: float = 1.0
    """Temperature T of the kl formulation (targets and predictions alike)."""
    cosine_on: CosineOn = "logits"
    """cosine formulation on the PTM's logits or on its penultimate features."""
    dc_outer_loop: int = 0
    """DC: matching steps per fresh network; 0 = the DC paper's value for this IPC."""
    dc_inner_loop: int = 0
    """DC: network updates between matching steps; 0 = the DC paper's value for this IPC."""
    dc_lr_net: float = 0.01
    """DC: learning rate of the network updated on the synthetic set."""
    eval_every: int = 200
    """Iterations between evaluations (0: only at the end)."""
    eval_arch: Arch = "convnet"
    """Architecture the IPC accuracy is measured with (the same as `net` in the literature)."""
    cross_arch: tuple[Arch, ...] = ()
    """Other architectures to evaluate on at the end (cross-architecture generalisation)."""
    eval_nets: int = 5
    """Fresh networks trained on the synthetic set per evaluation (mean +- std over them)."""
    cross_arch_nets: int = 0
    """Networks per cross-architecture evaluation; 0 = eval_nets. Fewer is cheaper: the
    error bars of a study come from its seeds, one network per seed is a valid sample."""
    eval_epochs: int = 300
    """Epochs each evaluation network is trained (lr x0.1 at half)."""
    eval_dsa: bool = True
    """DSA while training the evaluation networks (as DSA/DM evaluate)."""
    device: str = "auto"
    """auto (cuda when available) or a torch device string."""
    precision: Precision = "auto"
    """Arithmetic of the networks' forward passes, in distillation and evaluation alike:
    fp32; bf16 (torch.autocast in bfloat16 on the tensors' device; parameters, the
    synthetic set and all optimisers stay float32); or auto, bf16 where the device computes
    bfloat16 in hardware (a CUDA GPU that supports it, a CPU with AVX512_BF16 or AMX) and
    fp32 elsewhere, where bfloat16 is converted in software and runs slower than float32.
    Trials report what auto became as distill/bf16; `--set distill.precision=fp32` pins
    float32 (a study whose trials may land on different kinds of node should pin one). On
    an AVX512_BF16 CPU, bf16 ran DM iterations 1.38x and trained evaluation ConvNets
    1.23x (AlexNets 1.32x) faster than fp32, test accuracy within noise of fp32's
    (BENCHMARKS.md)."""

    def __post_init__(self) -> None:
        require(self.ipc >= 1, self, "ipc", "must be >= 1")
        require(self.iterations >= 0, self, "iterations", "must be >= 0")
        require(self.lr_img > 0, self, "lr_img", "must be > 0")
        require(self.batch_real >= 1, self, "batch_real", "must be >= 1")
        require(self.alpha >= 0, self, "alpha", "must be >= 0")
        require(self.temperature > 0, self, "temperature", "must be > 0")
        require(self.eval_every >= 0, self, "eval_every", "must be >= 0")
        require(self.eval_nets >= 1, self, "eval_nets", "must be >= 1")
        require(self.cross_arch_nets >= 0, self, "cross_arch_nets", "must be >= 0")
        require(self.eval_epochs >= 1, self, "eval_epochs", "must be >= 1")
        require(self.precision in get_args(Precision), self, "precision", f"must be one of {get_args(Precision)}")
        if self.dsa_strategy:  # unknown ops fail here; 2D-only ops on 1D data fail in check()
            try:
                DiffAugment(2, self.dsa_strategy)
            except ValueError as exc:
                raise ValueError(f"DistillConfig.dsa_strategy: {exc}") from None

    @property
    def uses_ptm(self) -> bool:
        """Whether the PTM term is on (a pool is needed): the one place this is decided."""
        return self.ptm_loss != "none" and self.alpha > 0

    @property
    def dc_loops(self) -> tuple[int, int]:
        """(outer, inner) loop counts of DC, with 0 replaced by the paper's value."""
        outer, inner = dc_loops(self.ipc)
        return (self.dc_outer_loop or outer, self.dc_inner_loop or inner)

    @property
    def eval_every_or_end(self) -> int:
        """Iterations between evaluations, the whole run when eval_every is 0."""
        return self.eval_every or max(self.iterations, 1)

    def eval_net(self, arch: str) -> NetConfig:
        """The NetConfig an evaluation on `arch` uses: `net` itself, or `arch` with its norm."""
        if arch == self.net.arch:
            return self.net
        return NetConfig(arch=arch, norm=self.net.norm, activation=self.net.activation)  # type: ignore[arg-type]

    def eval_nets_of(self, arch: str) -> int:
        """Networks an evaluation on `arch` trains."""
        return self.eval_nets if arch == self.eval_arch else (self.cross_arch_nets or self.eval_nets)

    @property
    def eval_train(self) -> TrainConfig:
        """The recipe every evaluation network is trained with."""
        return TrainConfig(epochs=self.eval_epochs, precision=self.precision)
