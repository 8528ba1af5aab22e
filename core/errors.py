"""The one exception a core raises for a config that cannot work.

Raised where a core finds, from the config alone, that a run would fail the same way
every time (a network that does not take the dataset's input shape, a filter that needs
step labels the task does not have). The platform turns it into a user error naming
`key` at validate time, and inside a trial records it once as a failure and never
retries it: retrying a deterministic error only triples the wait for the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ConfigError(ValueError):
    """`key` is the dotted config key as written in sweep files (e.g. ``ptm.arch``)."""

    def __init__(self, key: str, message: str, allowed: Sequence[Any] | None = None):
        self.key = key
        self.message = message
        self.allowed = tuple(allowed) if allowed is not None else None
        text = f"{key}: {message}"
        if self.allowed:
            text += f" (allowed: {', '.join(map(str, self.allowed))})"
        super().__init__(text)
