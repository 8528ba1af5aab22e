"""Each filter on crafted samples of the procedural task."""

import pytest

from core.reasoning.filters import FilterConfig, aggregate, apply_filter
from core.reasoning.rewards import LearnedRM, RMConfig
from core.reasoning.tasks import ArithConfig, ArithTask

TASK = ArithTask(ArithConfig(steps=2, number_format="reversed", template="symbolic"))
P = TASK.make_problem(23, [("+", 45), ("-", 12)], "p0")  # gold "32+54=86\n86-21=65\n#### 65"
GOOD = "32+54=86\n86-21=65\n#### 65"
BAD_STEP = "32+54=76\n76-21=65\n#### 65"  # correct answer, wrong steps: a false positive
WRONG = "32+54=86\n86-21=65\n#### 66"
TEXTS = [[GOOD, BAD_STEP, WRONG]]


class FixedORM:
    def __init__(self, scores):
        self._s = scores

    def scores(self, problems, texts):
        return list(self._s)


def test_final_answer_keeps_false_positive_process_oracle_removes_it():
    fa = apply_filter(FilterConfig("final_answer"), TASK, [P], TEXTS)
    pr = apply_filter(FilterConfig("process_oracle"), TASK, [P], TEXTS)
    assert fa == [[True, True, False]]
    assert pr == [[True, False, False]]
    assert apply_filter(FilterConfig("none"), TASK, [P], TEXTS) == [[True, True, True]]


def test_process_aggregations():
    assert aggregate([0.9, 0.2, 0.8], "min") == 0.2
    assert aggregate([0.9, 0.2, 0.8], "last") == 0.8
    assert aggregate([0.5, 0.5], "product") == 0.25
    assert aggregate([], "min") == 0.0
    # "last" only looks at the last step: the first-step error of BAD_STEP goes through
    last = apply_filter(FilterConfig("process_oracle", aggregation="last"), TASK, [P],
                        [["32+54=76\n86-21=65\n#### 65"]])
    assert last == [[True]]


def test_orm_top_k_and_threshold():
    orm = FixedORM([0.2, 0.9, 0.6])
    assert apply_filter(FilterConfig("orm", top_k=1), TASK, [P], TEXTS, orm) == [[False, True, False]]
    assert apply_filter(FilterConfig("orm", threshold=0.5), TASK, [P], TEXTS, orm) == [[False, True, True]]


def test_filters_name_the_verifier_they_need():
    assert FilterConfig("orm").learned_verifier == "orm"
    assert FilterConfig("process").learned_verifier == "prm"
    assert FilterConfig("process_oracle").learned_verifier is None  # the exact step checker
    assert FilterConfig("calculator").learned_verifier is None
    assert FilterConfig("final_answer").learned_verifier is None
    with pytest.raises(ValueError, match="needs a learned prm"):
        apply_filter(FilterConfig("process"), TASK, [P], TEXTS)


@pytest.mark.parametrize("kind", ["orm", "prm"])
def test_learned_reward_models_fit_crafted_labels(tiny_lm_dir, kind, tmp_path):
    rm = LearnedRM.from_lm_dir(tiny_lm_dir, TASK, kind)
    probs, texts = [P] * 3, [GOOD, BAD_STEP, WRONG]
    losses = rm.fit(probs, texts, RMConfig(lr=1e-2, steps=40, batch_size=3))
    assert losses[-1] < losses[0]  # (the ORM has an irreducible loss on shared prefixes)
    if kind == "orm":
        s = rm.scores(probs, texts)
        assert s[0] > 0.5 and s[2] < s[0]  # GOOD and BAD_STEP are both "correct" to an ORM
    else:
        steps = rm.step_scores(probs, texts)
        assert len(steps[0]) == 3  # two computation lines and the "####" line
        assert min(steps[0]) > 0.5 and min(steps[1]) < 0.5
        kept = apply_filter(FilterConfig("process"), TASK, [P], [texts], rm)
        assert kept == [[True, False, False]]
    reloaded = LearnedRM.from_lm_dir(rm.save(tmp_path / kind), TASK, kind)
    flat = lambda xs: [x for row in xs for x in row]  # noqa: E731
    assert flat(reloaded.step_scores(probs, texts)) == pytest.approx(flat(rm.step_scores(probs, texts)), abs=1e-5)
