"""pydantic's errors about a sweep file, as one `UserError` naming the key as written."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from ablab.errors import UserError

STOPPING_TYPES = ["none", "margin", "asha", "median"]


def user_error(exc: ValidationError, root: type[BaseModel], file: str | None) -> UserError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    # pydantic puts the union member's tag in the path (early_stopping.asha.max_t): drop it
    if len(loc) >= 2 and loc[0] == "early_stopping" and loc[1] in STOPPING_TYPES:
        loc.pop(1)
    key = loc_to_key(loc)
    kind = err["type"]
    value = err.get("input", ...)
    allowed = None
    msg = err["msg"]
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
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
        allowed = STOPPING_TYPES
        value = ...
    elif kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
        if isinstance(value, dict):
            value = ...
    if isinstance(value, (dict, list)) and len(repr(value)) > 80:
        value = ...
    return UserError(msg, file=file, key=key or None, value=value, allowed=allowed)


def loc_to_key(loc: list[str]) -> str:
    key = ""
    for p in loc:
        key = f"{key}[{p}]" if p.isdigit() else (f"{key}.{p}" if key else p)
    return key


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    model: Any = root
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
