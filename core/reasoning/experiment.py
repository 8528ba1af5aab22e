"""One experiment of the compute-optimal sampling study, top to bottom:

1. zoo        WC and SE trained from scratch (shared stage)
2. samples    the paradigm's generator samples the train problems at its budget (shared)
3. verifier   ORM / learned PRM, when the filter needs one (shared)
4. filter     final_answer | process | orm | none -> the kept set
5. SFT        the paradigm's student, from its zoo checkpoint, on the kept set,
              early stopping on val pass@1
6. evaluate   best student on the test split: pass@1 (greedy, sampled), maj@k

:func:`run` is a generator: it yields ``(step, metrics, state)`` after the data stages
(step 0) and at every SFT evaluation, and last the test metrics; ``state`` resumes it.
Shared stages come from a ``stage(name, config, build)`` function supplied by the caller
(ablab's content-addressed stage cache; :func:`local_stage` for notebooks and tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch

from core.reasoning.evaluate import EvalConfig, evaluate
from core.reasoning.filters import FilterConfig, apply_filter
from core.reasoning.models import count_params, default_device, load_causal_lm
from core.reasoning.pipeline import (
    Backends, SampleSet, SamplingConfig, build_reward_model, build_samples, draw_samples, kept_examples,
    kept_metrics, paradigm_roles, sample_metrics, samples_per_problem,
)
from core.reasoning.rewards import ExactStepPRM, LearnedRM, RMConfig
from core.reasoning.sampling import HFBackend
from core.reasoning.sft import SFTConfig, SFTRunner
from core.reasoning.tasks import Task, TaskConfig, make_task
from core.reasoning.zoo import ZooConfig, build_zoo, read_zoo

Stage = Callable[[str, object, Callable[[Path], None]], Path]


@dataclass(frozen=True)
class ModelsConfig:
    """Real models instead of the zoo: any Hugging Face causal-LM directory as the weak-cheap
    and strong-expensive generator, student and verifier base (on a GPU cluster, e.g.
    Gemma 2B and 9B). Both or neither; with both, no zoo is trained."""

    wc_dir: str = ""
    """The weak-cheap model's directory."""
    se_dir: str = ""
    """The strong-expensive model's directory."""

    def __post_init__(self) -> None:
        if bool(self.wc_dir) != bool(self.se_dir):
            raise ValueError("ModelsConfig.wc_dir: give both wc_dir and se_dir, or neither (the zoo)")

    @property
    def given(self) -> bool:
        return bool(self.wc_dir)


@dataclass(frozen=True)
class Models:
    """The two roles' directories and parameter counts, from the zoo or from ``models``."""

    dirs: dict[str, Path]
    params: dict[str, int]
    source: dict
    """What the models are, for the keys of the stages built from them."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one trial needs; defaults are the baseline of the filtering study."""

    paradigm: Literal["knowledge_distillation", "self_improvement", "weak_to_strong",
                      "weak_to_strong_removed"] = "weak_to_strong"
    """Who generates and who learns (see core.reasoning.pipeline)."""
    zoo: ZooConfig = field(default_factory=ZooConfig)
    """The WC/SE zoo of tiny LMs (and the procedural task's settings)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The problems: arith (the zoo's procedural task), gsm8k files or a reasoning-gym dataset."""
    models: ModelsConfig = field(default_factory=lambda: ModelsConfig())
    """Hugging Face directories standing in for the zoo's WC and SE models."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling of the training problems."""
    filter: FilterConfig = field(default_factory=FilterConfig)
    """The filter applied to the samples."""
    rm: RMConfig = field(default_factory=RMConfig)
    """Verifier training (orm filter, or process filter with prm=learned)."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        lr=5e-4, warmup_steps=20, max_steps=300, batch_size=32, eval_every=50, patience=3))
    """Student fine-tuning (from its zoo checkpoint, so a lower LR than the zoo's)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation of the best student."""
    val_size: int = 100
    """Validation problems for early stopping."""
    seed: int = 0
    """Seeds sampling, verifier and SFT (the zoo keeps its own seed: it is shared)."""

    def __post_init__(self) -> None:
        if self.filter.method == "process" and self.task.kind != "arith":
            # both PRMs need exact step labels: the step checker is one, the learned PRM
            # is trained on them, and only the procedural task has them
            raise ValueError(f"ExperimentConfig.filter.method: process needs task.kind arith "
                             f"(exact step labels), not {self.task.kind}")


def config_hash(obj) -> str:
    """A stable hash of a (nested) dataclass / JSON-able config."""
    data = asdict(obj) if is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def local_stage(root: str | Path) -> Stage:
    """A content-addressed stage cache in ``root`` for use without ablab (one process)."""
    root = Path(root)

    def stage(name: str, config, build: Callable[[Path], None]) -> Path:
        path = root / f"{name}-{config_hash(config)}"
        if not path.exists():
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root))  # build aside, then rename: never half-built
            build(tmp)
            if path.exists():
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, path)
        return path

    return stage


