"""PTM-guided dataset distillation as a trial: config -> core/distill -> trial.report.

Shared stages (built once per config through the stage cache): the dataset, the PTM pool
(only when the PTM term is on) and the references (random real subset = floor, full train
set = ceiling). Every `distill.eval_every` iterations the trial reports the evaluation of
the synthetic set on `distill.eval_arch` (val/acc for early stopping, test/acc), the mean
losses and the cost of the window, and checkpoints the Distiller; the last report adds the
cross-architecture accuracies and saves a picture of the synthetic set.

`test/acc_cross` is the mean over `distill.cross_arch` (the architectures not used while
distilling), so the report's difference to the baseline IS the cross-architecture gain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ablab import trial
from core.distill.data import DataConfig
from core.distill.distill import DistillConfig
from core.distill.networks import ARCHS
from core.distill.ptm import PTMPoolConfig
from trainables._data import cached_dataset

METRICS: dict[str, str] = {
    "val/acc": "max",
    "test/acc": "max",
    "test/acc_std": "min",
    "test/acc_cross": "max",
    **{f"test/acc_{a}": "max" for a in ARCHS},
    **{f"test/acc_std_{a}": "min" for a in ARCHS},
    "ref/floor_acc": "max",
    "ref/floor_acc_std": "min",
    "ref/ceiling_acc": "max",
    "loss/base": "min",
    "loss/ptm": "min",
    "loss/total": "min",
    "time/sec_per_iter": "min",
    "time/ptm_share": "min",
    "time/eval_sec": "min",
    "cost/ptm_forwards": "min",
}


@dataclass(frozen=True)
class Config:
    """One distillation trial; `seed` replaces distill.seed (the platform varies it)."""

    seed: int = 0
    """Seed of the distillation and its evaluation networks."""
    data: DataConfig = field(default_factory=DataConfig)
    """Target dataset."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Base method, synthetic set, PTM term and evaluation."""
    ptm: PTMPoolConfig = field(default_factory=PTMPoolConfig)
    """The PTM pool (built only when distill.ptm_loss is not none)."""
    references: bool = True
    """Report the floor (random real subset, same IPC) and the ceiling (full train set)."""
    reference_subsets: int = 1
    """Random subsets the floor averages over (each evaluated like a synthetic set)."""
    reference_full_epochs: int = 30
    """Epochs of the ceiling's networks on the full training set (0: no ceiling)."""
    reference_full_nets: int = 1
    """Networks trained for the ceiling (one number in the report; one network is enough)."""


def train(cfg: Config) -> None:
    from core.distill.distill import Distiller
    from core.distill.pictures import save_picture
    from core.distill.ptm import build_pool, load_pool
    from core.distill.references import ReferenceConfig, build_references, load_references

    data = cached_dataset(cfg.data)
    dcfg = dataclasses.replace(cfg.distill, seed=cfg.seed)

    # the shared stages this trial needs, asked for together: a trial that finds one being
    # built by another trial builds the next instead of waiting
    from core.distill.references import CeilingConfig

    wanted: dict[str, tuple] = {}
    if dcfg.uses_ptm:
        wanted["ptm_pool"] = ("ptm_pool", cfg.ptm, lambda out: build_pool(cfg.ptm, cached_dataset(cfg.ptm.data), out))
    if cfg.references:
        net = dcfg.eval_net(dcfg.eval_arch)
        floor = ReferenceConfig(data=cfg.data, ipc=dcfg.ipc, net=net, eval_nets=dcfg.eval_nets,
                                subsets=cfg.reference_subsets, eval_epochs=dcfg.eval_epochs,
                                eval_dsa=dcfg.eval_dsa, device=dcfg.device)
        wanted["floor"] = ("references", floor, lambda out: build_references(floor, data, out))
        if cfg.reference_full_epochs:
            ceiling = CeilingConfig(data=cfg.data, net=net, nets=cfg.reference_full_nets,
                                    epochs=cfg.reference_full_epochs, device=dcfg.device)
            wanted["ceiling"] = ("ceiling", ceiling, lambda out: build_references(ceiling, data, out))
    folders = dict(zip(wanted, trial.stages(list(wanted.values()))))

    ptms = [p.net for p in load_pool(folders["ptm_pool"])] if "ptm_pool" in folders else None
    refs: dict[str, float] = {}
    if "floor" in folders:
        r = load_references(folders["floor"])
        refs = {"ref/floor_acc": r["floor/test_acc"], "ref/floor_acc_std": r["floor/test_acc_std"]}
    if "ceiling" in folders:
        refs["ref/ceiling_acc"] = load_references(folders["ceiling"])["ceiling/test_acc"]

    d = Distiller(dcfg, data, ptms)
    state = trial.restore()
    if state is not None:
        d.load_state_dict(state["distiller"])

    every = dcfg.eval_every or max(dcfg.iterations, 1)
    window: dict[str, list[float]] = {}
    while d.iteration < dcfg.iterations or (dcfg.iterations == 0 and state is None):
        if dcfg.iterations:
            for k, v in d.step().items():
                window.setdefault(k, []).append(v)
        last = d.iteration >= dcfg.iterations
        if not (last or d.iteration % every == 0):
            continue
        metrics = d.evaluate(archs=dcfg.cross_arch if last else ())
        if last:
            if dcfg.cross_arch:
                metrics["test/acc_cross"] = sum(metrics[f"test/acc_{a}"] for a in dcfg.cross_arch) / len(dcfg.cross_arch)
            save_picture(*d.synthetic_set(), trial.artifact_dir() / "synthetic.png",
                         title=f"{dcfg.method} ipc={dcfg.ipc} ptm_loss={dcfg.ptm_loss}")
        if window:
            n = len(window["time/sec_per_iter"])
            metrics.update({k: sum(v) / n for k, v in window.items() if k != "time/ptm_sec"})
            metrics["time/ptm_share"] = sum(window["time/ptm_sec"]) / max(sum(window["time/sec_per_iter"]), 1e-12)
        metrics.update(refs)
        trial.report(metrics, step=d.iteration, state={"distiller": d.state_dict()})
        window = {}
        if dcfg.iterations == 0:
            break
