"""Reasoning tasks: problems with gold solutions, final-answer checks and (where exact)
step checks. Three sources, one interface (:class:`~core.reasoning.tasks.base.Task`):

- ``arith``: :class:`ArithTask`, the procedural multi-step arithmetic word problem with
  exact step labels;
- ``gsm8k``: :class:`GSM8KTask`, GSM8K-format JSONL files given by path;
- ``reasoning_gym``: :class:`ReasoningGymTask`, a reasoning-gym dataset by name.

:class:`TaskConfig` chooses one; :func:`make_task` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.errors import ConfigError
from core.reasoning.tasks.arith import ArithConfig, ArithTask
from core.reasoning.tasks.base import (SPLITS, Problem, Split, Task, answers_match,
                                       extract_final_answer)
from core.reasoning.tasks.gsm8k import GSM8KConfig, GSM8KTask

__all__ = ["SPLITS", "ArithConfig", "ArithTask", "GSM8KConfig", "GSM8KTask", "Problem",
           "Split", "Task", "TaskConfig", "answers_match",
           "extract_final_answer", "make_task"]


@dataclass(frozen=True)
class TaskConfig:
    """Which problems an experiment samples, filters, trains and tests on."""

    kind: Literal["arith", "gsm8k", "reasoning_gym"] = "arith"
    """arith: the procedural task (its settings are the zoo's, ``zoo.task``); gsm8k:
    GSM8K-format files (``gsm8k.train_path``, ``gsm8k.test_path``; relative to the folder
    ablab runs in, or absolute on the cluster's shared storage); reasoning_gym: the dataset ``gym_dataset``."""
    gsm8k: GSM8KConfig = field(default_factory=GSM8KConfig)
    """The GSM8K-format files (kind gsm8k)."""
    gym_dataset: str = ""
    """A reasoning-gym dataset name, e.g. basic_arithmetic (kind reasoning_gym)."""
    gym_seed: int = 0
    """Seed of the reasoning-gym problem streams."""

    def __post_init__(self) -> None:
        if self.kind == "gsm8k" and not (self.gsm8k.train_path and self.gsm8k.test_path):
            raise ConfigError("task.gsm8k.train_path",
                              "kind gsm8k needs gsm8k.train_path and gsm8k.test_path")
        if self.kind == "reasoning_gym" and not self.gym_dataset:
            raise ConfigError("task.gym_dataset", "kind reasoning_gym needs a dataset name")


def make_task(cfg: TaskConfig, arith: ArithConfig) -> Task:
    """The task of ``cfg``; ``arith`` configures the procedural one."""
    if cfg.kind == "gsm8k":
        return GSM8KTask(cfg.gsm8k)
    if cfg.kind == "reasoning_gym":
        from core.reasoning.tasks.gym import ReasoningGymTask  # imports reasoning-gym: slow

        return ReasoningGymTask(cfg.gym_dataset, seed=cfg.gym_seed)
    return ArithTask(arith)
