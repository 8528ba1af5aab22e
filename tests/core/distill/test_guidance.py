import pytest
import torch

from core.distill.guidance import PTMGuidance, class_targets, ptm_loss
from core.distill.networks import NetConfig, seeded_network

LOSSES = ["ce", "kl", "js", "mse", "cosine"]


def _ptms(toy, n=3):
    return [seeded_network(NetConfig(arch="mlp", width=16, depth=1), toy.input_shape, toy.num_classes, s).eval()
            for s in range(n)]


@pytest.mark.parametrize("kind", LOSSES + ["cosine_features"])
def test_each_loss_is_finite_with_a_gradient_wrt_x_syn(toy, kind):
    loss, cosine_on = (kind, "logits") if kind != "cosine_features" else ("cosine", "features")
    guid = PTMGuidance(_ptms(toy), toy.x_train, toy.y_train, toy.num_classes, loss, "ensemble",
                       temperature=2.0, cosine_on=cosine_on)
    x_syn = torch.randn(8, *toy.input_shape, requires_grad=True)
    y_syn = torch.arange(8) % toy.num_classes
    value, forwards = guid(x_syn, y_syn, torch.Generator().manual_seed(0))
    assert torch.isfinite(value) and value.item() > 0 and forwards == 3
    value.backward()
    assert x_syn.grad is not None and x_syn.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["kl", "js", "mse", "cosine"])
def test_loss_is_minimal_zero_with_zero_gradient_at_its_target(toy, kind):
    ptm = _ptms(toy, 1)[0]
    T = 2.0
    t = class_targets(ptm, toy.x_train, toy.y_train, toy.num_classes, T)
    y = torch.arange(toy.num_classes)
    target = {"kl": T * t.probs[y].log(), "js": T * t.probs[y].log(), "mse": t.logits[y], "cosine": 3.0 * t.logits[y]}[kind]
    at = target.clone().requires_grad_(True)
    value = ptm_loss(kind, at, y, t, T)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-5)
    assert at.grad.abs().max().item() < 1e-4
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # any move away from the target costs
        moved = target + 0.3 * torch.randn(target.shape, generator=g)
        assert ptm_loss(kind, moved, y, t, T).item() > value.item() + 1e-4


def test_ce_decreases_towards_its_target_the_label():
    y = torch.tensor([0, 1, 2])
    onehot = torch.nn.functional.one_hot(y, 3).float()
    values = [ptm_loss("ce", s * onehot, y).item() for s in (0.0, 1.0, 5.0, 20.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 1e-6
    g = torch.Generator().manual_seed(0)
    assert all(ptm_loss("ce", 3 * torch.randn(3, 3, generator=g), y).item() > values[-1] for _ in range(5))


def test_class_targets_are_class_means(toy):
    ptm = _ptms(toy, 1)[0]
    t = class_targets(ptm, toy.x_train, toy.y_train, toy.num_classes, temperature=1.0, batch_size=7)
    with torch.no_grad():
        z = ptm(toy.x_train)
    for c in range(toy.num_classes):
        torch.testing.assert_close(t.logits[c], z[toy.y_train == c].mean(0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(t.probs[c], z[toy.y_train == c].softmax(1).mean(0), rtol=1e-5, atol=1e-5)
    assert torch.allclose(t.probs.sum(1), torch.ones(toy.num_classes))


@pytest.mark.parametrize("kind", LOSSES)
def test_ensemble_is_the_mean_of_single_losses(toy, kind):
    ptms = _ptms(toy, 3)
    x_syn = torch.randn(8, *toy.input_shape)
    y_syn = torch.arange(8) % toy.num_classes
    ens = PTMGuidance(ptms, toy.x_train, toy.y_train, toy.num_classes, kind, "ensemble")
    single = PTMGuidance(ptms, toy.x_train, toy.y_train, toy.num_classes, kind, "single")
    singles = [single.loss_of(i, x_syn, y_syn) for i in range(3)]
    value, forwards = ens(x_syn, y_syn, torch.Generator())
    torch.testing.assert_close(value, torch.stack(singles).mean())
    assert forwards == 3
    # single: one PTM drawn by the generator, one forward
    drawn, n = single(x_syn, y_syn, torch.Generator().manual_seed(1))
    assert n == 1 and any(torch.allclose(drawn, s) for s in singles)
    picks = {float(single(x_syn, y_syn, g)[0]) for g in [torch.Generator().manual_seed(s) for s in range(20)]}
    assert len(picks) == 3  # every PTM gets drawn


def test_missing_pool(toy):
    with pytest.raises(ValueError, match="needs a PTM pool"):
        PTMGuidance([], toy.x_train, toy.y_train, toy.num_classes, "ce")


def test_js_is_bounded_by_ln2_where_kl_is_not(toy):
    ptm = _ptms(toy, 1)[0]
    t = class_targets(ptm, toy.x_train, toy.y_train, toy.num_classes)
    y = torch.arange(toy.num_classes)
    wrong = -100.0 * t.probs[y]  # confidently away from every class's mean prediction
    assert ptm_loss("js", wrong, y, t).item() <= 0.6932
    assert ptm_loss("kl", wrong, y, t).item() > 1.0
