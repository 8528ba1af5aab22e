"""GSM8K's calculator annotations as a step check and a filter, on GSM8K-format lines."""

import json
from fractions import Fraction

import pytest

from core.reasoning import calculator
from core.reasoning.filters import FilterConfig, apply_filter
from core.reasoning.metrics import filter_metrics, judge
from core.reasoning.tasks import GSM8KConfig, GSM8KTask

# GSM8K-format lines (question, answer with annotations, "#### N")
LINES = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
                 "many clips in May. How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
                 "babysitting. How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
               "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "Betty needs $100 for a wallet. She has half of it, her parents give her $15 and "
                 "her grandparents twice as much as her parents. How much more does she need?",
     "answer": "Betty has 100/2 = $<<100/2=50>>50.\nHer grandparents give 15*2 = $<<15*2=30>>30.\n"
               "She needs 100-50-30-15 = $<<100-50-30-15=5>>5 more.\n#### 5"},
]


def test_evaluator_is_exact_arithmetic_and_nothing_else():
    assert calculator.evaluate("(3+5)*2/4") == 4
    assert calculator.evaluate("0.1*3") == Fraction(3, 10)  # exact, not 0.30000000000000004
    assert calculator.evaluate("-2+$1,200") == 1198
    for bad in ["__import__('os')", "2**10", "abs(-1)", "x+1", "1/0", "", "1;2", "[1]"]:
        with pytest.raises(calculator.NotArithmetic):
            calculator.evaluate(bad)


def test_annotations_must_evaluate_to_their_value():
    assert calculator.annotation_ok("48/2=24") and calculator.annotation_ok("12/60=0.2")
    assert calculator.annotation_ok("10/3=3.33")  # rounded to the value's own decimals
    assert not calculator.annotation_ok("48/2=25") and not calculator.annotation_ok("10/3=3.34")
    assert not calculator.annotation_ok("48/2") and not calculator.annotation_ok("open(f)=1")
    assert calculator.line_ok("no arithmetic here")
    assert not calculator.line_ok("ok <<2+2=4>> then <<2*3=7>>")


def test_gold_gsm8k_solutions_pass_and_a_wrong_step_fails(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in LINES))
    task = GSM8KTask(GSM8KConfig(train_path=str(path), test_path=str(path), keep_calculator=True))
    problems = task.problems("test")
    for p in problems:
        assert all(task.step_labels(p, p.solution)) and task.is_correct(p, p.solution)
    gold = problems[2].solution
    # a wrong computation hidden behind the right final answer: a (proxy) false positive
    fp = gold.replace("<<15*2=30>>30", "<<15*2=35>>35")
    wrong = gold.replace("#### 5", "#### 6")
    texts = [[problems[0].solution], [problems[1].solution], [gold, fp, wrong]]
    assert task.step_labels(problems[2], fp) == [True, False, True]

    kept = apply_filter(FilterConfig("calculator"), task, problems, texts)
    assert kept == [[True], [True], [True, False, False]]
    final_answer = apply_filter(FilterConfig("final_answer"), task, problems, texts)
    assert final_answer == [[True], [True], [True, True, False]]
    groups = [judge(task, p, ts) for p, ts in zip(problems, texts)]
    assert filter_metrics(groups, final_answer)["filter/fpr"] == pytest.approx(1 / 4)
    assert filter_metrics(groups, kept)["filter/fpr"] == 0.0
