"""PTM-guided dataset distillation, one experiment: stages, distillation, metric windows.

    for step, metrics, state in run(ExperimentConfig(), stage=my_cache):
        print(step, metrics["test/acc"])

Shared stages (through the caller's `stage(name, config, build)`): the dataset, the PTM
pool (only when the PTM term is on; trained on the target dataset unless `ptm.data` names
another) and the references (floor: random real subsets; ceiling: the full training set
under the evaluation protocol). Every `distill.eval_every` iterations `run` yields one
window: the evaluation of the synthetic set on `distill.eval_arch` (val/acc, test/acc),
the window's mean losses, gradient ratio and cost, the synthetic set's statistics, the
references and the PTMs' accuracies; the last window adds the cross-architecture ones and
saves a picture of the synthetic set when `artifacts` is given.

`check(cfg)` finds, without training, a config that cannot run on its dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.distill.config import DistillConfig
from core.distill.data import DataConfig, Dataset, Stage, load_dataset, staged_dataset
from core.distill.distiller import Distiller, grad_ratio
from core.distill.evaluate import evaluate_synthetic
from core.distill.networks import ARCHS
from core.distill.ptm import PTMPoolConfig
from core.distill.train import resolve_precision
from core.errors import ConfigError

ACCURACIES = ("val/acc", "test/acc", "test/acc_cross", *(f"test/acc_{a}" for a in ARCHS),
              "ref/floor_acc", "ref/ceiling_acc", "ptm/acc_min", "ptm/acc_mean")
"""Proportions: each is reported with `<metric>:n`, the evaluation examples behind it."""

METRICS: dict[str, str] = {
    **{m: "max" for m in ACCURACIES},
    "test/acc_std": "min",
    **{f"test/acc_std_{a}": "min" for a in ARCHS},
    "ref/floor_acc_std": "min",
    "ref/ceiling_below_floor": "min",
    "loss/base": "min",
    "loss/ptm": "min",
    "loss/total": "min",
    "distill/ptm_grad_ratio": "max",
    "distill/ptm_weight": "max",
    "distill/syn_mean": "min",
    "distill/syn_std": "min",
    "distill/syn_std_ratio": "min",
    "distill/bf16": "max",
    "time/sec_per_iter": "min",
    "time/ptm_share": "min",
    "time/eval_sec": "min",
    "cost/ptm_forwards": "min",
}


@dataclass(frozen=True)
class ExperimentConfig:
    """One distillation trial: dataset, distillation, PTM pool, references."""

    seed: int = 0
    """Seed of the distillation and its evaluation networks (the platform varies it)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Target dataset."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Base method, synthetic set, PTM term and evaluation protocol."""
    ptm: PTMPoolConfig = field(default_factory=PTMPoolConfig)
    """The PTM pool (built only when the PTM term is on); its own `seed` is the pool's,
    shared by all trials, not the trial's."""
    references: bool = True
    """Report the floor (random real subsets, same IPC) and the ceiling (full train set)."""
    reference_subsets: int = 3
    """Random subsets the floor averages over (each evaluated like a synthetic set)."""
    reference_ceiling_nets: int = 1
    """Networks trained for the ceiling (0: no ceiling)."""
    reference_ceiling_patience: int = 20
    """Early stopping of the ceiling on validation accuracy (see CeilingConfig.patience)."""

    @property
    def pool(self) -> PTMPoolConfig:
        """The PTM pool as built: trained on `data` unless `ptm.data` names a dataset."""
        return self.ptm if self.ptm.data is not None else replace(self.ptm, data=self.data)


