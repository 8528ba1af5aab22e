"""A study expanded into its trials: variants x grid points x seeds.

The baseline is always in the grid. Every variant differs from the baseline in exactly
one ablated part (one factor at a time), and every trial config is built into the
trainable's config dataclass here, so a bad value fails before anything starts.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ablab import configs, registry
from ablab.errors import UserError
from ablab.spec import Study

BASELINE = "baseline"


@dataclass(frozen=True)
class Variant:
    """One arm of the study: the baseline, or the baseline with one part replaced."""

    name: str
    ablation: str | None  # the ablated part, None for the baseline
    action: str | None  # replace | remove
    changes: dict[str, Any] = field(default_factory=dict)  # dotted key -> value
    tune: dict[str, list[Any]] = field(default_factory=dict)  # dotted key -> values tried for this arm


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs; becomes the trial's Ray config (plain JSON types only)."""

    key: str  # stable and unique within the study: context | variant | seed
    variant: str
    ablation: str | None
    action: str | None
    context: dict[str, Any]  # the grid point (dotted key -> value); {} without a grid
    seed: int
    config: dict[str, Any]  # the full nested trainable config, seed included
    tune: dict[str, Any] = field(default_factory=dict)  # the tuned values this trial tries; {} untuned

    @property
    def context_label(self) -> str:
        return context_label(self.context)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "variant": self.variant,
            "ablation": self.ablation,
            "action": self.action,
            "context": self.context,
            "seed": self.seed,
            "config": self.config,
            **({"tune": self.tune} if self.tune else {}),  # untuned studies keep their old fingerprint
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialSpec:
        return cls(**d)


def context_label(context: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_label(v)}" for k, v in context.items()) or "all"


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_label(v)}" for k, v in value.items()) + "}"
    return str(value)


def variants(study: Study) -> list[Variant]:
    baseline_changes: dict[str, Any] = {}
    for a in study.ablations:
        baseline_changes.update(_changes(a.part, a.baseline))
    # The baseline sits in every table, so it is tuned over every key any ablation tunes.
    baseline_tune = dict(study.tune)
    for a in study.ablations:
        baseline_tune.update(a.tune)
    out = [Variant(BASELINE, None, None, baseline_changes, baseline_tune)]
    for a in study.ablations:
        for r in a.replacements:
            changes = dict(baseline_changes)
            for k in _changes(a.part, a.baseline):
                changes.pop(k)
            changes.update(_changes(a.part, r))
            out.append(Variant(f"{a.part}={_label(r)}", a.part, a.action, changes, {**study.tune, **a.tune}))
    return out


def _changes(part: str, value: Any) -> dict[str, Any]:
    """A variant value as dotted settings: a scalar sets `part`, a mapping sets several keys."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {part: value}


def points(values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the listed values ({} when nothing is listed): grid and tune points."""
    return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]


def grid_points(study: Study) -> list[dict[str, Any]]:
    return points(study.grid)


def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = config
    for p in parts[:-1]:
        nxt = target.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise UserError("cannot set inside a non-mapping", key=dotted, value=nxt)
        target = nxt
    target[parts[-1]] = copy.deepcopy(value)


SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)


def _refuse_secrets(study: Study, file: str | None) -> None:
    """Secrets never sit in a sweep file: it is logged to MLflow and copied with the results."""
    from ablab.tracking import flatten

    settings = dict(flatten(study.base, "base"))
    for a in study.ablations:
        for v in [a.baseline, *a.replacements]:
            settings.update(_changes(a.part, v))
    for key, value in settings.items():
        if SECRET_KEY.search(key.split(".")[-1]) and isinstance(value, str) and value:
            raise UserError(
                "a secret in a sweep file", file=file, key=key,
                hint=f"put it in an environment variable and give its name instead ({key}_env: MY_VAR)",
            )


MAX_TRIALS = 100_000  # a hard ceiling, above the --yes threshold: no study that large is meant


def count_trials(study: Study) -> int:
    """The number of trials, computed without building them (a huge grid must fail fast, not swap)."""
    n_points = 1
    for values in study.grid.values():
        n_points *= len(values)
    per_seed = sum(len(points(v.tune)) for v in variants(study))
    return n_points * per_seed * len(study.seed_list)


