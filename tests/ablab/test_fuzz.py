"""Fuzzing the front door: random sweep files and `--set` arguments, through the real CLI.

Every input must end in exit 0 (valid) or 2 (one line naming the mistake): never 1 (a
traceback), never a hang. Bounded in time (hypothesis deadline, test timeout) and in
memory (the sweep files are small; the YAML loader bounds what they expand to).
"""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablab.cli import main

KEYS = ["name", "trainable", "base", "grid", "ablations", "seeds", "metric", "mode", "metrics", "resources",
        "max_concurrent", "max_failures", "early_stopping", "tracking", "checkpoint", "description", "storage",
        "steps", "quality", "part", "baseline", "replacements", "type", "margin", "uri", "api_key"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(string.printable, max_size=12),
    st.sampled_from(["synthetic", "quickstart", "val/score", "max", "min", "margin", "asha", "none", "0.5"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=20)
sweeps = st.fixed_dictionaries(
    {"name": st.sampled_from(["fz", "a b", "", "stages"])},
    optional={k: values for k in KEYS[1:17]},
).map(lambda d: {**{"trainable": "synthetic", "metric": "val/score", "mode": "max"}, **d})
set_args = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + ["base", "a.b", "quality", "seeds"]),
              st.text(string.printable.replace("\n", ""), max_size=15)),
    st.text(string.printable.replace("\n", ""), max_size=15),
), max_size=3)


@pytest.mark.timeout(600)
@settings(max_examples=300, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(sweep=sweeps, overrides=set_args)
def test_validate_never_fails_with_a_traceback(sweep, overrides, tmp_path, capsys):
    path = tmp_path / "fuzz.yaml"
    sweep.setdefault("storage", str(tmp_path / "results"))
    path.write_text(yaml.safe_dump(sweep, allow_unicode=True))
    argv = ["validate", str(path)] + [f"--set={o}" for o in overrides]
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.timeout(600)
@settings(max_examples=200, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_a_sweep_file(raw, tmp_path, capsys):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(raw)
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2 or (code == 0 and not err), err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.timeout(300)
@settings(max_examples=100, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.text(string.printable.replace("\n", ""), max_size=12), max_size=4))
def test_any_arguments_to_the_read_only_commands(args, tmp_path, capsys):
    for command in ("status", "report", "list"):
        try:
            code = main([command, *args, "--storage", str(tmp_path)])
        except SystemExit as exc:  # argparse: usage error, exit 2 (or 0 for --help)
            code = exc.code
        capsys.readouterr()
        assert code in (0, 2)
