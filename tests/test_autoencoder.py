"""UVC Lab auto-encoder architecture (METHODS.md §1.7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidcorr.models import LabAutoencoder, lab_to_uvc_normalised, rgb_to_lab


@pytest.mark.parametrize("size,grid", [((32, 40), (4, 5)), ((36, 44), (5, 6))])
def test_shapes_and_range(size, grid):
    model = LabAutoencoder().eval()
    lab_n = lab_to_uvc_normalised(rgb_to_lab(torch.rand(2, 3, *size)))
    with torch.no_grad():
        feats = model.encode(lab_n)
        recon = model.decode(feats)
    assert feats.shape == (2, 256, *grid)  # ceil(H / 8): lines up with the matching ResNet
    assert recon.shape == (2, 3, 8 * grid[0], 8 * grid[1])
    assert recon.abs().max() <= 1.0 and torch.isfinite(recon).all()
    assert torch.equal(model(lab_n), recon)


def test_architecture_matches_uvc():
    model = LabAutoencoder()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.padding_mode == "reflect" for m in convs if m.kernel_size == (3, 3))
    widths = lambda part: [m.out_channels for m in part if isinstance(m, nn.Conv2d)]  # noqa: E731
    assert widths(model.encoder) == [3, 64, 64, 128, 128, 256, 256]
    assert widths(model.decoder) == [256, 128, 128, 64, 64, 3]
    assert isinstance(model.decoder[-1], nn.Tanh)
    # UVC ships encoder and decoder weights of ~2.5 MB (fp32) each.
    for part in (model.encoder, model.decoder):
        assert 2.4e6 < 4 * sum(p.numel() for p in part.parameters()) < 2.6e6


def test_every_parameter_gets_a_gradient():
    model = LabAutoencoder()
    lab_n = torch.rand(2, 3, 16, 16) * 2 - 1
    (model(lab_n) - lab_n).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
