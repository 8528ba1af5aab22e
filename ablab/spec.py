"""The sweep file's schema, and `load_study`: read (ablab.yaml_loader), apply `--set`
(ablab.overrides), validate (errors translated by ablab.spec_errors).

One file = one study. The schema is strict (an unknown key is an error) and every error
comes out as a `UserError` naming the file and the key path. Trial configs are checked
against the trainable's own config dataclass in `ablab.expand`, before anything starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablab import overrides as overrides_mod
from ablab.errors import UserError
from ablab.spec_errors import user_error
from ablab.yaml_loader import read_yaml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_SEEDS = 1000
SEED_LIMIT = 2**32  # numpy's seeds stop here; torch's a little later
# Folders of the storage that are not studies: a study must not share them.
RESERVED_NAMES = frozenset({"stages"})
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
Scalar = Union[bool, int, float, str, None]
# A variant value: one setting of `part`, or several settings applied together
# ({dotted.key: value}) for ablations that change more than one key.
Value = Union[Scalar, list, dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Ablation(_Strict):
    """One ablated part: the baseline value against each replacement, all else fixed."""

    part: str = Field(description="dotted config key that is ablated, e.g. ptm.loss")
    action: Literal["replace", "remove"] = "replace"
    baseline: Value = Field(description="the value of `part` in the baseline")
    replacements: list[Value] = Field(
        default_factory=lambda: ["none"],
        description="values compared with the baseline; for remove, the one value that removes the part",
    )
    metrics: list[str] | None = Field(
        default=None, description="metrics compared in the report (default: the study's metrics)"
    )
    tune: dict[str, list[Value]] = Field(
        default_factory=dict,
        description="values tried for every arm of this ablation (and the baseline); per arm and seed the "
        "best on `metric` is kept",
    )

    @field_validator("part")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", v):
            raise ValueError("must be a dotted config key like model.width")
        return v

    @model_validator(mode="after")
    def _check(self) -> Ablation:
        if not self.replacements:
            raise ValueError("needs at least one replacement")
        if self.action == "remove" and len(self.replacements) != 1:
            raise ValueError("action remove takes exactly one replacement: the value that removes the part")
        if self.baseline in self.replacements:
            raise ValueError(f"the baseline {self.baseline!r} is also listed as a replacement")
        if len({repr(r) for r in self.replacements}) != len(self.replacements):
            raise ValueError("replacements are listed twice")
        return self


def _check_tune(v: dict[str, list]) -> dict[str, list]:
    for key, values in v.items():
        if not values:
            raise ValueError(f"tune key {key!r} has no values")
        if len({repr(x) for x in values}) != len(values):
            raise ValueError(f"tune key {key!r} lists a value twice")
    return v


class SeedRange(_Strict):
    """Adaptive seeds: `min` per arm, more only for arms whose verdict is still open."""

    min: int = Field(ge=2, le=MAX_SEEDS, description="seeds every arm runs (seeds 0..min-1)")
    max: int = Field(ge=2, le=MAX_SEEDS, description="the most seeds an arm runs")

    @model_validator(mode="after")
    def _order(self) -> SeedRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Stats(_Strict):
    """How verdicts are reached."""

    correction: Literal["holm", "none"] = Field(
        default="holm", description="adjustment of p-values over the arms x metrics of one table"
    )
    smallest_effect: dict[str, float] = Field(
        default_factory=dict,
        description="per metric, the smallest difference that matters; with it a verdict can be `equivalent`",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="confidence of intervals; alpha = 1 - it")

    @field_validator("smallest_effect")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, d in v.items():
            if not d > 0:
                raise ValueError(f"smallest effect of {k!r} must be > 0")
        return v


class Resources(_Strict):
    cpu: float = Field(default=1, gt=0, description="CPUs per trial")
    gpu: float = Field(default=0, ge=0, description="GPUs per trial")


class NoStopping(_Strict):
    type: Literal["none"]


class Asha(_Strict):
    """Asynchronous successive halving over reported steps (Ray Tune's ASHAScheduler)."""

    type: Literal["asha"]
    max_t: int = Field(gt=0, description="the most steps a trial reports")
    grace_period: int = Field(default=1, gt=0, description="steps before a trial may be stopped")
    reduction_factor: float = Field(default=3, gt=1)

    @model_validator(mode="after")
    def _grace_within_budget(self) -> Asha:
        if self.grace_period > self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) must be at most max_t ({self.max_t})")
        return self