def run(cfg: ExperimentConfig, stage: Stage, state: dict | None = None,
        artifacts: Path | None = None) -> Iterator[tuple[int, dict[str, float], dict]]:
    """(iteration, metrics, state) per evaluation window; resumes from a yielded state."""
    dcfg = cfg.distill
    data = staged_dataset(cfg.data, stage)
    ptms, fixed = _shared_stages(cfg, data, stage)

    d = Distiller(dcfg, data, ptms, seed=cfg.seed)
    if state is not None:
        d.load_state_dict(state)
    elif dcfg.iterations == 0:  # the initialisation itself, evaluated once
        yield 0, {**_evaluate(d, dcfg.cross_arch), **fixed}, d.state_dict()
        return
    window: list[dict[str, float]] = []
    while d.iteration < dcfg.iterations:
        window.append(d.step())
        last = d.iteration == dcfg.iterations
        if not (last or d.iteration % dcfg.eval_every_or_end == 0):
            continue
        metrics = _evaluate(d, dcfg.cross_arch if last else ())
        metrics.update(_window_means(window))
        metrics.update(fixed)
        if last and artifacts is not None:
            from core.distill.pictures import save_picture

            save_picture(*d.synthetic_set(), Path(artifacts) / "synthetic.png",
                         title=f"{dcfg.method} ipc={dcfg.ipc} ptm_loss={dcfg.ptm_loss}")
        yield d.iteration, metrics, d.state_dict()
        window = []


def _evaluate(d: Distiller, archs: tuple[str, ...]) -> dict[str, float]:
    """The protocol on the current synthetic set, seeded by (trial seed, iteration) so it
    leaves the distillation's random stream alone."""
    x, y = d.synthetic_set(device=d.device)
    metrics = evaluate_synthetic(d.cfg, d.data, x, y, seed=d.seed * 100_003 + d.iteration, archs=archs)
    # what `precision: auto` became on this trial's device: the arithmetic behind its numbers
    metrics["distill/bf16"] = float(resolve_precision(d.cfg.precision, d.device) == "bf16")
    return {**metrics, **d.statistics()}


def _window_means(window: list[dict[str, float]]) -> dict[str, float]:
    """A window's steps as means; the PTM term's strength as the ratio of its mean gradient
    norm to the base term's; the PTM's time as a share of the step time."""
    n = len(window)
    means = {k: sum(s[k] for s in window) / n for k in window[0]
             if k not in ("time/ptm_sec", "distill/base_grad_norm", "distill/ptm_grad_norm")}
    means["distill/ptm_grad_ratio"] = grad_ratio(window)
    means["time/ptm_share"] = (sum(s["time/ptm_sec"] for s in window)
                               / max(sum(s["time/sec_per_iter"] for s in window), 1e-12))
    return means


