import pytest
import torch

from core.distill.augment import DiffAugment


@pytest.mark.parametrize("shape, ops", [((1, 24), ["color", "crop", "cutout", "scale"]),
                                        ((3, 8, 8), ["color", "crop", "cutout", "flip", "scale", "rotate"])])
def test_every_op_keeps_shape_and_is_differentiable(shape, ops):
    g = torch.Generator().manual_seed(0)
    for op in ops:
        aug = DiffAugment(len(shape) - 1, op)
        x = torch.randn(5, *shape, requires_grad=True)
        out = aug(x, g)
        assert out.shape == x.shape and torch.isfinite(out).all()
        out.square().sum().backward()
        assert x.grad.abs().sum() > 0, op


def test_siamese_groups_share_parameters():
    aug = DiffAugment(1, "crop")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 1, 24).repeat(4, 1, 1)
    groups = torch.tensor([0, 1, 0, 1])
    out = aug.apply(x, aug.sample(2, g), groups)
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[3])


def test_identity_parameters_leave_signals_alone():
    x = torch.randn(2, 1, 16)
    aug = DiffAugment(1, "scale")
    torch.testing.assert_close(aug.apply(x, {"op": "scale", "scale": torch.ones(2, 1)}), x)


def test_unknown_or_2d_only_ops_are_rejected():
    with pytest.raises(ValueError, match="unknown ops"):
        DiffAugment(1, "crop_rotate")
    with pytest.raises(ValueError, match="unknown ops"):
        DiffAugment(2, "crop_blur")
