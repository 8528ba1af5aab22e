import torch

from core.distill.pictures import save_picture


def test_pictures_1d_and_2d(tmp_path):
    y = torch.arange(3).repeat_interleave(2)
    for name, x in (("curves.png", torch.randn(6, 1, 40)), ("grid.png", torch.randn(6, 3, 8, 8)),
                    ("grey.png", torch.randn(6, 1, 8, 8))):
        path = save_picture(x, y, tmp_path / name, title=name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
