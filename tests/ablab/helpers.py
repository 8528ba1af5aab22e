"""Reading a finished study back: its MLflow runs and its trial records."""

from __future__ import annotations

import socket
from pathlib import Path

from ablab.recovery import study_runs
from ablab.records import StudyPaths


def study_paths(sweep: Path, name: str) -> StudyPaths:
    return StudyPaths(sweep.parent / "results", name)


def mlflow_runs(paths: StudyPaths):
    """(client, parent runs, children) of the study, from its own tracking store."""
    return study_runs(paths)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_address(ray) -> str:
    """The address of the session's Ray (the ``ray_session`` fixture), for an ``ablab run``
    subprocess to join with ``--address`` instead of starting its own Ray (seconds each).
    Tests of what a driver does with the Ray it started itself (SIGKILL of the process
    group, Ctrl-C) do not join."""
    return ray.get_runtime_context().gcs_address


def cmdline(pid: int) -> str:
    """The command line of `pid`, "" once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live process below `pid` (from /proc's parent links)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            parents[int(proc.name)] = int(stat[stat.rfind(")") + 2:].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = cmdline(child)
                frontier.append(child)
    return found


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(")") + 2] != "Z"
