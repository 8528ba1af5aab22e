"""One experiment of the compute-optimal sampling study, top to bottom:

1. zoo        WC and SE trained from scratch (shared stage), or given model directories
2. samples    the paradigm's generator samples the train problems at its budget (shared)
3. verifier   ORM / learned PRM, when the filter needs one, trained on samples of the
              "pretrain" problems, disjoint from the filtered, validation and test ones
4. filter     final_answer | process | process_oracle | calculator | orm | none -> kept set
5. SFT        the paradigm's student, from its zoo checkpoint, on the kept set,
              early stopping on val pass@1
6. evaluate   best fine-tuned student on the test split: pass@1 (greedy, sampled), maj@k

The student is the best *fine-tuned* model on validation, never the starting checkpoint:
``val/checkpoint_pass_at_1`` is the checkpoint's validation pass@1, ``sft/beat_checkpoint``
(1/0) whether the student beat it and ``sft/best_step`` the SFT step of the student, so a
filter whose data only hurt shows as such instead of reporting the untouched checkpoint.
When the filter keeps nothing there is no student: the checkpoint is tested, with
``sft/best_step`` 0 and ``sft/beat_checkpoint`` 0.

:func:`run` is a generator: it yields ``(step, metrics, state)`` after the data stages
(step 0) and at every SFT evaluation, and last the test metrics; ``state`` resumes it.
Metrics that are undefined for a run (e.g. the FPR of a set without a correct answer, the
filter's precision on a task without step labels) are NaN in the core and left out of what
:func:`run` yields, so a report shows them as missing (n/a), never as 0. Beside every proportion ``m`` over problems it
reports ``m:n``, the number of problems it was computed over.

Shared stages come from a ``stage(name, config, build) -> Path`` function supplied by the
caller: ablab's content-addressed stage cache (``ablab.trial.stage``, which also works
outside Ray inside ``ablab.trial.local(root)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from core.device import resolve_device
from core.errors import ConfigError
from core.reasoning.evaluate import EvalConfig, evaluate
from core.reasoning.filters import FilterConfig, apply_filter
from core.reasoning.metrics import with_counts
from core.reasoning.models import count_params, dir_digest, load_causal_lm
from core.reasoning.pipeline import (
    Backends, Paradigm, SampleSet, build_reward_model, build_samples, draw_samples,
    kept_examples, kept_metrics, paradigm_roles, sample_metrics,
)
from core.reasoning.rewards import LearnedRM, RMConfig
from core.reasoning.sampling import HFBackend, SamplingConfig, samples_per_problem
from core.reasoning.sft import SFTConfig, SFTRunner, pass_at_1_greedy
from core.reasoning.tasks import Task, TaskConfig, make_task
from core.reasoning.zoo import ZooConfig, build_zoo, read_zoo

Stage = Callable[[str, object, Callable[[Path], None]], Path]

# the parts whose seed is the trial's: derived (ExperimentConfig.seeded), never set
SEEDED_PARTS = ("sampling", "rm", "sft", "eval")

# filters that need step labels -> the task kinds that have them: the oracle needs exact
# labels (arith), the calculator GSM8K's annotations, the learned PRM either to train on
FILTER_TASK_KINDS: dict[str, tuple[str, ...]] = {
    "process_oracle": ("arith",),
    "calculator": ("gsm8k",),
    "process": ("arith", "gsm8k"),
}


# Every metric a trial reports, with its direction (the platform checks sweep files against it).
METRICS: dict[str, str] = {
    # the generator's samples of the training problems (k = all samples of a problem)
    "data/coverage": "max",
    "data/diversity": "max",
    "data/diversity_valid": "max",  # unique valid solutions (process-correct where labelled)
    "data/fpr": "min",
    "data/samples": "max",
    "data/samples_per_problem": "max",
    "data/correct": "max",
    "data/tokens": "min",
    "data/tokens_per_s": "max",
    "data/tokens_estimated": "min",  # 1: a server gave no token counts, data/tokens is an estimate
    # the kept set
    "filter/kept": "max",
    "filter/kept_frac": "max",
    "filter/coverage": "max",
    "filter/diversity": "max",
    "filter/diversity_valid": "max",
    "filter/fpr": "min",
    "filter/precision": "max",
    "filter/recall": "max",
    # the student
    "train/loss": "min",
    "time/train_s": "min",
    "val/pass_at_1": "max",
    "val/best_pass_at_1": "max",
    "val/checkpoint_pass_at_1": "max",  # the student's starting checkpoint, before SFT
    "sft/beat_checkpoint": "max",  # 1: the fine-tuned student beat its checkpoint on val
    "sft/best_step": "max",  # the SFT step of the student (0: none, the checkpoint)
    "test/pass_at_1": "max",
    "test/pass_at_1_sampled": "max",
    "test/maj_at_1": "max",
    "test/maj_at_4": "max",
    "test/maj_at_8": "max",
    "test/maj_at_16": "max",
}


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
            raise ConfigError("models.wc_dir", "give both wc_dir and se_dir, or neither (the zoo)")

    @property
    def given(self) -> bool:
        return bool(self.wc_dir)


@dataclass(frozen=True)
class Models:
    """The two roles' directories and parameter counts, from the zoo or from ``models``."""

    dirs: dict[str, Path]
    params: dict[str, int]
    source: dict
    """What the models are (the zoo's config, or the directories' content hashes), for
    the keys of the stages built from them."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one trial needs; defaults are the baseline of the filtering study."""

    paradigm: Paradigm = "weak_to_strong"
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
        lr=1e-4, warmup_steps=20, max_steps=300, batch_size=32, eval_every=50, patience=3))
    """Student fine-tuning from its zoo checkpoint: linear warm-up over 20 steps, cosine
    decay to a tenth over 300. Peak LR 1e-4, chosen on validation pass@1 of the shipped
    zoo (final_answer filter, seed 0): at 5e-4 the student fell below its checkpoint
    (0.66 -> 0.51), at 1e-4 it rose above it (0.74)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation of the best student."""
    val_size: int = 100
    """Validation problems for early stopping."""
    seed: int = 0
    """The trial's seed: seeds sampling, verifier, SFT and evaluation (``sampling.seed``
    and the like are derived from it and cannot be set). The zoo keeps its own seed
    (``zoo.seed``): it is shared by every trial."""

    def __post_init__(self) -> None:
        kinds = FILTER_TASK_KINDS.get(self.filter.method)
        if kinds is not None and self.task.kind not in kinds:
            raise ConfigError("filter.method", f"{self.filter.method} needs task.kind "
                              f"{' or '.join(kinds)}, not {self.task.kind}",
                              allowed=[m for m, k in FILTER_TASK_KINDS.items()
                                       if self.task.kind in k] + ["final_answer", "orm", "none"])
        for part in SEEDED_PARTS:
            if getattr(self, part).seed != 0:
                raise ConfigError(f"{part}.seed", "is derived from the trial's seed: set "
                                  "`seed` (or `seeds` in a sweep file) instead")

    def seeded(self, part: str):
        """Sub-config ``part`` (one of SEEDED_PARTS) with the trial's seed."""
        return replace(getattr(self, part), seed=self.seed)


