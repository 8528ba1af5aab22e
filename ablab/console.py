"""What ablab prints: the start-up chatter of its dependencies kept out, durations in words."""

from __future__ import annotations

import logging

# Start-up messages of our dependencies that say nothing a user must act on: MLflow's
# schema creation for a new SQLite store, and Ray's notice about its token authentication
# (a local cluster's token is created and used by Ray itself).
CHATTER = (
    "mlflow.store.db.utils",
    "alembic.runtime.migration",
    "ray._private.authentication.authentication_token_setup",
)


def quiet_startup_chatter() -> None:
    for name in CHATTER:
        logging.getLogger(name).setLevel(logging.ERROR)


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h20m; '?' when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
