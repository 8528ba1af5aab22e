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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from core.reasoning.metrics import Judged, filter_metrics, judge, sample_set_metrics
from core.reasoning.sampling import SamplingBackend, sampling_budget
from core.reasoning.sft import Example
from core.reasoning.tasks import Problem, Task

PARADIGMS: dict[str, tuple[str, str]] = {  # name -> (generator role, student role)
    "knowledge_distillation": ("se", "wc"),
    "self_improvement": ("wc", "wc"),
    "weak_to_strong": ("wc", "se"),
    "weak_to_strong_removed": ("se", "se"),
}


@dataclass(frozen=True)
class Generator:
    """Where one role's samples come from when it is not the zoo model itself served under
    its directory: an API model, or a model on its own server, with its price."""

    model: str = ""
    """openai: the name the server knows the model by (an API model such as
    gemini-1.5-flash); "" = the role's zoo directory, the name `vllm serve DIR` uses."""
    base_url: str = ""
    """openai: this role's server when it is not ``sampling.base_url`` (a `vllm serve`
    serves one model, so WC and SE on two servers need two URLs)."""
    price_per_token: float = 0.0
    """Price per output token. Set for both roles to match the budgets by price instead
    of parameter count (API models, whose parameter counts are unknown)."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the generators sample solutions to the training problems."""

    n_problems: int = 200
    """Training problems sampled (split "train")."""
    s_se: int = 4
    """Samples per problem of the SE model; WC's follow from ``match``."""
    match: Literal["compute", "number"] = "compute"
    """compute: S_WC = round(P_SE / P_WC * S_SE) (P: parameters, or price per token when
    both roles have one); number: S_WC = S_SE."""
    temperature: float = 0.7
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling."""
    max_new_tokens: int = 48
    """Generation length."""
    backend: Literal["hf", "vllm", "openai"] = "hf"
    """Sampling backend: hf (transformers generate), vllm (in-process engine on the
    trial's GPU; `pip install -e ".[vllm]"`), openai (an OpenAI-compatible server)."""
    base_url: str = ""
    """openai only: the server, e.g. http://127.0.0.1:8000/v1. The model asked for is the
    generator's directory, the name `vllm serve DIR` serves it under (or ``wc.model`` /
    ``se.model``)."""
    api_key_env: str = ""
    """openai only: the NAME of the environment variable holding the API key (never the key)."""
    tensor_parallel: int = 1
    """vllm only: GPUs per engine (tensor parallel); give the trial as many (resources.gpu)."""
    wc: Generator = field(default_factory=Generator)
    """The weak-cheap generator's endpoint and price (openai / price matching)."""
    se: Generator = field(default_factory=Generator)
    """The strong-expensive generator's endpoint and price."""
    seed: int = 0
    """Sampling seed."""

    def __post_init__(self) -> None:
        if self.backend == "openai" and not (self.base_url or (self.wc.base_url and self.se.base_url)):
            raise ValueError("SamplingConfig.base_url: the openai backend needs base_url "
                             "(or wc.base_url and se.base_url)")
        priced = [g.price_per_token > 0 for g in (self.wc, self.se)]
        if any(priced) and not all(priced):
            raise ValueError("SamplingConfig.wc.price_per_token: give a price for both wc and se, or neither")
        if self.tensor_parallel < 1:
            raise ValueError("SamplingConfig.tensor_parallel: must be >= 1")


def samples_per_problem(cfg: SamplingConfig, role: str, p_wc: int, p_se: int) -> int:
    """S for ``role`` under ``cfg``'s budget: parameter counts of the zoo, or the roles'
    prices per token when both are given."""
    cost_wc, cost_se = (cfg.wc.price_per_token, cfg.se.price_per_token) if cfg.wc.price_per_token > 0 else (p_wc, p_se)
    s_wc, s_se = sampling_budget(cfg.match, cfg.s_se, cost_se, cost_wc)
    return {"wc": s_wc, "se": s_se}[role]


class Backends:
    """A trial's sampling backends, one per generator, built on first use and reused by
    every sampling call of the trial (its samples and its verifier's training samples), so
    a vLLM engine starts once. Close it (or use ``with``) before training: the engine
    holds the GPU."""

    def __init__(self, cfg: SamplingConfig, device=None):
        self.cfg, self.device = cfg, device
        self._open: dict[tuple[str, str], SamplingBackend] = {}

    def get(self, role: str, model_dir: str | Path) -> SamplingBackend:
        from core.reasoning.sampling import make_backend

        key = (role, str(model_dir))
        if key not in self._open:
            self._open[key] = make_backend(self.cfg.backend, model_dir, **self._options(role))
        return self._open[key]

    def _options(self, role: str) -> dict:
        c = self.cfg
        if c.backend == "openai":
            g: Generator = getattr(c, role)
            options = {"base_url": g.base_url or c.base_url, "api_key_env": c.api_key_env or None}
            return options | ({"model": g.model} if g.model else {})
        if c.backend == "vllm":
            return {"seed": c.seed, "tensor_parallel_size": c.tensor_parallel}
        return {"device": self.device}

    def close(self) -> None:
        for backend in self._open.values():
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        self._open.clear()

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def paradigm_roles(paradigm: str) -> tuple[str, str]:
    if paradigm not in PARADIGMS:
        raise ValueError(f"unknown paradigm {paradigm!r}; allowed: {', '.join(PARADIGMS)}")
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

    def texts(self) -> list[list[str]]:
        return [[s.text for s in g] for g in self.groups]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "samples.jsonl", "w") as f:
            for p, g in zip(self.problems, self.groups):
                f.write(json.dumps({"problem": asdict(p), "samples": [asdict(s) for s in g]}) + "\n")
        (path / "meta.json").write_text(json.dumps({"tokens": self.tokens, "seconds": self.seconds}))

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
        return cls(problems, groups, meta["tokens"], meta["seconds"])