class Median(_Strict):
    """Stop a trial whose best result is below the median of the others at the same step."""

    type: Literal["median"]
    grace_period: int = Field(default=1, gt=0)
    min_samples_required: int = Field(default=3, gt=0)


class Margin(_Strict):
    """Stop only hopeless trials: those trailing the best at the same step by more than `margin`."""

    type: Literal["margin"]
    margin: float = Field(gt=0, description="how far behind the best (in metric units) is hopeless")
    grace_period: int = Field(default=1, gt=0, description="steps before a trial may be stopped")


EarlyStopping = Annotated[Union[NoStopping, Margin, Asha, Median], Field(discriminator="type")]


class Tracking(_Strict):
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else SQLite in the study folder",
    )
    experiment: str | None = Field(default=None, description="MLflow experiment; default: the study name")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is not None:
            check_tracking_uri(v)
        return v


def check_tracking_uri(uri: str) -> None:
    """A tracking URI MLflow can use, without credentials in it (they would be printed and stored)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme not in TRACKING_SCHEMES and scheme != "":  # no scheme: a folder (MLflow file store)
        raise ValueError(f"unknown scheme {parts.scheme!r}; allowed: {', '.join(TRACKING_SCHEMES)}, or a folder path")
    if parts.username or parts.password:
        raise ValueError("credentials in a tracking URI are refused; set MLFLOW_TRACKING_USERNAME and "
                         "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead")


def mask_uri(uri: str) -> str:
    """`uri` with any user:password replaced by ***, for printing."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


class Checkpointing(_Strict):
    num_to_keep: int = Field(default=2, gt=0)


