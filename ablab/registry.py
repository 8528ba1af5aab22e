"""Trainables by name.

A trainable is a module with `Config` (a dataclass with a `seed` field), `METRICS`
(metric key -> "max" | "min", the keys it reports) and `train(cfg) -> None`. The names
users write in sweep files are registered in `trainables.REGISTRY`; a dotted module
path works too, for a researcher's own trainable.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from ablab.errors import UserError


def registered() -> dict[str, str]:
    from trainables import REGISTRY

    return dict(REGISTRY)


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
    for attr in ("Config", "METRICS", "train"):
        if not hasattr(module, attr):
            raise UserError(f"trainable module {path!r} has no {attr}", key="trainable")
    if not dataclasses.is_dataclass(module.Config) or "seed" not in {
        f.name for f in dataclasses.fields(module.Config)
    }:
        raise UserError(f"{path}.Config must be a dataclass with a `seed` field", key="trainable")
    return module