def draw_samples(backend: SamplingBackend, task: Task, problems: Sequence[Problem], n: int,
                 cfg: SamplingConfig) -> SampleSet:
    """``n`` samples for each problem, judged exactly."""
    t0, tok0 = time.perf_counter(), backend.tokens_generated
    out = backend.sample([task.prompt(p) for p in problems], n=n, temperature=cfg.temperature,
                         top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    groups = [judge(task, p, [s.text for s in g]) for p, g in zip(problems, out)]
    return SampleSet(list(problems), groups, backend.tokens_generated - tok0, time.perf_counter() - t0)


def sample_metrics(ss: SampleSet, ks: Sequence[int] = (), prefix: str = "data") -> dict[str, float]:
    """``data/coverage`` and ``data/diversity`` at k = all samples of a problem, the same
    at each extra k as ``data/coverage_at_k``, FPR, sample and token counts, tokens/s."""
    n = max((len(g) for g in ss.groups), default=0)
    m = sample_set_metrics(ss.groups, [n, *ks], prefix)
    m[f"{prefix}/coverage"] = m.pop(f"{prefix}/coverage_at_{n}")
    m[f"{prefix}/diversity"] = m.pop(f"{prefix}/diversity_at_{n}")
    for k in ks:  # an extra k equal to n was popped above: put it back
        m.setdefault(f"{prefix}/coverage_at_{k}", m[f"{prefix}/coverage"])
        m.setdefault(f"{prefix}/diversity_at_{k}", m[f"{prefix}/diversity"])
    m[f"{prefix}/tokens"] = float(ss.tokens)
    m[f"{prefix}/tokens_per_s"] = ss.tokens / ss.seconds if ss.seconds else float("nan")
    return m


def kept_examples(task: Task, ss: SampleSet, kept: Sequence[Sequence[bool]]) -> list[Example]:
    """The SFT data: every kept sample as (prompt, sample text)."""
    return [Example(task.prompt(p), s.text)
            for p, g, ks in zip(ss.problems, ss.groups, kept) for s, k in zip(g, ks) if k]


def kept_metrics(ss: SampleSet, kept: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Kept-set size, coverage, diversity, FPR, precision and recall (namespace filter/)."""
    return filter_metrics(ss.groups, kept, prefix="filter")


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