def run(cfg: ExperimentConfig, stage: Stage, state: dict | None = None,
        device=None, log=print) -> Iterator[tuple[int, dict[str, float], dict]]:
    device = device or default_device()
    task = experiment_task(cfg)
    gen, student = paradigm_roles(cfg.paradigm)

    # 1-2. models (the zoo: a shared stage) and samples (shared) ---------------------------
    models = resolve_models(cfg, stage, device, log)
    prm = orm = None
    f = cfg.filter
    # one backend per generator for all of the trial's sampling; closed before SFT (a vLLM
    # engine holds the GPU)
    with Backends(_with_seed(cfg.sampling, cfg.seed), device) as backends:  # the engine's seed
        ss, n = samples_stage(cfg, gen, models, stage, backends)

        # 3-4. verifier and filter ------------------------------------------------------
        if f.method == "process" and f.prm == "exact":
            prm = ExactStepPRM(task)
        elif f.method == "process":
            prm = _verifier(cfg, "prm", gen, models, task, stage, device, backends)
        elif f.method == "orm":
            orm = _verifier(cfg, "orm", gen, models, task, stage, device, backends)
    kept = apply_filter(f, task, ss.problems, ss.texts(), prm=prm, orm=orm)
    data = {**sample_metrics(ss), **kept_metrics(ss, kept), "data/samples_per_problem": float(n)}
    examples = kept_examples(task, ss, kept)

    # 5. SFT of the student, resumable ----------------------------------------------------
    model, tok = load_causal_lm(models.dirs[student], device=device)
    val = task.problems("val", cfg.val_size)
    runner = SFTRunner(model, tok, task, examples, val, _with_seed(cfg.sft, cfg.seed))
    if state is not None:
        runner.load_state_dict(state)
    else:
        base = {"val/pass_at_1": _val_pass1(runner)}
        yield 0, {**data, **base, "val/best_pass_at_1": base["val/pass_at_1"]}, runner.state_dict()
    if not examples:
        log("[experiment] the filter kept nothing: the student is its zoo checkpoint")
        runner.done = True
    for m in runner.train():
        yield m["step"], {k: v for k, v in m.items() if k != "step"}, runner.state_dict()

    # 6. test evaluation of the best student -------------------------------------------------
    best = runner.best_model()
    test = evaluate(HFBackend(best, tok), task, task.problems("test", cfg.eval.n_problems),
                    _with_seed(cfg.eval, cfg.seed))
    yield runner.step + 1, {**data, **test, "val/best_pass_at_1": max(runner.best, 0.0)}, runner.state_dict()


def experiment_task(cfg: ExperimentConfig) -> Task:
    return make_task(cfg.task, cfg.zoo.task)