def _shared_stages(cfg: ExperimentConfig, data: Dataset, stage: Stage) -> tuple[list | None, dict[str, float]]:
    """The PTM pool's frozen networks (None when the term is off) and the fixed metrics:
    references and the PTMs' test accuracies (on the pool's dataset)."""
    from core.distill.ptm import build_pool, load_pool
    from core.distill.references import CeilingConfig, ReferenceConfig, build_references, load_references

    dcfg = cfg.distill
    net = dcfg.eval_net(dcfg.eval_arch)
    wanted: dict[str, tuple] = {}
    if cfg.references:
        floor = ReferenceConfig(data=cfg.data, ipc=dcfg.ipc, net=net, eval_nets=dcfg.eval_nets,
                                subsets=cfg.reference_subsets, eval_epochs=dcfg.eval_epochs,
                                eval_dsa=dcfg.eval_dsa, device=dcfg.device)
        wanted["floor"] = ("references", floor, lambda out: build_references(floor, data, out))
        if cfg.reference_ceiling_nets:
            ceiling = CeilingConfig(data=cfg.data, net=net, nets=cfg.reference_ceiling_nets,
                                    epochs=dcfg.eval_epochs, patience=cfg.reference_ceiling_patience,
                                    dsa=dcfg.eval_dsa, device=dcfg.device)
            wanted["ceiling"] = ("ceiling", ceiling, lambda out: build_references(ceiling, data, out))
    if dcfg.uses_ptm:
        pool = cfg.pool
        source = data if pool.data == cfg.data else staged_dataset(pool.data, stage)  # type: ignore[arg-type]
        wanted["pool"] = ("ptm_pool", pool, lambda out: build_pool(pool, source, out))
    # Trials that start together wait on each other's stage locks; asked for in an order
    # that turns with the seed, they build different stages side by side instead.
    names = list(wanted)
    turn = cfg.seed % max(len(names), 1)
    folders = {name: stage(*wanted[name]) for name in names[turn:] + names[:turn]}

    fixed: dict[str, float] = {}
    if "floor" in folders:
        r = load_references(folders["floor"])
        fixed.update({"ref/floor_acc": r["floor/test_acc"], "ref/floor_acc:n": r["floor/test_n"],
                      "ref/floor_acc_std": r["floor/test_acc_std"]})
    if "ceiling" in folders:
        c = load_references(folders["ceiling"])
        fixed.update({"ref/ceiling_acc": c["ceiling/test_acc"], "ref/ceiling_acc:n": c["ceiling/test_n"],
                      "ref/ceiling_below_floor": float(c["ceiling/test_acc"] <= fixed["ref/floor_acc"])})
    if "pool" not in folders:
        return None, fixed
    ptms = load_pool(folders["pool"])
    accs = [p.test_acc for p in ptms]
    n = float(json.loads((folders["pool"] / "pool.json").read_text())["test_n"])
    fixed.update({"ptm/acc_min": min(accs), "ptm/acc_min:n": n,
                  "ptm/acc_mean": sum(accs) / len(accs), "ptm/acc_mean:n": n})
    return [p.net for p in ptms], fixed


def check(cfg: ExperimentConfig) -> None:
    """Raise ConfigError naming the key when a network the config names cannot take the
    dataset's inputs, or an augmentation cannot apply to them; trains nothing.

    Every network (PTM pool, distillation, evaluation, cross-architecture) is built for
    the target's input shape and runs one sample forward; PTMs trained on another dataset
    (`ptm.data`) must take the target's inputs and predict its classes.
    """
    import torch

    from core.distill.augment import DiffAugment
    from core.distill.networks import build_network

    target = _load_for_check(cfg.data, "data")
    shape, classes = target.input_shape, target.num_classes
    dcfg = cfg.distill
    named = [("distill.net", dcfg.net), ("distill.eval_arch", dcfg.eval_net(dcfg.eval_arch))]
    named += [("distill.cross_arch", dcfg.eval_net(a)) for a in dcfg.cross_arch]
    if dcfg.uses_ptm:
        if cfg.ptm.data is not None and cfg.ptm.data != cfg.data:
            source = _load_for_check(cfg.ptm.data, "ptm.data")
            if (source.input_shape, source.num_classes) != (shape, classes):
                raise ConfigError(
                    "ptm.data", f"PTMs trained on {cfg.ptm.data.name!r} take inputs of shape "
                    f"{source.input_shape} with {source.num_classes} classes; the target dataset "
                    f"{cfg.data.name!r} has {shape} with {classes} classes (leave ptm.data unset to "
                    f"train the pool on the target dataset)")
        named += [("ptm.architectures", cfg.ptm.net(a)) for a in cfg.ptm.architectures]
    x = torch.zeros(1, *shape)
    for key, net_cfg in named:
        try:
            net = build_network(net_cfg, shape, classes).eval()
            with torch.no_grad():
                net(x)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(key, f"{net_cfg.arch} cannot take inputs of shape {shape} "
                                   f"of dataset {cfg.data.name!r}: {exc}") from None
    if dcfg.dsa or dcfg.eval_dsa:
        try:
            DiffAugment.for_input(shape, dcfg.dsa_strategy or None)
        except ValueError as exc:
            raise ConfigError("distill.dsa_strategy", f"not for inputs of shape {shape}: {exc}") from None


def _load_for_check(data: DataConfig, key: str) -> Dataset:
    try:
        return load_dataset(data)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
