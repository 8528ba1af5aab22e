"""Range checks of the config dataclasses of core.distill, one message shape for all.

Allowed values of `Literal` fields are not checked here: whoever builds a config from user
input checks them against `typing.get_args` of the field's type (the platform does).
"""

from __future__ import annotations

from typing import Any


def require(cond: bool, obj: Any, field: str, message: str) -> None:
    """Raise ValueError naming ``Config.field`` unless ``cond`` holds."""
    if not cond:
        raise ValueError(f"{type(obj).__name__}.{field}: {message} (got {getattr(obj, field)!r})")
