"""Trainables by name.

A trainable is a module with `Config` (a dataclass with a `seed` field), `METRICS`
(metric key -> "max" | "min", the keys it reports), `train(cfg) -> None` and optionally
`check(cfg) -> None` (raises `core.errors.ConfigError` for a config that cannot work).
The names users write in sweep files are entry points of the `ablab.trainables` group
(pyproject.toml); a dotted module path works too, for a researcher's own trainable.
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import entry_points
from types import ModuleType

from ablab.errors import UserError

GROUP = "ablab.trainables"


def registered() -> dict[str, str]:
    """Trainable name -> module path, from every installed package's entry points."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def module_path(name: str) -> str:
    """The module a trainable name stands for: its entry point's, or the name itself."""
    return registered().get(name, name)


def load(name: str) -> ModuleType:
    names = registered()
    path = names.get(name)
    if path is None:
        if "." not in name:
            raise UserError(
                "unknown trainable", key="trainable", value=name, allowed=sorted(names),
                hint="or give a module path such as mypkg.my_trainable",
            )
        path = name
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        raise UserError(
            f"cannot import trainable module {path!r} ({exc})", key="trainable",
            allowed=sorted(names),
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module is broken: say where, in one line
        raise UserError(
            f"trainable module {path!r} fails on import: {type(exc).__name__}: {_one_line(exc)}",
            key="trainable",
        ) from None
    for attr in ("Config", "METRICS", "train"):
        if not hasattr(module, attr):
            raise UserError(f"trainable module {path!r} has no {attr}", key="trainable")
    if not dataclasses.is_dataclass(module.Config) or "seed" not in {
        f.name for f in dataclasses.fields(module.Config)
    }:
        raise UserError(f"{path}.Config must be a dataclass with a `seed` field", key="trainable")
    metrics = getattr(module, "METRICS")
    if not isinstance(metrics, dict) or not all(v in ("max", "min") for v in metrics.values()):
        raise UserError(f"{path}.METRICS must map metric names to 'max' or 'min'", key="trainable")
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