def run(cfg: ExperimentConfig, stage: Stage, state: dict | None = None,
        device=None, log=print) -> Iterator[tuple[int, dict[str, float], dict]]:
    device = resolve_device(device)
    task = experiment_task(cfg)
    gen, student = paradigm_roles(cfg.paradigm)

    # 1-2. models (the zoo: a shared stage) and samples (shared) ---------------------------
    models = resolve_models(cfg, stage, device, log)
    verifier = None
    # one backend per generator for all of the trial's sampling; closed before SFT (a vLLM
    # engine holds the GPU)
    with Backends(cfg.seeded("sampling"), device) as backends:
        ss, n = samples_stage(cfg, gen, models, stage, backends)
        if cfg.filter.learned_verifier:
            verifier = _verifier(cfg, cfg.filter.learned_verifier, gen, models, task, stage,
                                 device, backends)
    kept = apply_filter(cfg.filter, task, ss.problems, ss.texts(), verifier)
    data = {**sample_metrics(ss), **kept_metrics(ss, kept), "data/samples_per_problem": float(n)}
    examples = kept_examples(task, ss, kept)

    # 5. SFT of the student, resumable ----------------------------------------------------
    model, tok = load_causal_lm(models.dirs[student], device=device)
    val = task.problems("val", cfg.val_size)
    runner = SFTRunner(model, tok, task, examples, val, cfg.seeded("sft"))
    if state is not None:
        runner.load_state_dict(state)
        checkpoint = state["checkpoint_pass_at_1"]
    else:
        checkpoint = pass_at_1_greedy(model, tok, task, val, cfg.sft.max_new_tokens)
        yield 0, _reported({**data, "val/pass_at_1": checkpoint,
                            "val/checkpoint_pass_at_1": checkpoint}, len(val)), \
            _state(runner, checkpoint)
    if not examples:
        log("[experiment] the filter kept nothing: no student, the zoo checkpoint is tested")
        runner.done = True
    for m in runner.train():
        m = {k: v for k, v in m.items() if k != "step"} | {"val/checkpoint_pass_at_1": checkpoint}
        yield runner.step, _reported(m, len(val)), _state(runner, checkpoint)

    # 6. test evaluation of the best fine-tuned student -------------------------------------
    best = runner.best_model()
    test = evaluate(HFBackend(best, tok), task, task.problems("test", cfg.eval.n_problems),
                    cfg.seeded("eval"))
    final = {**data, **test, **student_metrics(runner, checkpoint)}
    if not final["sft/beat_checkpoint"]:
        log(f"[experiment] fine-tuning never beat the checkpoint on validation "
            f"({final['val/best_pass_at_1']:.3f} <= {checkpoint:.3f})")
    yield runner.step + 1, _reported(final, len(val)), _state(runner, checkpoint)


