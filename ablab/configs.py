"""A trainable's config dataclass built from a nested mapping, by pydantic.

The cores declare plain frozen dataclasses (no pydantic in core/); pydantic validates a
mapping against them here. The rules: unknown keys are errors, nothing is coerced except
an int where a float is expected (pydantic's strict JSON mode), NaN and infinity are
refused, and a dataclass's own `__post_init__` checks become user errors too. Each error
becomes one `UserError` with the dotted key as written in the sweep file and, for a
`Literal` field, the allowed values (`typing.get_args`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic_core import to_jsonable_python

from ablab.errors import UserError
from core.errors import ConfigError

_RULES = pydantic.ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

# pydantic error type -> the problem as a user reads it
_PROBLEMS = {
    "float_type": "expected a number",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "dataclass_type": "expected a mapping of settings",
    "finite_number": "must be a finite number (not NaN or infinity)",
    "missing_argument": "missing required key",
    "missing": "missing required key",
}


@functools.lru_cache(maxsize=None)
def _validator(cls: type) -> type[pydantic.BaseModel]:
    # A stdlib dataclass takes the config of the model that holds it (TypeAdapter refuses
    # a config for a dataclass), so the rules apply to every nested config as well.
    return pydantic.create_model(f"{cls.__name__}Validator", __config__=_RULES, config=(cls, ...))


def build(cls: type, data: Mapping[str, Any] | None, key: str = "") -> Any:
    """An instance of dataclass `cls` from `data`; raises UserError naming the key path."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UserError("expected a mapping of settings", key=key or None, value=data)
    text = json.dumps({"config": _over_defaults(cls, data)}, default=str)
    try:
        return _validator(cls).model_validate_json(text).config
    except pydantic.ValidationError as exc:
        raise _user_error(cls, exc, key) from None


def _over_defaults(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` laid over the defaults a parent config gives its nested configs.

    A parent may give a nested config other defaults than the nested class's own
    (`sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=1e-4, max_steps=300))`).
    Validated as written, a partial mapping (`sft: {lr: 2e-4}`, a tuned key) would rebuild
    the nested config from the class's defaults and silently drop the parent's (lr 3e-3,
    2000 steps instead of 300). So each nested mapping is completed from the parent's
    default instance first; only fields whose default is a dataclass are merged (a dict or
    list setting is replaced, as written)."""
    try:
        default = cls()
    except TypeError:  # required fields: no default instance to complete from
        return dict(data)
    out = dict(data)
    for f in dataclasses.fields(cls):
        value, nested = out.get(f.name), getattr(default, f.name, None)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(nested) and not isinstance(nested, type):
            out[f.name] = {**to_dict(nested), **_over_defaults(type(nested), value)}
    return out


def to_dict(obj: Any) -> Any:
    """A dataclass as plain nested dicts/lists (tuples become lists, as in YAML)."""
    return to_jsonable_python(obj, fallback=str)


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def allowed_values(cls: type, dotted: str) -> tuple[Any, ...] | None:
    """The allowed values of a Literal field at `dotted`, or None if it is not a Literal."""
    tp = _type_at(cls, dotted.split("."))[1]
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def _type_at(cls: type, parts: list[Any]) -> tuple[list[str], Any]:
    """Follow pydantic's error location through the dataclasses: the dotted key as the
    user wrote it (union member tags dropped, list indices as [i]) and the type there."""
    tp: Any = cls
    key: list[str] = []
    for part in parts:
        while typing.get_origin(tp) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = next((o for o in options if dataclasses.is_dataclass(o)), options[0])
        if isinstance(part, int):
            key.append(f"[{part}]")
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif dataclasses.is_dataclass(tp) and part in (hints := typing.get_type_hints(tp)):
            key.append(f".{part}")
            tp = hints[part]
        elif dataclasses.is_dataclass(tp):  # an unknown key
            key.append(f".{part}")
            tp = None
        elif typing.get_origin(tp) in (dict, Mapping):
            key.append(f".{part}")
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        # else: a union member's tag that pydantic adds to the path
    return key, tp


def _user_error(cls: type, exc: pydantic.ValidationError, prefix: str) -> UserError:
    err = exc.errors(include_url=False)[0]
    loc = list(err["loc"])[1:]  # drop the wrapper's `config`
    parts, tp = _type_at(cls, loc)
    parent = _type_at(cls, loc[:-1])[1] if loc else cls
    key = "".join(parts).lstrip(".")
    key = f"{prefix}.{key}" if prefix and key else (prefix or key)
    kind, value = err["type"], err.get("input", ...)
    if kind == "unexpected_keyword_argument":
        fields = field_names(parent) if dataclasses.is_dataclass(parent) else []
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        return UserError("unknown key", key=key or None, allowed=sorted(fields),
                         hint=f"did you mean '{close[0]}'?" if close else None)
    if kind == "literal_error":
        return UserError("not an allowed value", key=key, value=value, allowed=typing.get_args(tp))
    if kind == "enum" and isinstance(tp, type):
        return UserError("not an allowed value", key=key, value=value, allowed=[m.value for m in tp])
    if kind in ("missing_argument", "missing"):
        return UserError("missing required key", key=key)
    if kind.startswith("value_error") or kind == "assertion_error":
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # a core's own check names its key, from the config's root
            return UserError(cause.message, key=f"{prefix}.{cause.key}" if prefix else cause.key,
                             allowed=cause.allowed)
        return UserError(str(cause or err["msg"]), key=key or None)
    problem = _PROBLEMS.get(kind, err["msg"][0].lower() + err["msg"][1:])
    if isinstance(value, (dict, list)) and len(repr(value)) > 80:
        value = ...
    return UserError(problem, key=key or None, value=value)