def expand(study: Study, file: str | None = None) -> list[TrialSpec]:
    """All trials of the study, each config validated against the trainable's Config."""
    n = count_trials(study)
    if n > MAX_TRIALS:
        raise UserError(f"this study expands to {n} trials (at most {MAX_TRIALS})", file=file,
                        hint="check grid/ablations/seeds")
    _refuse_secrets(study, file)
    try:
        module = registry.load(study.trainable)
    except UserError as exc:
        raise exc.within(file=file) from None
    _check_metrics(study, module, file)
    trials = []
    built: dict[str, Any] = {}
    for point in grid_points(study):
        for v, tuned in ((v, t) for v in variants(study) for t in points(v.tune)):
            for seed in study.seed_list:
                config = copy.deepcopy(study.base)
                for k, val in {**point, **v.changes, **tuned}.items():
                    set_dotted(config, k, val)
                config["seed"] = seed
                # Validate once per distinct config without the seed: the seed never makes it invalid.
                fingerprint = json.dumps({k: val for k, val in config.items() if k != "seed"}, sort_keys=True, default=str)
                if fingerprint not in built:
                    try:
                        built[fingerprint] = configs.build(module.Config, config)
                    except UserError as exc:
                        where = "base" if not exc.key or exc.key.split(".")[0] not in {*point, *v.changes, *tuned} else None
                        raise _place(exc, file, where, v, point) from None
                key = " | ".join([context_label(point), v.name, *([f"tune: {context_label(tuned)}"] if tuned else []),
                                  f"seed={seed}"])
                trials.append(
                    TrialSpec(
                        key=key,
                        variant=v.name,
                        ablation=v.ablation,
                        action=v.action,
                        context=point,
                        seed=seed,
                        config=configs.to_dict(built[fingerprint]) | {"seed": seed},
                        tune=tuned,
                    )
                )
    return trials


def _place(exc: UserError, file: str | None, where: str | None, v: Variant, point: dict) -> UserError:
    key = exc.key or ""
    if v.ablation and (key in v.changes or any(key.startswith(k + ".") for k in v.changes)):
        hint = f"set by ablation `{v.ablation}` (variant {v.name})"
    elif any(key == k or key.startswith(k + ".") for k in point):
        hint = "set by `grid`"
    else:
        hint = None
    prefixed = exc.within(file=file, key_prefix="base" if where == "base" else None)
    if hint:
        prefixed.hint = (prefixed.hint + "; " if prefixed.hint else "") + hint
    return prefixed


def _check_metrics(study: Study, module, file: str | None) -> None:
    declared = dict(module.METRICS)
    for key, name in [("metric", study.metric), *[("metrics", m) for m in study.report_metrics]]:
        if name not in declared:
            raise UserError(
                f"trainable `{study.trainable}` does not report this metric", file=file, key=key,
                value=name, allowed=sorted(declared),
            )
    for m in study.stats.smallest_effect:
        if m not in declared:
            raise UserError(
                f"trainable `{study.trainable}` does not report this metric", file=file,
                key="stats.smallest_effect", value=m, allowed=sorted(declared),
            )
    for i, a in enumerate(study.ablations):
        for m in a.metrics or []:
            if m not in declared:
                raise UserError(
                    f"trainable `{study.trainable}` does not report this metric", file=file,
                    key=f"ablations[{i}].metrics", value=m, allowed=sorted(declared),
                )
    if study.early_stopping.type != "none" and declared[study.metric] != study.mode:
        raise UserError(
            f"mode {study.mode!r} disagrees with the trainable's direction for {study.metric} "
            f"({declared[study.metric]!r}): early stopping would keep the worst trials",
            file=file, key="mode", allowed=[declared[study.metric]],
        )


def fingerprint(study: Study, trials: list[TrialSpec]) -> str:
    """Identity of a study's definition: what must not change when a study is resumed."""
    payload = json.dumps(
        {"trainable": study.trainable, "trials": [t.to_json() for t in trials],
         **({"adaptive_seeds": study.adaptive_seeds} if study.adaptive_seeds else {})},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
