"""The sweep file: schema, safe loading, overrides.

One file = one study. The schema is strict (an unknown key is an error) and every error
comes out as a `UserError` naming the file and the key path. Trial configs are checked
against the trainable's own config dataclass in `ablab.expand`, before anything starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablab.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_SEEDS = 1000
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
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
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
        both = set(parts) & set(self.grid)
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is both a grid key and an ablation part")
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


# ---------------------------------------------------------------------------- loading


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a typo's favourite hiding place)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserError("no such sweep file", file=str(path))
    if path.is_dir():
        raise UserError("is a folder, not a sweep file", file=str(path))
    try:
        data = yaml.load(path.read_text(), Loader=_SafeLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "python/" in str(exc) or "could not determine a constructor" in str(exc):
            problem = "YAML tags that build Python objects are not allowed in sweep files"
        raise UserError(f"invalid YAML{where}: {problem}", file=str(path)) from None
    if data is None:
        raise UserError("the sweep file is empty", file=str(path))
    if not isinstance(data, dict):
        raise UserError("a sweep file must be a mapping of keys (name, trainable, base, ...)", file=str(path))
    return data


def parse_study(data: dict[str, Any], file: str | None = None) -> Study:
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise _user_error(exc, file) from None


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    data = read_yaml(path)
    data = apply_overrides(data, overrides, file=str(path))
    return parse_study(data, str(path))


def apply_overrides(data: dict[str, Any], overrides, file: str | None = None) -> dict[str, Any]:
    """`--set key=value`: a dotted key into `base`, or into the study when it starts with a study field."""
    import copy

    data = copy.deepcopy(data)
    study_fields = set(Study.model_fields) - {"base"}
    for item in overrides:
        if "=" not in item:
            raise UserError("--set takes key=value", key="--set", value=item)
        key, _, raw = item.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
            raise UserError("--set key must be dotted names like model.width", key="--set", value=key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        if parts[0] == "base":
            parts = parts[1:]
            target = data.setdefault("base", {})
        elif parts[0] in study_fields:
            target = data
        else:
            target = data.setdefault("base", {})
        if not isinstance(target, dict):
            raise UserError("cannot set inside a non-mapping", file=file, key=key)
        for p in parts[:-1]:
            nxt = target.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise UserError("cannot set inside a non-mapping", file=file, key=key, value=nxt)
            target = nxt
        target[parts[-1]] = value
    return data


def _user_error(exc: ValidationError, file: str | None) -> UserError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    # pydantic puts the union member's tag in the path (early_stopping.asha.max_t): drop it
    if len(loc) >= 2 and loc[0] == "early_stopping" and loc[1] in {"none", "margin", "asha", "median"}:
        loc.pop(1)
    key = _loc_to_key(loc)
    kind = err["type"]
    value = err.get("input", ...)
    allowed = None
    msg = err["msg"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else None
        msg = "unknown key"
        value = ...
    elif kind == "missing":
        msg, value = "missing required key", ...
    elif kind == "literal_error":
        allowed = [a.strip().strip("'") for a in re.split(r",| or ", err["ctx"]["expected"]) if a.strip()]
        msg = "not an allowed value"
    elif kind == "union_tag_invalid":
        allowed = [a.strip().strip("'") for a in err["ctx"]["expected_tags"].split(",")]
        msg = "unknown type"
        value = err["ctx"].get("tag", value)
        key = f"{key}.type" if key else "type"
    elif kind == "union_tag_not_found":
        msg = "needs a `type`"
        allowed = ["none", "margin", "asha", "median"]
        value = ...
    elif kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
        if isinstance(value, dict):
            value = ...
    if isinstance(value, (dict, list)) and len(repr(value)) > 80:
        value = ...
    return UserError(msg, file=file, key=key or None, value=value, allowed=allowed)


def _loc_to_key(loc: list[str]) -> str:
    key = ""
    for p in loc:
        key = f"{key}[{p}]" if p.isdigit() else (f"{key}.{p}" if key else p)
    return key


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: Any = Study
    for p in loc:
        if p.isdigit():
            continue
        field = model.model_fields.get(p) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for c in list(candidates):
            candidates += list(getattr(c, "__args__", ()))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model