class Study(_Strict):
    """A sweep file."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    trainable: str
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Value]] = Field(default_factory=dict)
    ablations: list[Ablation] = Field(default_factory=list)
    seeds: list[int] | SeedRange = Field(default_factory=lambda: [0])
    tune: dict[str, list[Value]] = Field(
        default_factory=dict,
        description="values tried for every arm; per arm and seed the best on `metric` enters the table",
    )
    stats: Stats = Field(default_factory=Stats)
    metric: str
    mode: Literal["max", "min"]
    metrics: list[str] | None = Field(default=None, description="metrics in the report (default: metric)")
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(default=None, gt=0)
    max_failures: int = Field(default=2, ge=0)
    early_stopping: EarlyStopping = Field(default_factory=lambda: NoStopping(type="none"))
    tracking: Tracking = Field(default_factory=Tracking)
    storage: str = Field(
        default_factory=lambda: os.environ.get("ABLAB_STORAGE", "ablab_results"),
        description="folder holding every study's results; default: $ABLAB_STORAGE, else ./ablab_results "
        "(on a cluster, a path every node shares)",
    )
    checkpoint: Checkpointing = Field(default_factory=Checkpointing)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is reserved (the storage's {v}/ folder is not a study); choose another name")
        return v

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _es_shorthand(cls, v: Any) -> Any:
        # `early_stopping: none` (or --set early_stopping=none) is short for {type: none}
        return {"type": v} if isinstance(v, str) else v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        # `seeds: 3` is short for [0, 1, 2]; `seeds: {min: 3, max: 10}` is adaptive
        if isinstance(v, dict):
            try:  # validated here, so an error names the range, not the union's list member
                return SeedRange.model_validate(v)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where} {msg}" if where else msg) from None
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError("a number of seeds must be at least 1")
            if v > MAX_SEEDS:
                # checked before range() is listed: a typo like 10000000000 must not eat the memory
                raise ValueError(f"at most {MAX_SEEDS} seeds")
            return list(range(v))
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_values(cls, v: list[int] | SeedRange) -> list[int] | SeedRange:
        if isinstance(v, SeedRange):
            return v
        if not v:
            raise ValueError("needs at least one seed")
        if len(v) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds")
        if any(s < 0 or s >= SEED_LIMIT for s in v):
            raise ValueError(f"seeds must be >= 0 and < 2**32 ({SEED_LIMIT})")
        if len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list]) -> dict[str, list]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
            if len({repr(x) for x in values}) != len(values):
                raise ValueError(f"grid key {key!r} lists a value twice")
        return v

    @field_validator("tune")
    @classmethod
    def _tune(cls, v: dict[str, list]) -> dict[str, list]:
        return _check_tune(v)

    @model_validator(mode="after")
    def _check(self) -> Study:
        for a in self.ablations:
            _check_tune(a.tune)
            clash = (set(a.tune) & set(self.tune)) | (set(a.tune) & {a.part})
            if clash:
                raise ValueError(f"{sorted(clash)[0]!r} is tuned twice, or is the ablated part itself")
        tuned = set(self.tune) | {k for a in self.ablations for k in a.tune}
        fixed = ({a.part for a in self.ablations} | set(self.grid)) & tuned
        if fixed:
            raise ValueError(f"{sorted(fixed)[0]!r} is both tuned and an ablation part or grid key")
        parts = [a.part for a in self.ablations]
        if len(set(parts)) != len(parts):
            raise ValueError("an ablation part is listed twice")
        for part in parts:
            for key in self.grid:
                if overlaps(part, key):
                    # the ablation would silently replace the grid's value while the trial key shows it
                    raise ValueError(f"grid key {key!r} overlaps the ablation part {part!r}: "
                                     "one of them would silently replace the other")
        return self

    @property
    def report_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics else [self.metric]

    @property
    def seed_list(self) -> list[int]:
        """Every seed an arm may run (for adaptive seeds: up to max)."""
        return list(range(self.seeds.max)) if isinstance(self.seeds, SeedRange) else list(self.seeds)

    @property
    def adaptive_seeds(self) -> tuple[int, int] | None:
        return (self.seeds.min, self.seeds.max) if isinstance(self.seeds, SeedRange) else None


def overlaps(a: str, b: str) -> bool:
    """Whether dotted keys `a` and `b` set the same setting (equal, or one inside the other)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def parse_study(data: dict[str, Any], file: str | None = None) -> Study:
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise user_error(exc, Study, file) from None


def apply_overrides(data: dict[str, Any], overrides, file: str | None = None) -> dict[str, Any]:
    """`--set key=value`: a dotted key into `base`, or into the study when it starts with a study field."""
    return overrides_mod.apply(data, overrides, Study.model_fields, file)


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    data = read_yaml(path)
    data = apply_overrides(data, overrides, file=str(path))
    study = parse_study(data, str(path))
    _refuse_ablated_overrides(study, overrides)
    return study


def _refuse_ablated_overrides(study: Study, overrides) -> None:
    """`--set` on a part an ablation or the grid sets would be ignored in some trials."""
    for key in overrides_mod.base_keys(overrides, Study.model_fields):
        for a in study.ablations:
            touched = [a.part] + [str(k) for v in [a.baseline, *a.replacements] if isinstance(v, dict) for k in v]
            if any(overlaps(key, t) for t in touched):
                raise UserError(
                    f"the ablation of {a.part!r} sets this key in its variants", key="--set", value=key,
                    hint=f"change the ablation's baseline or replacements in the sweep file (ablation {a.part!r}) instead",
                )
        for t in [*study.tune, *(k for a in study.ablations for k in a.tune)]:
            if overlaps(key, t):
                raise UserError(f"`tune` tries several values of this key ({t!r})", key="--set", value=key,
                                hint="change its values under `tune` in the sweep file instead")
        for g in study.grid:
            if overlaps(key, g):
                raise UserError(f"the grid sets this key ({g!r})", key="--set", value=key,
                                hint=f"change grid.{g} in the sweep file instead, or --set grid.{g}=[...]")


__all__ = ["Study", "Ablation", "load_study", "parse_study", "apply_overrides", "read_yaml", "mask_uri",
           "check_tracking_uri", "overlaps", "RESERVED_NAMES"]
