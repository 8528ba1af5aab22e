"""`--set key=value`: command-line changes to a sweep file, applied before it is parsed.

A dotted key goes into `base`, or into the study itself when its first part is a study
field (`seeds=2`, `early_stopping.margin=0.1`); `base.x=1` says `base` explicitly.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from ablab.errors import UserError

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def parse(item: str) -> tuple[str, Any]:
    """`key=value` -> (key, value parsed as YAML)."""
    from ablab.yaml_loader import loads

    if "=" not in item:
        raise UserError("--set takes key=value", key="--set", value=item)
    key, _, raw = item.partition("=")
    key = key.strip()
    if not KEY.fullmatch(key):
        raise UserError("--set key must be dotted names like model.width", key="--set", value=key)
    try:
        value = loads(raw, "--set", what=f"invalid value for {key}") if raw.strip() else ""
    except UserError:
        value = raw  # not YAML: the text as it is
    return key, value


def target_path(key: str, study_fields: Iterable[str]) -> list[str]:
    """Where `key` lands in the sweep file's data: ["base", ...] or [study field, ...]."""
    parts = key.split(".")
    if parts[0] == "base" or parts[0] in set(study_fields) - {"base"}:
        return parts
    return ["base", *parts]


def apply(data: dict[str, Any], overrides: Iterable[str], study_fields: Iterable[str],
          file: str | None = None) -> dict[str, Any]:
    """A copy of `data` with each override applied in order."""
    data = copy.deepcopy(data)
    fields = list(study_fields)
    for item in overrides:
        key, value = parse(item)
        parts = target_path(key, fields)
        target = data
        for p in parts[:-1]:
            nxt = target.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise UserError("cannot set inside a non-mapping", file=file, key=key, value=nxt)
            target = nxt
        target[parts[-1]] = value
    return data


def base_keys(overrides: Iterable[str], study_fields: Iterable[str]) -> list[str]:
    """The dotted base-config keys the overrides set (without the `base.` prefix)."""
    fields = list(study_fields)
    keys = []
    for item in overrides:
        key = item.partition("=")[0].strip()
        parts = target_path(key, fields) if KEY.fullmatch(key) else []
        if len(parts) > 1 and parts[0] == "base":
            keys.append(".".join(parts[1:]))
    return keys
