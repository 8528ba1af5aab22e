"""Validation shared by the config dataclasses of core.distill.

Every config is a frozen dataclass; its ``__post_init__`` calls ``check_config`` so that a
wrong value (an unknown loss name, a negative IPC) fails at construction with a message
naming the field and the allowed values, never later and never silently.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` (or ``tuple[Literal[...], ...]``) hint."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    return None


def check_config(obj: Any) -> None:
    """Raise ValueError if a Literal-typed field of a dataclass holds a value it does not allow."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        tp = hints[f.name]
        value = getattr(obj, f.name)
        allowed = _literal_values(tp)
        if allowed is not None:
            if value not in allowed:
                raise ValueError(
                    f"{type(obj).__name__}.{f.name}: {value!r} is not allowed; "
                    f"allowed values: {', '.join(map(repr, allowed))}"
                )
            continue
        # tuple[Literal[...], ...]: check every element
        if get_origin(tp) is tuple:
            args = get_args(tp)
            inner = _literal_values(args[0]) if args else None
            if inner is not None:
                if not isinstance(value, tuple):
                    raise ValueError(f"{type(obj).__name__}.{f.name}: expected a tuple, got {value!r}")
                for v in value:
                    if v not in inner:
                        raise ValueError(
                            f"{type(obj).__name__}.{f.name}: {v!r} is not allowed; "
                            f"allowed values: {', '.join(map(repr, inner))}"
                        )


def require(cond: bool, obj: Any, field: str, message: str) -> None:
    """Raise ValueError naming ``Config.field`` unless ``cond`` holds."""
    if not cond:
        raise ValueError(f"{type(obj).__name__}.{field}: {message} (got {getattr(obj, field)!r})")


def resolve_device(device: str) -> "typing.Any":
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
