"""The compute-optimal sampling pipeline as stages, and the training paradigms.

    zoo (WC, SE) --sample--> sample set --filter--> kept set --SFT--> student --evaluate-->

Every stage is a plain function of its config and its inputs, writing to a directory, so
that a caller (ablab's stage cache) can build each one once and share it. Nothing here
knows about Ray or MLflow.

Paradigms (Bansal et al. 2024), as (generator, student) of the two-model zoo:

- ``knowledge_distillation``: the WC student learns from SE samples (student weaker than
  the generator).
- ``self_improvement``: the WC student learns from its own samples.
- ``weak_to_strong``: the SE student learns from WC samples, drawn at the compute-matched
  budget ``S_WC = round(P_SE / P_WC * S_SE)``.
- ``weak_to_strong_removed``, the REMOVE ablation of weak-to-strong: *the same SE student,
  the same training problems, the same filter, SFT recipe and sampling compute, but the
  WC data replaced by the SE model's own samples at ``S_SE`` per problem* (so WC
  contributes nothing; it is SE self-improvement at weak-to-strong's compute). The
  difference between the two is what the weak model's cheaper, more numerous samples add.

The "generator" and "student" are zoo roles; any HF causal-LM directory can stand in for
either (``student_dir`` / ``generator_dir`` arguments).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

from core.reasoning.metrics import Judged, filter_metrics, judge, sample_set_metrics, with_counts
from core.reasoning.sampling import Role, SamplingBackend, SamplingConfig, make_backend
from core.reasoning.sft import Example
from core.reasoning.tasks import Problem, Task

Paradigm = Literal["knowledge_distillation", "self_improvement", "weak_to_strong",
                   "weak_to_strong_removed"]
PARADIGMS: dict[Paradigm, tuple[Role, Role]] = {  # name -> (generator role, student role)
    "knowledge_distillation": ("se", "wc"),
    "self_improvement": ("wc", "wc"),
    "weak_to_strong": ("wc", "se"),
    "weak_to_strong_removed": ("se", "se"),
}


class Backends:
    """A trial's sampling backends, one per generator, built on first use and reused by
    every sampling call of the trial (its samples and its verifier's training samples), so
    a vLLM engine starts once. Close it (or use ``with``) before training: the engine
    holds the GPU."""

    def __init__(self, cfg: SamplingConfig, device=None):
        self.cfg, self.device = cfg, device
        self._open: dict[tuple[str, str], SamplingBackend] = {}

    def get(self, role: Role, model_dir: str | Path) -> SamplingBackend:
        key = (role, str(model_dir))
        if key not in self._open:
            self._open[key] = make_backend(self.cfg, role, model_dir, self.device)
        return self._open[key]

    def close(self) -> None:
        for backend in self._open.values():
            backend.close()
        self._open.clear()

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def paradigm_roles(paradigm: Paradigm) -> tuple[Role, Role]:
    """(generator role, student role) of ``paradigm``."""
    return PARADIGMS[paradigm]


# --------------------------------------------------------------------------------------
# Sample sets


@dataclass
class SampleSet:
    """Samples per problem with their exact judgements, and what drawing them cost."""

    problems: list[Problem]
    groups: list[list[Judged]]
    tokens: int
    seconds: float
    tokens_estimated: bool = False
    """Some token counts are estimates (a server that returned neither ids nor counts)."""

    def texts(self) -> list[list[str]]:
        return [[s.text for s in g] for g in self.groups]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "samples.jsonl", "w") as f:
            for p, g in zip(self.problems, self.groups):
                f.write(json.dumps({"problem": asdict(p), "samples": [asdict(s) for s in g]}) + "\n")
        (path / "meta.json").write_text(json.dumps({"tokens": self.tokens, "seconds": self.seconds,
                                                    "tokens_estimated": self.tokens_estimated}))

    @classmethod
    def load(cls, path: str | Path) -> "SampleSet":
        path = Path(path)
        problems, groups = [], []
        for line in (path / "samples.jsonl").read_text().splitlines():
            row = json.loads(line)
            problems.append(Problem(**row["problem"]))
            groups.append([Judged(**{**s, "step_labels": None if s["step_labels"] is None
                                     else tuple(s["step_labels"])}) for s in row["samples"]])
        meta = json.loads((path / "meta.json").read_text())
        return cls(problems, groups, meta["tokens"], meta["seconds"], meta.get("tokens_estimated", False))


def draw_samples(backend: SamplingBackend, task: Task, problems: Sequence[Problem], n: int,
                 cfg: SamplingConfig) -> SampleSet:
    """``n`` samples for each problem, judged exactly."""
    t0, tok0 = time.perf_counter(), backend.tokens_generated
    out = backend.sample([task.prompt(p) for p in problems], n=n, temperature=cfg.temperature,
                         top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    groups = [judge(task, p, [s.text for s in g]) for p, g in zip(problems, out)]
    estimated = any(s.tokens_estimated for g in out for s in g)
    return SampleSet(list(problems), groups, backend.tokens_generated - tok0,
                     time.perf_counter() - t0, estimated)


def sample_metrics(ss: SampleSet, ks: Sequence[int] = (), prefix: str = "data") -> dict[str, float]:
    """``data/coverage``, ``data/diversity`` and ``data/diversity_valid`` at k = all samples
    of a problem, the same
    at each extra k as ``data/coverage_at_k``, FPR, sample and token counts, tokens/s."""
    n = max((len(g) for g in ss.groups), default=0)
    m = sample_set_metrics(ss.groups, [n, *ks], prefix)
    m[f"{prefix}/coverage"] = m.pop(f"{prefix}/coverage_at_{n}")
    m[f"{prefix}/diversity"] = m.pop(f"{prefix}/diversity_at_{n}")
    m[f"{prefix}/diversity_valid"] = m.pop(f"{prefix}/diversity_valid_at_{n}")
    for k in ks:  # an extra k equal to n was popped above: put it back
        for name in ("coverage", "diversity", "diversity_valid"):
            m.setdefault(f"{prefix}/{name}_at_{k}", m[f"{prefix}/{name}"])
    m[f"{prefix}/tokens"] = float(ss.tokens)
    m[f"{prefix}/tokens_per_s"] = ss.tokens / ss.seconds if ss.seconds else float("nan")
    m[f"{prefix}/tokens_estimated"] = float(ss.tokens_estimated)
    coverages = [k for k in m if k.startswith(f"{prefix}/coverage")]
    return with_counts(m, len(ss.problems), coverages)


def kept_examples(task: Task, ss: SampleSet, kept: Sequence[Sequence[bool]]) -> list[Example]:
    """The SFT data: every kept sample as (prompt, sample text)."""
    return [Example(task.prompt(p), s.text)
            for p, g, ks in zip(ss.problems, ss.groups, kept) for s, k in zip(g, ks) if k]


def kept_metrics(ss: SampleSet, kept: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Kept-set size, coverage, diversity, FPR, precision and recall (namespace filter/),
    with the counts beside the proportions over problems (coverage) and samples (kept_frac)."""
    m = filter_metrics(ss.groups, kept, prefix="filter")
    m = with_counts(m, len(ss.problems), ["filter/coverage"])
    return with_counts(m, sum(len(g) for g in ss.groups), ["filter/kept_frac"])


# --------------------------------------------------------------------------------------
# Stage builders: each writes one directory from its config and its input directories.


def build_samples(backend: SamplingBackend, task: Task, n_per_problem: int, cfg: SamplingConfig,
                  out_dir: str | Path) -> SampleSet:
    """Sample ``n_per_problem`` solutions of each of the first ``cfg.n_problems`` train
    problems with ``backend``; save to ``out_dir``."""
    ss = draw_samples(backend, task, task.problems("train", cfg.n_problems), n_per_problem, cfg)
    ss.save(out_dir)
    return ss


def build_reward_model(base_dir: str | Path, task: Task, samples: SampleSet, kind: str,
                       cfg, out_dir: str | Path, device="cpu"):
    """Train an ORM or a learned PRM (body from ``base_dir``) on ``samples``; save it."""
    from core.reasoning.rewards import LearnedRM

    rm = LearnedRM.from_lm_dir(base_dir, task, kind, device=device, seed=cfg.seed)
    flat_p = [p for p, g in zip(samples.problems, samples.groups) for _ in g]
    flat_t = [s.text for g in samples.groups for s in g]
    rm.fit(flat_p, flat_t, cfg)
    rm.save(out_dir)
    return rm