def zoo_stage(cfg: ExperimentConfig, stage: Stage, device=None, log=print) -> Path:
    """The WC/SE zoo's directory (built on first use)."""
    return stage("zoo", cfg.zoo, lambda p: build_zoo(cfg.zoo, p, device or default_device(), log))


def resolve_models(cfg: ExperimentConfig, stage: Stage, device=None, log=print) -> Models:
    """The WC and SE models: the given directories, or the zoo (built on first use)."""
    task_key = {} if cfg.task == TaskConfig() else {"task": asdict(cfg.task)}
    if cfg.models.given:
        dirs = {"wc": Path(cfg.models.wc_dir), "se": Path(cfg.models.se_dir)}
        return Models(dirs, {r: count_params(d) for r, d in dirs.items()},
                      {"models": asdict(cfg.models), **task_key})
    zoo_dir = zoo_stage(cfg, stage, device, log)
    params = {r: m["params"] for r, m in read_zoo(zoo_dir)["models"].items()}
    return Models({r: zoo_dir / r for r in params}, params, {"zoo": asdict(cfg.zoo), **task_key})


def samples_stage(cfg: ExperimentConfig, gen: str, models: Models, stage: Stage,
                  backends: Backends) -> tuple[SampleSet, int]:
    """The sample set of generator ``gen`` at its budget under ``cfg.sampling`` (seeded by
    ``cfg.seed``), and its samples per problem; ``backends`` lends the sampling backend."""
    task = experiment_task(cfg)
    sampling = _with_seed(cfg.sampling, cfg.seed)
    n = samples_per_problem(sampling, gen, models.params["wc"], models.params["se"])
    samples_dir = stage(
        "samples", {**models.source, "generator": gen, "n": n, "sampling": asdict(sampling)},
        lambda p: build_samples(backends.get(gen, models.dirs[gen]), task, n, sampling, p))
    return SampleSet.load(samples_dir), n


def _val_pass1(runner: SFTRunner) -> float:
    """The student before fine-tuning (the zoo checkpoint) is the first 'best' model."""
    from core.reasoning.sft import pass_at_1_greedy

    acc = pass_at_1_greedy(runner.model, runner.tok, runner.task, runner.val_problems,
                           runner.cfg.max_new_tokens)
    runner.best = acc
    runner.best_state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    return acc


def _verifier(cfg: ExperimentConfig, kind: str, gen: str, models: Models, task,
              stage: Stage, device, backends: Backends) -> LearnedRM:
    """A verifier trained on the generator's samples of separate (pretrain) problems."""
    rm_cfg = _with_seed(cfg.rm, cfg.seed)
    key = {**models.source, "generator": gen, "kind": kind, "rm": asdict(rm_cfg),
           "sampling": asdict(cfg.sampling)}

    def build(path: Path) -> None:
        samp = _with_seed(cfg.sampling, rm_cfg.seed)
        ss = draw_samples(backends.get(gen, models.dirs[gen]), task,
                          task.problems("pretrain", rm_cfg.n_problems), rm_cfg.samples_per_problem, samp)
        build_reward_model(models.dirs[rm_cfg.base], task, ss, kind, rm_cfg, path, device=device)

    rm_dir = stage(kind, key, build)
    return LearnedRM.from_lm_dir(rm_dir, task, kind, device=device)


def _with_seed(c, seed: int):
    from dataclasses import replace

    return replace(c, seed=seed)


def _main() -> None:  # python -m core.reasoning.experiment CACHE_DIR [filter] [paradigm]
    import sys

    torch.set_num_threads(1)
    filt = sys.argv[2] if len(sys.argv) > 2 else "final_answer"
    paradigm = sys.argv[3] if len(sys.argv) > 3 else "weak_to_strong"
    cfg = ExperimentConfig(paradigm=paradigm, filter=FilterConfig(method=filt))
    for step, m, _ in run(cfg, local_stage(sys.argv[1])):
        print(step, json.dumps({k: round(v, 4) for k, v in m.items()}), flush=True)


if __name__ == "__main__":
    _main()
