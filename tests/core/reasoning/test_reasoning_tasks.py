"""The procedural task's gold solutions, step checker and answer extraction; GSM8K files."""

from pathlib import Path

import pytest

from core.reasoning.tasks import (
    ArithConfig, ArithTask, GSM8KConfig, GSM8KTask, answers_match, extract_final_answer,
)

DATA = Path(__file__).parent / "data"


def test_gold_solutions_are_process_correct():
    for fmt in ("plain", "reversed"):
        task = ArithTask(ArithConfig(steps=3, digits=2, ops="+-*", number_format=fmt))
        for p in task.problems("test", 50):
            assert task.is_correct(p, p.solution)
            assert task.step_labels(p, p.solution) == [True] * 3
            assert task.process_correct(p, p.solution)


def test_reversed_numbers_and_crafted_solutions():
    task = ArithTask(ArithConfig(steps=2, number_format="reversed", template="symbolic"))
    p = task.make_problem(23, [("+", 45), ("-", 12)], "x")  # 23+45=68, 68-12=56
    assert p.question == "32+54-21=?"
    assert p.solution == "32+54=86\n86-21=65\n#### 65"
    assert p.answer == "56"
    # right answer, wrong first step (errors cancel): a false positive
    fp = "32+54=76\n76-21=65\n#### 65"
    assert task.is_correct(p, fp) and task.step_labels(p, fp) == [False, False]
    # right arithmetic on the wrong operand, right answer line: wrong step
    assert task.step_labels(p, "32+54=86\n86-22=64\n#### 65") == [True, False]
    # a missing step counts as a wrong step; garbage lines are wrong steps
    assert task.step_labels(p, "#### 65") == [False, False]
    assert task.step_labels(p, "32+54=86\nhello\n#### 65") == [True, False]
    assert not task.is_correct(p, "32+54=86\n86-21=65\n#### 56")
    assert not task.is_correct(p, "no answer")


def test_splits_are_disjoint_and_deterministic():
    task = ArithTask(ArithConfig(digits=1, steps=2))  # a small space: collisions are likely
    key = lambda p: (p.question, p.answer)  # noqa: E731
    train, val, test = (set(map(key, task.problems(s, 20))) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert task.problems("test", 5) == task.problems("test", 5)
    with pytest.raises(ValueError, match="allowed"):
        task.problems("dev", 1)


def test_extract_and_compare_final_answers():
    assert extract_final_answer("a\n#### 1,200.") == "1200"
    assert extract_final_answer("so $42 in total") == "42"
    assert extract_final_answer("no digits") is None
    assert answers_match("2000", "2000.0") and answers_match("72", "72")
    assert not answers_match("71", "72") and not answers_match(None, "1")


def test_gsm8k_loader_and_checks():
    task = GSM8KTask(GSM8KConfig(train_path=str(DATA / "gsm8k_tiny.jsonl"),
                                 test_path=str(DATA / "gsm8k_tiny.jsonl"), val_size=2))
    train, val, test = task.problems("train"), task.problems("val"), task.problems("test")
    pretrain = task.problems("pretrain")
    assert (len(train), len(pretrain), len(val), len(test)) == (2, 2, 2, 6)
    p = test[0]
    assert p.answer == "72" and "<<" not in p.solution
    assert task.is_correct(p, p.solution) and task.is_correct(p, "It is 72.")
    assert not task.is_correct(p, "#### 73")
    assert test[3].answer == "2000" and task.is_correct(test[3], "#### 2,000")
    # annotations dropped: nothing for the calculator to check
    assert task.step_labels(p, p.solution) == [True, True] and not task.step_labels_exact
    kept = GSM8KTask(GSM8KConfig(train_path=str(DATA / "gsm8k_tiny.jsonl"),
                                 test_path=str(DATA / "gsm8k_tiny.jsonl"), keep_calculator=True))
    p = kept.problems("test")[0]
    assert "<<48/2=24>>" in p.solution and kept.step_labels(p, p.solution) == [True, True]
    assert kept.step_labels(p, p.solution.replace("<<48+24=72>>", "<<48+24=74>>")) == [True, False]


def test_gsm8k_bad_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        GSM8KTask.load_jsonl(bad)
    with pytest.raises(FileNotFoundError):
        GSM8KTask.load_jsonl(tmp_path / "missing.jsonl")


def test_too_small_a_problem_space_is_an_error():
    with pytest.raises(ValueError, match="too few distinct"):
        ArithTask(ArithConfig(digits=1, steps=1)).problems("test", 100)


def test_reasoning_gym_by_name_uses_its_scorer():
    pytest.importorskip("reasoning_gym")
    from core.reasoning.tasks.gym import ReasoningGymTask

    task = ReasoningGymTask("basic_arithmetic", seed=1)
    probs = task.problems("test", 3)
    assert len(probs) == 3 and probs != task.problems("train", 3)
    for p in probs:
        assert task.is_correct(p, f"work\n#### {p.answer}")
        assert not task.is_correct(p, "#### 123456789.5")


def test_math_verify_compares_non_numeric_answers():
    pytest.importorskip("math_verify")
    assert answers_match("\\frac{1}{2}", "0.5") and answers_match("1/2", "0.5")
    assert not answers_match("\\frac{1}{3}", "0.5")


def test_reasoning_gym_scores_problems_made_by_another_instance():
    """Samples drawn by one trial are judged by another (the stage cache): its task
    instance rebuilds the dataset entry from the problem id and uses the same scorer."""
    from core.reasoning.tasks.gym import ReasoningGymTask

    made = ReasoningGymTask("basic_arithmetic", seed=3).problems("train", 5)
    fresh = ReasoningGymTask("basic_arithmetic", seed=3)
    for p in made:
        assert fresh.is_correct(p, f"work\n#### {p.answer}")
        assert not fresh.is_correct(p, "work\n#### 0.5")
    assert fresh._entry(made[4])["question"] == made[4].question
