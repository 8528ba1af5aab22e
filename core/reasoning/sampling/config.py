"""How the generators sample, and compute-matched sampling budgets.

Budgets (Bansal et al. 2024): sampling a model with P parameters costs about 2P FLOPs per
token, so at matched compute a WC model draws ``S_WC = round(P_SE / P_WC * S_SE)`` samples
per problem for every ``S_SE`` of the SE model (:func:`sampling_budget`); prices per token
replace parameter counts when the latter are unknown (an API model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from core.errors import ConfigError

Backend = Literal["hf", "vllm", "openai"]
Match = Literal["compute", "number"]
Role = Literal["wc", "se"]


@dataclass(frozen=True)
class Generator:
    """Where one role's samples come from when it is not the role's model directory served
    under its own path: an API model, or a model on its own server, with its price."""

    model: str = ""
    """openai: the name the server knows the model by (an API model such as
    gemini-1.5-flash); "" = the role's model directory, the name a server started on that
    directory serves it under."""
    revision: str = ""
    """openai with ``model`` set: the served model's revision (e.g. a date or a commit).
    With ``model`` it is the model's identity in the samples' cache key: change it when
    the server's model changes under the same name."""
    base_url: str = ""
    """openai: this role's server when it is not ``sampling.base_url`` (a vLLM server
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
    match: Match = "compute"
    """compute: S_WC = round(P_SE / P_WC * S_SE) (P: parameters, or price per token when
    both roles have one); number: S_WC = S_SE."""
    temperature: float = 0.7
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling."""
    max_new_tokens: int = 48
    """Generation length."""
    backend: Backend = "hf"
    """Sampling backend: hf (transformers generate), vllm (in-process engine on the
    trial's GPU; `pip install -e ".[vllm]"`), openai (an OpenAI-compatible server)."""
    base_url: str = ""
    """openai only: the server, e.g. http://127.0.0.1:8000/v1. The model asked for is the
    generator's directory, the name a server started on it serves it under (or
    ``wc.model`` / ``se.model``). Not part of the samples' cache key."""
    api_key_env: str = ""
    """openai only: the NAME of the environment variable holding the API key (never the key)."""
    tensor_parallel: int = 1
    """vllm only: GPUs per engine (tensor parallel); give the trial as many (resources.gpu)."""
    wc: Generator = field(default_factory=Generator)
    """The weak-cheap generator's served model and price (openai / price matching)."""
    se: Generator = field(default_factory=Generator)
    """The strong-expensive generator's served model and price."""
    seed: int = 0
    """Sampling seed. Inside an experiment it is the trial's seed (``seed``), not set here."""

    def __post_init__(self) -> None:
        if self.backend == "openai" and not (self.base_url or (self.wc.base_url and self.se.base_url)):
            raise ConfigError("sampling.base_url", "the openai backend needs base_url "
                              "(or wc.base_url and se.base_url)")
        priced = [g.price_per_token > 0 for g in (self.wc, self.se)]
        if any(priced) and not all(priced):
            raise ConfigError("sampling.wc.price_per_token",
                              "give a price for both wc and se, or neither")
        if self.tensor_parallel < 1:
            raise ConfigError("sampling.tensor_parallel", "must be >= 1")

    def generator(self, role: Role) -> Generator:
        return self.wc if role == "wc" else self.se

    def base_url_of(self, role: Role) -> str:
        return self.generator(role).base_url or self.base_url

    def samples_key(self, role: Role) -> dict:
        """What determines ``role``'s samples besides the model directory and the prompts:
        the decoding settings, the backend, the seed and the served model's name and
        revision; never where the server is (``base_url``) nor how to reach it (the key)."""
        key = asdict(self)
        for endpoint in ("base_url", "api_key_env", "wc", "se"):
            key.pop(endpoint)
        g = self.generator(role)
        return key | {"model": g.model, "revision": g.revision}


def compute_matched_samples(s_se: int, cost_se: float, cost_wc: float) -> int:
    """``S_WC = round(cost_SE / cost_WC * S_SE)``: cost is the parameter count (FLOPs per
    token are ~2P) or the price per token. Rounded half up (not Python's half-to-even),
    with a tolerance for float noise such as 0.15 / 0.10 = 1.4999999999999998."""
    if s_se < 0 or cost_se <= 0 or cost_wc <= 0:
        raise ValueError(f"need s_se >= 0 and positive costs, got {s_se}, {cost_se}, {cost_wc}")
    return max(1, math.floor(cost_se / cost_wc * s_se + 0.5 + 1e-9)) if s_se else 0


def sampling_budget(match: Match, s_se: int, cost_se: float, cost_wc: float) -> tuple[int, int]:
    """Samples per problem ``(S_WC, S_SE)``: compute-matched, or number-matched (equal)."""
    if match == "compute":
        return compute_matched_samples(s_se, cost_se, cost_wc), s_se
    return s_se, s_se


def samples_per_problem(cfg: SamplingConfig, role: Role, p_wc: int, p_se: int) -> int:
    """S for ``role`` under ``cfg``'s budget: parameter counts, or the roles' prices per
    token when both are given."""
    priced = cfg.wc.price_per_token > 0
    cost_wc, cost_se = (cfg.wc.price_per_token, cfg.se.price_per_token) if priced else (p_wc, p_se)
    s_wc, s_se = sampling_budget(cfg.match, cfg.s_se, cost_se, cost_wc)
    return s_wc if role == "wc" else s_se
