"""Errors a user can cause, and how they are shown.

Every mistake in a sweep file or on the command line becomes one `UserError` that names
the file, the key path, the bad value and what is allowed. The CLI prints it and exits
with code 2 before anything is started.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

EXIT_USER_ERROR = 2


# user:password@ inside a URL: masked wherever a value is shown
_CREDENTIALS = re.compile(r"(://)[^/\s@]+@")


def mask_credentials(text: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", text)


def _show(value: Any) -> str:
    text = mask_credentials(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."


class UserError(Exception):
    """A mistake the user can fix; never a bug in ablab."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        value: Any = ...,
        allowed: Iterable[Any] | str | None = None,
        hint: str | None = None,
    ):
        self.problem = problem
        self.file = file
        self.key = key
        self.value = value
        self.allowed = allowed
        self.hint = hint
        super().__init__(self.message)

    def within(self, file: str | None = None, key_prefix: str | None = None) -> UserError:
        """The same error, placed in a file and/or under a parent key."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return UserError(
            self.problem,
            file=self.file or file,
            key=key,
            value=self.value,
            allowed=self.allowed,
            hint=self.hint,
        )

    @property
    def message(self) -> str:
        where = ""
        if self.file:
            where = self.file
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        text = f"{where}: {self.problem}" if where else self.problem
        if self.value is not ...:
            text += f" (got {_show(self.value)})"
        if self.allowed is not None:
            allowed = (
                self.allowed
                if isinstance(self.allowed, str)
                else ", ".join(str(a) for a in self.allowed)
            )
            text += f"; allowed: {allowed}"
        if self.hint:
            text += f". {self.hint}"
        return "error: " + mask_credentials(text)