def _state(runner: SFTRunner, checkpoint: float) -> dict:
    """What resumes the trial: the SFT run and the checkpoint's validation pass@1."""
    return {**runner.state_dict(), "checkpoint_pass_at_1": checkpoint}


def student_metrics(runner: SFTRunner, checkpoint: float) -> dict[str, float]:
    """What the student is: its validation pass@1 (NaN without one), the SFT step it comes
    from (0: no fine-tuned model, the checkpoint) and whether it beat the checkpoint."""
    best_step = max((h for h in runner.history if h["val/pass_at_1"] == runner.best),
                    key=lambda h: -h["step"], default={"step": 0})["step"]
    best = runner.best if runner.history else float("nan")
    return {"val/best_pass_at_1": best, "val/checkpoint_pass_at_1": checkpoint,
            "sft/best_step": float(best_step),
            "sft/beat_checkpoint": float(bool(runner.history) and best > checkpoint)}


def _reported(metrics: dict[str, float], n_val: int) -> dict[str, float]:
    """The finite metrics (undefined ones are NaN: left out), with the validation counts."""
    m = with_counts(metrics, n_val, ["val/pass_at_1", "val/best_pass_at_1",
                                     "val/checkpoint_pass_at_1"])
    return {k: v for k, v in m.items() if math.isfinite(v)}


def experiment_task(cfg: ExperimentConfig) -> Task:
    return make_task(cfg.task, cfg.zoo.task)


def zoo_stage(cfg: ExperimentConfig, stage: Stage, device=None, log=print) -> Path:
    """The WC/SE zoo's directory (built on first use)."""
    return stage("zoo", cfg.zoo, lambda p: build_zoo(cfg.zoo, p, resolve_device(device), log))


def resolve_models(cfg: ExperimentConfig, stage: Stage, device=None, log=print) -> Models:
    """The WC and SE models: the given directories, or the zoo (built on first use)."""
    task_key = {} if cfg.task == TaskConfig() else {"task": asdict(cfg.task)}
    if cfg.models.given:
        dirs = {"wc": Path(cfg.models.wc_dir), "se": Path(cfg.models.se_dir)}
        # by content, not by path: the same weights copied elsewhere share their stages
        return Models(dirs, {r: count_params(d) for r, d in dirs.items()},
                      {"models": {r: dir_digest(d) for r, d in dirs.items()}, **task_key})
    zoo_dir = zoo_stage(cfg, stage, device, log)
    params = {r: m["params"] for r, m in read_zoo(zoo_dir)["models"].items()}
    return Models({r: zoo_dir / r for r in params}, params, {"zoo": asdict(cfg.zoo), **task_key})


def samples_stage(cfg: ExperimentConfig, gen: str, models: Models, stage: Stage,
                  backends: Backends) -> tuple[SampleSet, int]:
    """The sample set of generator ``gen`` at its budget under ``cfg.sampling`` (seeded by
    ``cfg.seed``), and its samples per problem; ``backends`` lends the sampling backend.

    The stage is keyed by what determines the samples (the models, the task, the
    generator, the decoding settings, the seed, a served model's name and revision),
    not by the server's address: a restarted server reuses them."""
    task = experiment_task(cfg)
    sampling = cfg.seeded("sampling")
    n = samples_per_problem(sampling, gen, models.params["wc"], models.params["se"])
    samples_dir = stage(
        "samples", {**models.source, "generator": gen, "n": n, "sampling": sampling.samples_key(gen)},
        lambda p: build_samples(backends.get(gen, models.dirs[gen]), task, n, sampling, p))
    return SampleSet.load(samples_dir), n


def _verifier(cfg: ExperimentConfig, kind: str, gen: str, models: Models, task,
              stage: Stage, device, backends: Backends) -> LearnedRM:
    """A verifier trained on the generator's samples of separate (pretrain) problems."""
    rm_cfg, sampling = cfg.seeded("rm"), cfg.seeded("sampling")
    key = {**models.source, "generator": gen, "kind": kind, "rm": asdict(rm_cfg),
           "sampling": sampling.samples_key(gen)}

    def build(path: Path) -> None:
        ss = draw_samples(backends.get(gen, models.dirs[gen]), task,
                          task.problems("pretrain", rm_cfg.n_problems), rm_cfg.samples_per_problem, sampling)
        build_reward_model(models.dirs[rm_cfg.base], task, ss, kind, rm_cfg, path, device=device)

    rm_dir = stage(kind, key, build)
    return LearnedRM.from_lm_dir(rm_dir, task, kind, device=device)

