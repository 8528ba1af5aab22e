"""Property-based tests of the sweep schema (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablab.errors import UserError
from ablab.expand import BASELINE, expand
from ablab.spec import parse_study

KEYS = ["rate", "quality", "noise"]
values = st.floats(min_value=0.0, max_value=2.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def valid_studies(draw):
    parts = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    ablations = []
    for p in parts:
        vals = draw(st.lists(values, min_size=2, max_size=4, unique=True))
        ablations.append({"part": p, "baseline": vals[0], "replacements": vals[1:]})
    grid_keys = [k for k in ["steps", "sleep_seconds"] if draw(st.booleans())]
    grid = {}
    if "steps" in grid_keys:
        grid["steps"] = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True))
    seeds = draw(st.lists(st.integers(0, 100), min_size=1, max_size=3, unique=True))
    return {"name": "prop", "trainable": "synthetic", "ablations": ablations, "grid": grid,
            "seeds": seeds, "metric": "val/score", "mode": "max"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_studies())
def test_any_valid_study_expands_to_a_grid_with_the_baseline(data):
    study = parse_study(data)
    trials = expand(study)
    n_arms = 1 + sum(len(a["replacements"]) for a in data["ablations"])
    n_points = len(data["grid"].get("steps", [1]))
    assert len(trials) == n_arms * n_points * len(data["seeds"])
    for point in {t.context_label for t in trials}:
        base = [t for t in trials if t.context_label == point and t.variant == BASELINE]
        assert sorted(t.seed for t in base) == sorted(data["seeds"])
    assert len({t.key for t in trials}) == len(trials)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
top_keys = st.sampled_from(["name", "trainable", "base", "grid", "ablations", "seeds", "metric", "mode",
                            "resources", "early_stopping", "tracking", "storage", "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(top_keys, json_like, max_size=8))
def test_no_input_crashes_the_validator(data):
    try:
        expand(parse_study(data))
    except UserError as exc:
        assert exc.message.startswith("error: ")
