"""What a trainable sees of ablab: restore, report, stages.

    state = trial.restore()                     # None on a fresh start
    for step in range(start, cfg.steps):
        ...
        trial.report({"val/acc": acc}, step=step, state={"model": model.state_dict(), ...})

`report` refuses non-finite metrics (the trial errors with the reason, the study goes
on), and checkpoints `state` (pickled) together with the metrics, as Ray Tune wants.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablab.stages import StageCache, StageRequest

STATE_FILE = "state.pkl"
STEP_FILE = "step"
STEP_KEY = "step"
NODE_KEY = "node_id"


CONFIG_ERROR_KEY = "ablab/config_error"


@dataclass(frozen=True)
class TrialInfo:
    key: str
    variant: str
    seed: int
    stage_root: str
    study_dir: str
    resume_from: str | None = None  # a checkpoint folder an earlier run of the study left


_current: TrialInfo | None = None


@dataclass
class LocalSession:
    """A trial run outside Ray Tune (a notebook, a test): reports are kept in memory."""

    root: Path
    reports: list[tuple[int, dict[str, float]]]
    states: list[dict[str, Any]]
    resume_from: dict[str, Any] | None = None


_local: LocalSession | None = None


@contextlib.contextmanager
def local(root: str | Path, resume_from: dict[str, Any] | None = None):
    """Run a trainable without Ray: `with trial.local(tmp) as s: train(cfg)`, then read
    `s.reports` (step, metrics) and `s.states`. Stages and artifacts go under `root`."""
    global _local
    previous = _local
    _local = LocalSession(Path(root), [], [], resume_from)
    try:
        yield _local
    finally:
        _local = previous


class NonFiniteMetric(FloatingPointError):
    """A trial reported NaN or infinity: it diverged."""


def info() -> TrialInfo:
    if _current is None:
        raise RuntimeError("not inside an ablab trial")
    return _current


def safe_name(key: str) -> str:
    """A trial key as a folder name."""
    import re

    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key).strip("_")[:150]


def artifact_dir() -> Path:
    """A folder for this trial's files (pictures, samples); the report shows its PNGs."""
    if _local is not None:
        folder = _local.root / "artifacts"
    elif _current is None:
        folder = Path(tempfile.mkdtemp(prefix="ablab-artifacts-"))
    else:
        folder = Path(_current.study_dir) / "artifacts" / safe_name(_current.key)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def restore() -> dict[str, Any] | None:
    """The state saved with the last checkpoint of this trial, or None."""
    if _local is not None:
        return _local.resume_from
    from ablab.ray_api import tune

    try:
        checkpoint = tune.get_checkpoint()
    except RuntimeError:  # not inside Tune (a notebook, a unit test)
        return None
    if checkpoint is None:
        # a trial that an earlier run of the study cut short goes on from where it was
        if _current is not None and _current.resume_from and (Path(_current.resume_from) / STATE_FILE).exists():
            with open(Path(_current.resume_from) / STATE_FILE, "rb") as f:
                return pickle.load(f)
        return None
    with checkpoint.as_directory() as folder:
        with open(Path(folder) / STATE_FILE, "rb") as f:
            return pickle.load(f)


def report(metrics: Mapping[str, float], *, step: int, state: dict[str, Any] | None = None) -> None:
    """Report metrics at `step` (and checkpoint `state` with them when given)."""
    from ablab.ray_api import Checkpoint, tune

    values = {}
    for k, v in metrics.items():
        v = float(v)
        if not math.isfinite(v):
            raise NonFiniteMetric(f"metric {k} is {v} at step {step}")
        values[k] = v
    if _local is not None:
        _local.reports.append((int(step), values))
        if state is not None:
            _local.states.append(pickle.loads(pickle.dumps(state)))  # a copy, as a checkpoint is
        return
    values[STEP_KEY] = int(step)
    values[NODE_KEY] = _node_id()
    if state is None:
        tune.report(values)
        return
    with tempfile.TemporaryDirectory(prefix="ablab-ckpt-") as folder:
        with open(Path(folder) / STATE_FILE, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        # the step, so a later run of the study can pick a checkpoint its records reached
        (Path(folder) / STEP_FILE).write_text(str(int(step)))
        tune.report(values, checkpoint=Checkpoint.from_directory(folder))


def _node_id() -> str:
    from ablab.ray_api import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        return ""


def stage(
    name: str,
    config: Any,
    build: Callable[[Path], None],
    inputs: Mapping[str, Path | str] | None = None,
) -> Path:
    """A shared stage's folder, built once for the whole study (and for later studies)."""
    return stages([(name, config, build, inputs)])[0]


def stages(requests: Sequence[tuple]) -> list[Path]:
    """Several shared stages' folders, each request ``(name, config, build[, inputs])``.
    Stages another trial is building are left for later and free ones built first, so
    trials that start together build different stages side by side."""
    if _local is not None:
        root: str | Path = _local.root / "stages"
    else:
        root = _current.stage_root if _current else os.environ.get("ABLAB_STAGES", "ablab_results/stages")
    return StageCache(root).get_or_build_many([StageRequest(*r) for r in requests],
                                              log=lambda m: print(m, flush=True))


def run(param: dict[str, Any]) -> None:
    """The function Ray Tune runs: builds the trainable's Config and calls `train`.

    A `ConfigError` (a config that fails the same way every time) is reported, not
    raised: the driver records it once as the trial's failure, and Ray does not retry it."""
    global _current
    from ablab import configs, registry
    from ablab.ray_api import tune
    from core.errors import ConfigError

    spec = param["ablab"]
    module = registry.load(spec["trainable"])
    _current = TrialInfo(spec["key"], spec["variant"], spec["seed"], spec["stage_root"], spec["study_dir"],
                         spec.get("resume_from"))
    try:
        cfg = configs.build(module.Config, spec["config"])
        check = getattr(module, "check", None)
        if check is not None:
            check(cfg)
        module.train(cfg)
    except ConfigError as exc:
        tune.report({CONFIG_ERROR_KEY: f"ConfigError: {exc}"})
