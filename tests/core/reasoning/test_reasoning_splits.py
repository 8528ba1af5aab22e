"""Every task kind's splits are disjoint: the verifier's training problems (pretrain) share
no problem with the filtered (train), validation or test ones, by id and by content."""

import itertools
import json

import pytest

from core.reasoning.tasks import ArithConfig, ArithTask, GSM8KConfig, GSM8KTask


def _assert_disjoint(task, sizes: dict[str, int | None]) -> None:
    splits = {s: task.problems(s, n) for s, n in sizes.items()}
    for s, probs in splits.items():
        assert probs, f"split {s} is empty"
    for a, b in itertools.combinations(splits, 2):
        ids_a, ids_b = {p.id for p in splits[a]}, {p.id for p in splits[b]}
        q_a, q_b = {p.question for p in splits[a]}, {p.question for p in splits[b]}
        assert not ids_a & ids_b, f"{a} and {b} share problem ids"
        assert not q_a & q_b, f"{a} and {b} share questions"


def test_arith_splits_are_disjoint():
    _assert_disjoint(ArithTask(ArithConfig()), {"pretrain": 400, "train": 200, "val": 100, "test": 100})


def test_gsm8k_splits_are_disjoint(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    row = lambda i: {"question": f"Tom has {i} pens and buys 2. How many now?",  # noqa: E731
                     "answer": f"{i}+2 = <<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}"}
    train.write_text("".join(json.dumps(row(i)) + "\n" for i in range(40)))
    test.write_text("".join(json.dumps(row(i)) + "\n" for i in range(100, 110)))
    task = GSM8KTask(GSM8KConfig(train_path=str(train), test_path=str(test), val_size=8,
                                 pretrain_size=12))
    _assert_disjoint(task, {"pretrain": None, "train": None, "val": None, "test": None})
    assert [len(task.problems(s)) for s in ("train", "pretrain", "val")] == [20, 12, 8]


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "chain_sum"])
def test_reasoning_gym_splits_are_disjoint(dataset):
    from core.reasoning.tasks.gym import ReasoningGymTask

    _assert_disjoint(ReasoningGymTask(dataset, seed=0),
                     {"pretrain": 200, "train": 100, "val": 50, "test": 50})
