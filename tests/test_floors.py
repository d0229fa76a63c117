"""Untrained floors: deterministic, FrameEncoder-compatible, output stride 8 on a real 480p frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidcorr.models import FrameEncoder, build_encoder, lab_pixels, random_resnet18, rgb_to_lab


@pytest.fixture(scope="module")
def frame(davis2016_root) -> torch.Tensor:
    """A real DAVIS 480p frame, (1, 3, 480, 854) in [0, 1]."""
    image = np.asarray(Image.open(davis2016_root / "JPEGImages/480p/blackswan/00000.jpg").convert("RGB"))
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("name,channels", [("lab-pixels", 3), ("random-resnet18", 256)])
def test_floor_is_a_stride_8_frame_encoder_on_480p(frame, name, channels):
    encoder = build_encoder(name)
    assert isinstance(encoder, FrameEncoder) and not encoder.training
    assert (encoder.stride, encoder.out_channels) == (8, channels)
    with torch.no_grad():
        feats = encoder(frame)
    assert frame.shape[2:] == (480, 854)
    assert feats.shape == (1, channels, 60, 107)
    assert torch.isfinite(feats).all()


def test_lab_pixels_are_normalised_cell_means(frame):
    with torch.no_grad():
        feats = lab_pixels()(frame)
    lab = rgb_to_lab(frame)[0]
    scale = torch.tensor([50.0, 127.0, 127.0])
    shift = torch.tensor([1.0, 0.0, 0.0])
    first = lab[:, :8, :8].mean(dim=(1, 2)) / scale - shift
    last = lab[:, -8:, 848:].mean(dim=(1, 2)) / scale - shift  # 854 = 106*8 + 6: a 6-pixel cell
    assert torch.allclose(feats[0, :, 0, 0], first, atol=1e-5)
    assert torch.allclose(feats[0, :, -1, -1], last, atol=1e-5)
    assert feats.abs().max() <= 1.0 + 1e-5
    assert lab_pixels().state_dict() == {}


def test_random_resnet18_is_deterministic_whatever_the_global_rng(frame):
    torch.manual_seed(1)
    first = random_resnet18()
    torch.manual_seed(2)
    torch.rand(100)
    state = torch.get_rng_state()
    second = build_encoder("random-resnet18")
    assert torch.equal(torch.get_rng_state(), state)  # building leaves the global RNG alone
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    crop = frame[..., :96, :128]
    with torch.no_grad():
        assert torch.equal(first(crop), second(crop))
    other = random_resnet18(seed=1).state_dict()
    assert not torch.equal(other["backbone.conv1.weight"], a["backbone.conv1.weight"])


def test_random_resnet18_architecture():
    config = random_resnet18().config
    assert (config.arch, config.strides, config.out_layer, config.colour_mode) == (
        "resnet18", (1, 2, 1, 1), "layer3", "rgb")


def test_floors_take_no_overrides():
    with pytest.raises(ValueError, match="no overrides"):
        build_encoder("lab-pixels", out_layer="layer4")
