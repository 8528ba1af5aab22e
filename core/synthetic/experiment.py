"""A seeded learning curve with no model, for tests and benchmarks of the platform.

It reports `val/score` rising towards `quality`, with a known effect structure for tests
of the statistics: `knob` (a hyperparameter an arm interacts with) costs `knob_penalty`
per decade away from the arm's `best_knob`, and with `eval_n` the scores are proportions
measured on `eval_n` examples (binomial noise, reported as `<metric>:n`). It can burn a
fixed amount of CPU per step (benchmarks), sleep (fault tests), produce NaN, or kill its
own process once (retry tests).
"""


from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass

from collections.abc import Iterator
from pathlib import Path

METRICS = {"val/score": "max", "test/score": "max", "train/loss": "min", "time/work_s": "min"}


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    steps: int = 10
    """Reports per trial."""
    quality: float = 0.9
    """The curve's asymptote: val/score -> quality."""
    rate: float = 0.5
    """How fast the curve rises per step."""
    noise: float = 0.01
    """Std of the seeded noise added to each score."""
    knob: float = 1.0
    """A hyperparameter the arm interacts with (tune it with `tune:`)."""
    best_knob: float = 1.0
    """The knob value at which this arm reaches `quality`."""
    knob_penalty: float = 0.0
    """Score lost per decade (factor 10) between `knob` and `best_knob`."""
    eval_n: int = 0
    """Examples behind each score: >0 makes scores binomial proportions and reports `m:n` (0: exact)."""
    work: int = 0
    """Fixed CPU work per step, in units of 100k integer additions."""
    sleep_seconds: float = 0.0
    """Idle wait per step."""
    nan_at_step: int = 0
    """Report NaN at this step (0: never)."""
    crash_at_step: int = 0
    """Kill the worker process at this step, once per trial (0: never)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.knob <= 0 or self.best_knob <= 0:
            raise ValueError("knob and best_knob must be > 0")
        if self.eval_n < 0:
            raise ValueError("eval_n must be >= 0")

    @property
    def reachable(self) -> float:
        """The asymptote at this knob: quality minus the penalty for a mistuned knob."""
        return self.quality - self.knob_penalty * abs(math.log10(self.knob / self.best_knob))


def burn(units: int) -> None:
    total = 0
    for _ in range(units):
        for i in range(100_000):
            total += i


def measured(rng: random.Random, p: float, n: int) -> float:
    """The share of n examples a model with true accuracy p gets right."""
    p = min(max(p, 0.0), 1.0)
    return sum(rng.random() < p for _ in range(n)) / n


def run(cfg: SyntheticConfig, stage=None, state: dict | None = None,
        artifacts: Path | None = None) -> Iterator[tuple[int, dict[str, float], dict]]:
    """(step, metrics, state) per step; resumes from a yielded state. `stage` is unused (no
    shared stages); `artifacts` holds the marker that makes `crash_at_step` fire once."""
    rng = random.Random(cfg.seed)
    state = state or {"step": 0, "rng": rng.getstate()}
    rng.setstate(state["rng"])
    for step in range(state["step"] + 1, cfg.steps + 1):
        t0 = time.process_time()
        burn(cfg.work)
        work_s = time.process_time() - t0
        if cfg.sleep_seconds:
            time.sleep(cfg.sleep_seconds)
        if cfg.crash_at_step == step and artifacts is not None:
            marker = Path(artifacts) / "crashed"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # a hard crash: no exception, no clean-up
        score = cfg.reachable * (1 - math.exp(-cfg.rate * step)) + rng.gauss(0, cfg.noise)
        test = score + rng.gauss(0, cfg.noise)
        if cfg.eval_n:
            score, test = measured(rng, score, cfg.eval_n), measured(rng, test, cfg.eval_n)
        if cfg.nan_at_step == step:
            score = float("nan")
        metrics = {"val/score": score, "test/score": test, "train/loss": 1 - score, "time/work_s": work_s}
        if cfg.eval_n:
            metrics |= {"val/score:n": cfg.eval_n, "test/score:n": cfg.eval_n}
        yield step, metrics, {"step": step, "rng": rng.getstate()}
