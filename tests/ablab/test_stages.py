"""The stage cache: built once when several trials ask at the same time, keyed by content."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ablab.stages import StageCache, stage_key


def _build_slowly(counter: str):
    def build(folder: Path) -> None:
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # long enough that the other askers arrive while it builds
        (folder / "weights.txt").write_text("42")

    return build


def test_four_concurrent_ray_tasks_build_a_stage_once(ray_session, tmp_path):
    ray = ray_session
    counter = str(tmp_path / "builds.log")

    @ray.remote(num_cpus=0.5)
    def ask(root: str) -> str:
        folder = StageCache(root).get_or_build("pool", {"archs": ["mlp", "convnet"], "epochs": 2}, _build_slowly(counter))
        return (folder / "weights.txt").read_text() + "@" + str(folder)

    answers = ray.get([ask.remote(str(tmp_path / "stages")) for _ in range(4)])
    assert Path(counter).read_text().count("built") == 1
    assert len(set(answers)) == 1 and answers[0].startswith("42@")
    assert not list((tmp_path / "stages" / "pool").glob("*.building-*"))


def test_key_depends_on_config_and_inputs_only():
    a = stage_key("pool", {"epochs": 2, "archs": ["mlp"]})
    assert a == stage_key("pool", {"archs": ["mlp"], "epochs": 2})  # order does not matter
    assert a != stage_key("pool", {"archs": ["mlp"], "epochs": 3})
    assert a != stage_key("zoo", {"archs": ["mlp"], "epochs": 2})
    assert a != stage_key("pool", {"archs": ["mlp"], "epochs": 2}, inputs={"data": "/x/abc"})


def test_failed_build_leaves_nothing_and_is_retried(tmp_path):
    cache = StageCache(tmp_path)

    def broken(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cache.get_or_build("s", {"a": 1}, broken)
    assert not cache.exists("s", {"a": 1})
    assert list((tmp_path / "s").iterdir()) == [tmp_path / "s" / (stage_key("s", {"a": 1}) + ".lock")]
    folder = cache.get_or_build("s", {"a": 1}, lambda f: (f / "ok").write_text("1"))
    assert (folder / "ok").read_text() == "1" and (folder / "stage.json").exists()


def test_two_trials_build_two_stages_side_by_side(ray_session, tmp_path):
    """Both ask for [a, b]: the second finds a being built and builds b meanwhile, instead
    of waiting; each stage is built once and both trials get both."""
    ray = ray_session
    times = tmp_path / "times.log"

    def timed(name: str):
        def build(folder: Path) -> None:
            start = time.time()
            time.sleep(5.0)  # wide enough for the second task to start meanwhile on a busy machine
            with open(times, "a") as f:
                f.write(f"{name} {start} {time.time()}\n")
            (folder / "out.txt").write_text(name)
        return build

    @ray.remote(num_cpus=0.5)
    def ask(root: str) -> list[str]:
        from ablab.stages import StageRequest

        folders = StageCache(root).get_or_build_many(
            [StageRequest("a", {"x": 1}, timed("a")), StageRequest("b", {"x": 1}, timed("b"))])
        return [(f / "out.txt").read_text() for f in folders]

    assert ray.get([ask.remote(str(tmp_path / "stages")) for _ in range(2)]) == [["a", "b"]] * 2
    spans = {line.split()[0]: tuple(map(float, line.split()[1:])) for line in times.read_text().splitlines()}
    assert sorted(spans) == ["a", "b"] and len(times.read_text().splitlines()) == 2  # once each
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1 and b0 < a1, spans  # the two builds overlapped in time
