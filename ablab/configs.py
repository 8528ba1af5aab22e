"""Strict construction of a trainable's config dataclass from a nested mapping.

Why by hand and not pydantic's TypeAdapter: the cores declare plain frozen dataclasses
(no pydantic in core/), and ablab wants one message per mistake with the dotted key as
it is written in the sweep file and the allowed values of a `Literal` field. The rules are
few: unknown keys are errors, ints are accepted where floats are expected, nothing else
is coerced, and a dataclass's own `__post_init__` checks become user errors too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from ablab.errors import UserError

_MISSING = dataclasses.MISSING


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build(cls: type, data: Mapping[str, Any] | None, key: str = "") -> Any:
    """An instance of dataclass `cls` from `data`; raises UserError naming the key path."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UserError("expected a mapping of settings", key=key or None, value=data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = unknown[0]
        raise UserError(
            "unknown key",
            key=_join(key, str(name)),
            allowed=sorted(fields),
            hint=_did_you_mean(str(name), fields),
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], _join(key, name))
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise UserError("missing required key", key=_join(key, name))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc), key=key or None) from None


def convert(tp: Any, value: Any, key: str) -> Any:
    """`value` checked against type `tp` (and converted for tuples and dataclasses)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or type(value) not in {type(a) for a in allowed}:
            raise UserError("not an allowed value", key=key, value=value, allowed=allowed)
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, key)
            except UserError as exc:
                errors.append(exc)
        raise errors[-1] if len(errors) == 1 else UserError(
            "wrong type", key=key, value=value, allowed=" | ".join(_type_name(o) for o in options)
        )
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError("expected a list", key=key, value=value)
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        items = [convert(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise UserError("expected a mapping", key=key, value=value)
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError("expected a number", key=key, value=value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError("expected an integer", key=key, value=value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError("expected true or false", key=key, value=value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError("expected a string", key=key, value=value)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"expected {_type_name(tp)}", key=key, value=value)
    return value


def to_dict(obj: Any) -> Any:
    """A dataclass as plain nested dicts/lists (tuples become lists, as in YAML)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def allowed_values(cls: type, dotted: str) -> tuple[Any, ...] | None:
    """The allowed values of a Literal field at `dotted`, or None if it is not a Literal."""
    tp: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _did_you_mean(name: str, options) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean '{close[0]}'?" if close else None
