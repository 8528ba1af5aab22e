import json

import pytest
import torch

from core.distill.ptm import PTMPoolConfig, build_pool, load_pool
from core.errors import ConfigError


def test_build_and_load_pool(toy, tmp_path):
    # one epoch on the toy data is not meant to be good: min_acc 0 accepts any PTM
    cfg = PTMPoolConfig(architectures=("mlp", "lenet"), inits=2, epochs=(1, 3), min_acc=0.0, device="cpu")
    assert cfg.size == 8
    records = build_pool(cfg, toy, tmp_path / "a")
    assert len(records) == 8
    ptms = load_pool(tmp_path / "a")
    assert [p.name for p in ptms] == [r["name"] for r in records]
    assert {(p.arch, p.init, p.epoch) for p in ptms} == {
        (a, i, e) for a in ("mlp", "lenet") for i in (0, 1) for e in (1, 3)
    }
    for p in ptms:
        assert 0.0 <= p.test_acc <= 1.0
        assert not p.net.training and not any(q.requires_grad for q in p.net.parameters())
    # the recorded accuracy is the loaded model's accuracy
    p = ptms[-1]
    with torch.no_grad():
        acc = (p.net(toy.x_test).argmax(1) == toy.y_test).float().mean().item()
    assert acc == pytest.approx(p.test_acc, abs=1e-6)
    # checkpoints differ across epochs and inits
    first = dict(ptms[0].net.named_parameters())
    assert any(not torch.equal(first[k], v) for k, v in ptms[1].net.named_parameters())
    meta = json.loads((tmp_path / "a" / "pool.json").read_text())
    assert meta["num_classes"] == toy.num_classes and meta["test_n"] == len(toy.y_test)


def test_pool_is_a_pure_function_of_config_and_data(toy, tmp_path):
    cfg = PTMPoolConfig(architectures=("mlp",), inits=1, epochs=(2,), min_acc=0.0, device="cpu")
    build_pool(cfg, toy, tmp_path / "a")
    build_pool(cfg, toy, tmp_path / "b")
    a, b = load_pool(tmp_path / "a")[0], load_pool(tmp_path / "b")[0]
    for (k, va), (_, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert torch.equal(va, vb), k


def test_min_acc_fails_a_pool_of_untrained_ptms(toy, tmp_path):
    # a learning rate too small to move the networks: the PTMs stay at chance (1/4)
    untrained = PTMPoolConfig(architectures=("mlp",), inits=2, epochs=(1,), lr=1e-9, device="cpu")
    with pytest.raises(ConfigError, match=r"ptm.min_acc: 2 of 2 PTMs are below 0.500 test accuracy") as err:
        build_pool(untrained, toy, tmp_path / "untrained")
    assert err.value.key == "ptm.min_acc"
    assert not (tmp_path / "untrained" / "pool.json").exists()
    # the same pool trained: every PTM clears twice chance on this learnable toy problem
    trained = PTMPoolConfig(architectures=("mlp",), inits=2, epochs=(20,), lr=0.05, batch_size=16, device="cpu")
    assert min(r["test_acc"] for r in build_pool(trained, toy, tmp_path / "trained")) >= 0.5


def test_pool_config_errors(tmp_path):
    with pytest.raises(ValueError, match="PTMPoolConfig.min_acc"):
        PTMPoolConfig(min_acc=1.5)
    with pytest.raises(ValueError, match="pool.json not found"):
        load_pool(tmp_path)
