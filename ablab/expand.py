"""A study expanded into its trials: variants x grid points x seeds.

The baseline is always in the grid. Every variant differs from the baseline in exactly
one ablated part (one factor at a time), and every trial config is built into the
trainable's config dataclass here (and passed to its `check`), so a bad value fails
before anything starts, naming the ablation or grid that set it.
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
from ablab.types import BASELINE, TrialSpec, context_label, value_label
from core.errors import ConfigError

__all__ = ["BASELINE", "TrialSpec", "Variant", "context_label", "count_trials", "expand", "fingerprint",
           "grid_points", "variants", "directions_of", "SECRET_KEY"]


@dataclass(frozen=True)
class Variant:
    """One arm of the study: the baseline, or the baseline with one part replaced."""

    name: str
    """`baseline`, or `<part>=<replacement>`."""
    ablation: str | None
    """The ablated part, None for the baseline."""
    action: str | None
    """replace | remove."""
    changes: dict[str, Any] = field(default_factory=dict)
    """dotted key -> value, applied over `base`."""
    tune: dict[str, list[Any]] = field(default_factory=dict)
    """dotted key -> values tried for this arm."""


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
            out.append(Variant(f"{a.part}={value_label(r)}", a.part, a.action, changes, {**study.tune, **a.tune}))
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


SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)
# Values that are secrets whatever their key: credentials in a URL, well-known key formats.
SECRET_VALUE = re.compile(r"(://[^/\s:@]+:[^/\s@]+@)|^(sk-[A-Za-z0-9_-]{8,}|ghp_[A-Za-z0-9]{20,}|"
                          r"hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|xox[bp]-[A-Za-z0-9-]{10,})")


def _walk(value: Any, key: str):
    """(dotted key, leaf value) of a nested value, without recursion limits mattering: the
    YAML loader already bounded the depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}[{i}]")
    else:
        yield key, value


def _refuse_secrets(study: Study, file: str | None) -> None:
    """Secrets never sit in a sweep file: it is logged to MLflow and copied with the results."""
    places: list[tuple[str, Any]] = [("base", study.base)]
    places += [(f"grid.{k}", v) for k, v in study.grid.items()]
    for i, a in enumerate(study.ablations):
        places += [(f"ablations[{i}].baseline", {a.part: a.baseline} if not isinstance(a.baseline, dict) else a.baseline)]
        places += [(f"ablations[{i}].replacements[{j}]", {a.part: r} if not isinstance(r, dict) else r)
                   for j, r in enumerate(a.replacements)]
        places += [(f"ablations[{i}].tune.{k}", v) for k, v in a.tune.items()]
    places += [(f"tune.{k}", v) for k, v in study.tune.items()]
    places += [("description", study.description), ("storage", study.storage)]
    for where, value in places:
        for key, leaf in _walk(value, where):
            name = re.split(r"[.\[]", key.rsplit(".", 1)[-1])[0]
            if isinstance(leaf, str) and leaf and (SECRET_KEY.search(name) or SECRET_VALUE.search(leaf)):
                raise UserError(
                    "a secret in a sweep file", file=file, key=key,
                    hint="put it in an environment variable and give its name instead "
                    f"({name}_env: MY_VAR); the value is not shown here",
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
    """All trials of the study, each config validated against the trainable's Config and
    passed to its `check` (when it has one)."""
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
    check = getattr(module, "check", None)
    trials = []
    built: dict[str, Any] = {}
    for point in grid_points(study):
        for v, tuned in ((v, t) for v in variants(study) for t in points(v.tune)):
            config = copy.deepcopy(study.base)
            for k, val in {**point, **v.changes, **tuned}.items():
                set_dotted(config, k, val)
            # Validated once per arm and tuned point: the seed never makes a config invalid.
            config["seed"] = study.seed_list[0]
            fp = json.dumps(config, sort_keys=True, default=str)
            if fp not in built:
                try:
                    cfg = configs.build(module.Config, config)
                    if check is not None:
                        check(cfg)
                except UserError as exc:
                    raise _place(exc, file, v, point, tuned) from None
                except ConfigError as exc:
                    error = UserError(exc.message, key=exc.key, allowed=exc.allowed)
                    raise _place(error, file, v, point, tuned) from None
                built[fp] = configs.to_dict(cfg)
            for seed in study.seed_list:
                key = " | ".join([context_label(point), v.name, *([f"tune: {context_label(tuned)}"] if tuned else []),
                                  f"seed={seed}"])
                trials.append(TrialSpec(
                    key=key, variant=v.name, ablation=v.ablation, action=v.action, context=point,
                    seed=seed, config=built[fp] | {"seed": seed}, tune=tuned,
                ))
    return trials


def _place(exc: UserError, file: str | None, v: Variant, point: dict, tuned: dict | None = None) -> UserError:
    """The error placed where the user wrote the value: the ablation, the grid, `tune`, or `base`."""
    key = exc.key or ""

    def sets(k: str) -> bool:
        return key == k or key.startswith(k + ".") or k.startswith(key + ".") if key else False

    if v.ablation and any(sets(k) for k in v.changes):
        hint = f"set by ablation `{v.ablation}` (variant {v.name})"
        prefix = None
    elif v.ablation is None and any(sets(k) for k in v.changes):
        part = next(a for a in v.changes if sets(a))
        hint = f"set by the baseline of ablation `{part}`"
        prefix = None
    elif any(sets(k) for k in point):
        hint = "set by `grid`"
        prefix = None
    elif any(sets(k) for k in tuned or {}):
        hint = "set by `tune`"
        prefix = None
    else:
        hint, prefix = None, "base"
    placed = exc.within(file=file, key_prefix=prefix)
    if hint:
        placed.hint = (placed.hint + "; " if placed.hint else "") + hint
    return placed


def directions_of(module) -> dict[str, str]:
    """Metric -> "max" | "min" as the trainable declares them (saved in study.json)."""
    return {str(k): str(v) for k, v in dict(module.METRICS).items()}


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


# Study settings that only change the report: a change re-reports, it does not re-run.
REPORT_ONLY = frozenset({"metrics", "description", "tracking", "storage", "max_concurrent", "resources",
                         "checkpoint"})


def fingerprint(study: Study, trials: list[TrialSpec]) -> str:
    """Identity of a study's results: every setting that changes what the trials produce
    or which of them count (metric, mode, early stopping, max_failures, ...), and the trials.
    Settings in REPORT_ONLY are left out: changing them continues the same study."""
    settings = study.model_dump(mode="json", exclude=set(REPORT_ONLY) | {"base", "grid", "ablations", "name"})
    payload = json.dumps(
        {"trainable": study.trainable, "settings": settings, "trials": [t.to_json() for t in trials]},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
