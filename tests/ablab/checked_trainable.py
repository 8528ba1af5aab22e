"""A trainable with a `check` hook, for the tests of ConfigError handling."""

from __future__ import annotations

from dataclasses import dataclass

from ablab import trial
from core.errors import ConfigError

METRICS = {"score": "max"}


@dataclass(frozen=True)
class Config:
    seed: int = 0
    width: int = 8
    """Checked before anything starts: at most 64."""
    works: bool = True
    """False: the trial finds, while running, that its config cannot work."""


def check(cfg: Config) -> None:
    if cfg.width > 64:
        raise ConfigError("width", "too wide for the input", allowed=["at most 64"])


def train(cfg: Config) -> None:
    if not cfg.works:
        raise ConfigError("works", "this config cannot work")
    trial.report({"score": float(cfg.width)}, step=1)
