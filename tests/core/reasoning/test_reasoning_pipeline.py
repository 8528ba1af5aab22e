"""End to end at toy scale: a GSM8K-format file through sampling, filtering and SFT with a
tiny model that the test saves as a plain Hugging Face directory."""

from pathlib import Path

import pytest

from core.reasoning.evaluate import EvalConfig, evaluate
from core.reasoning.filters import FilterConfig, apply_filter
from core.reasoning.models import load_causal_lm, save_hf_dir
from core.reasoning.pipeline import (
    SampleSet, draw_samples, kept_examples, kept_metrics, paradigm_roles, sample_metrics,
)
from core.reasoning.sampling import Generator, HFBackend, SamplingConfig, samples_per_problem
from core.reasoning.sft import Example, SFTConfig, SFTRunner
from core.reasoning.tasks import GSM8KConfig, GSM8KTask

DATA = Path(__file__).parent / "data" / "gsm8k_tiny.jsonl"


def test_gsm8k_file_through_sampling_filtering_and_sft(tiny_lm_dir, tmp_path):
    # no verifier here: every problem but the validation ones is sampled
    task = GSM8KTask(GSM8KConfig(train_path=str(DATA), test_path=str(DATA), val_size=2, pretrain_size=0))
    train = task.problems("train")
    model, tok = load_causal_lm(tiny_lm_dir)
    cfg = SamplingConfig(n_problems=len(train), s_se=2, max_new_tokens=16)
    ss = draw_samples(HFBackend(model, tok), task, train, n=3, cfg=cfg)
    # a random model plus the gold solution of each problem, so the filters have work
    ss.groups = [g + [task_judged] for g, task_judged in
                 zip(ss.groups, [_judge_gold(task, p) for p in train])]
    ss.save(tmp_path / "samples")
    ss = SampleSet.load(tmp_path / "samples")
    assert [len(g) for g in ss.groups] == [4] * 4
    m = sample_metrics(ss, ks=(1, 4))
    assert m["data/coverage"] == m["data/coverage_at_4"] == 1.0 and m["data/samples"] == 16
    fa = apply_filter(FilterConfig("final_answer"), task, ss.problems, ss.texts())
    none = apply_filter(FilterConfig("none"), task, ss.problems, ss.texts())
    assert all(ks[-1] for ks in fa) and sum(map(sum, none)) == 16
    assert kept_metrics(ss, fa)["filter/kept"] >= 4
    # the kept set fine-tunes the student (the same plain HF directory) and it is evaluated
    student, tok = load_causal_lm(tiny_lm_dir)
    runner = SFTRunner(student, tok, task, kept_examples(task, ss, fa), task.problems("val"),
                       SFTConfig(max_steps=6, eval_every=3, batch_size=4, warmup_steps=2, max_new_tokens=8))
    hist = runner.run()
    assert [h["step"] for h in hist] == [3, 6] and hist[-1]["train/loss"] < hist[0]["train/loss"] + 1.0
    out = save_hf_dir(runner.best_model(), tok, tmp_path / "student")
    metrics = evaluate(HFBackend.from_dir(out, device="cpu"), task, task.problems("test"),
                       EvalConfig(ks=(1, 2), max_new_tokens=8))
    names = {"test/pass_at_1", "test/pass_at_1_sampled", "test/maj_at_1", "test/maj_at_2"}
    assert set(metrics) == names | {f"{k}:n" for k in names}
    assert all(metrics[f"{k}:n"] == len(task.problems("test")) for k in names)


def _judge_gold(task, p):
    from core.reasoning.metrics import judge

    return judge(task, p, [p.solution])[0]


def test_sft_resumes_exactly(tiny_lm_dir):
    task = GSM8KTask(GSM8KConfig(train_path=str(DATA), test_path=str(DATA), val_size=2))
    data = [Example(task.prompt(p), p.solution) for p in task.problems("train")]
    cfg = SFTConfig(max_steps=4, eval_every=2, batch_size=2, warmup_steps=1, max_new_tokens=4)

    def runner():
        m, tok = load_causal_lm(tiny_lm_dir)
        return SFTRunner(m, tok, task, data, task.problems("val"), cfg)

    full = runner().run()
    a = runner()
    it = a.train()
    next(it)
    state = a.state_dict()
    b = runner()
    b.load_state_dict(state)
    rest = list(b.train())
    assert [h["step"] for h in rest] == [4]
    assert rest[-1]["train/loss"] == pytest.approx(full[-1]["train/loss"], rel=1e-4)


def test_paradigms_and_budgets():
    assert paradigm_roles("weak_to_strong") == ("wc", "se")
    assert paradigm_roles("weak_to_strong_removed") == ("se", "se")
    assert paradigm_roles("knowledge_distillation") == ("se", "wc")
    cfg = SamplingConfig(s_se=2)
    assert samples_per_problem(cfg, "wc", p_wc=100, p_se=350) == 7
    assert samples_per_problem(cfg, "se", p_wc=100, p_se=350) == 2


def test_budgets_by_price_when_both_roles_have_one():
    # the paper's Gemini Flash vs Pro: WC's output tokens cost a quarter of SE's here
    cfg = SamplingConfig(s_se=3, wc=Generator(price_per_token=0.15), se=Generator(price_per_token=0.6))
    assert samples_per_problem(cfg, "wc", p_wc=100, p_se=350) == 12  # prices, not parameters
    assert samples_per_problem(cfg, "se", p_wc=100, p_se=350) == 3
    with pytest.raises(ValueError, match="both wc and se"):
        SamplingConfig(wc=Generator(price_per_token=0.15))
    with pytest.raises(ValueError, match="base_url"):
        SamplingConfig(backend="openai", wc=Generator(base_url="http://a/v1"))


def test_backends_give_each_role_its_endpoint_and_build_each_once(tmp_path, monkeypatch):
    from core.reasoning.pipeline import Backends

    monkeypatch.setenv("MY_KEY", "sk-not-a-real-key")
    cfg = SamplingConfig(backend="openai", base_url="http://127.0.0.1:1/v1", api_key_env="MY_KEY",
                         se=Generator(model="gemini-pro", base_url="http://127.0.0.1:2/v1"))
    with Backends(cfg) as backends:
        wc = backends.get("wc", tmp_path / "wc")
        se = backends.get("se", tmp_path / "se")
        assert (wc.base_url, wc.model) == ("http://127.0.0.1:1/v1", str(tmp_path / "wc"))
        assert (se.base_url, se.model) == ("http://127.0.0.1:2/v1", "gemini-pro")
        assert backends.get("wc", tmp_path / "wc") is wc  # reused, not rebuilt
