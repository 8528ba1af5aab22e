"""Metrics on small hand-computed cases."""

import math

import pytest

from core.reasoning.metrics import (
    Judged, coverage_at_k, diversity_at_k, false_positive_rate, filter_metrics, maj_at_k,
    majority_answer, normalise_reasoning, pass_at_1, pass_at_k, precision_recall,
)


def J(text, answer, correct, labels=None, pid="p"):
    return Judged(pid, text, answer, correct, None if labels is None else tuple(labels))


# problem a: samples 1 wrong, 2 correct (good steps), 3 correct same reasoning as 2 modulo
# case/whitespace, 4 correct with a wrong step (false positive)
A = [J("1+1=3\n#### 3", "3", False, [False]), J("1+1=2\n#### 2", "2", True, [True]),
     J("1+1=2 \n####   2", "2", True, [True]), J("1+1=5\n#### 2", "2", True, [False])]
# problem b: nothing correct
B = [J("x", None, False, [False]), J("2+2=5\n#### 5", "5", False, [False])]
GROUPS = [A, B]


def test_coverage_and_diversity():
    assert coverage_at_k(GROUPS, 1) == 0.0
    assert coverage_at_k(GROUPS, 2) == 0.5
    assert diversity_at_k(GROUPS, 1) == 0.0
    assert diversity_at_k(GROUPS, 3) == 0.5  # a: one unique correct solution; b: 0
    assert diversity_at_k(GROUPS, 4) == 1.0  # a: two unique ("1+1=2", "1+1=5"); b: 0
    # only "1+1=2" is valid: the false positive "1+1=5" counts in the raw diversity only
    assert diversity_at_k(GROUPS, 4, valid_only=True) == 0.5
    m = filter_metrics(GROUPS, [[True] * 4, [True] * 2])
    assert (m["filter/diversity"], m["filter/diversity_valid"]) == (1.0, 0.5)


def test_valid_diversity_without_step_labels_counts_final_answer_correct_solutions():
    unlabelled = [[J("a\n#### 2", "2", True), J("b\n#### 2", "2", True), J("c\n#### 3", "3", False)]]
    assert diversity_at_k(unlabelled, 3, valid_only=True) == diversity_at_k(unlabelled, 3) == 2.0
    assert normalise_reasoning("1+1=2 \n####   2") == normalise_reasoning("1+1=2\n#### 2")


def test_false_positive_rate_and_precision_recall():
    flat = A + B
    assert false_positive_rate(flat) == pytest.approx(1 / 3)  # 3 correct answers, 1 bad step
    assert math.isnan(false_positive_rate(B))
    kept = [False, True, False, True, False, False]  # keeps one positive, one false positive
    p, r = precision_recall(flat, kept)
    assert (p, r) == (0.5, 0.5)
    m = filter_metrics(GROUPS, [kept[:4], kept[4:]])
    assert m["filter/kept"] == 2 and m["filter/fpr"] == 0.5 and m["filter/coverage"] == 0.5


def test_precision_recall_and_fpr_are_nan_without_step_labels():
    unlabelled = [J("1+1=2\n#### 2", "2", True), J("1+1=3\n#### 3", "3", False)]
    m = filter_metrics([unlabelled], [[True, False]])
    assert math.isnan(m["filter/precision"]) and math.isnan(m["filter/recall"])
    assert math.isnan(m["filter/fpr"])
    assert m["filter/kept"] == 1.0


def test_pass_and_majority():
    assert pass_at_1(GROUPS) == pytest.approx((3 / 4 + 0) / 2)
    assert pass_at_k(4, 3, 1) == pytest.approx(0.75)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(2, 1, 2) == 1.0
    assert majority_answer(["3", "2", "3", "2"]) == "3"  # tie: first seen
    assert majority_answer([None, None]) is None
    golds = ["2", "4"]
    assert maj_at_k(GROUPS, golds, 1) == 0.0  # a votes "3"
    assert maj_at_k(GROUPS, golds, 4) == 0.5  # a: "2" x3 beats "3"
