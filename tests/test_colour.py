"""Colour conversion and colour-mode normalisation against OpenCV on a real DAVIS frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vidcorr.models.colour import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColourNormalise,
    lab_to_rgb,
    lab_to_uvc_normalised,
    rgb_to_lab,
    rgb_to_lightness,
    uvc_normalised_to_lab,
)

# OpenCV's float conversion evaluates the sRGB gamma and the cube root with spline tables; the
# exact formula differs from it by at most ~0.2 in L and ~0.4 in a/b (on a 0..100 / ±127 scale).
LAB_ATOL = (0.3, 0.6, 0.6)
LAB_MEAN_ATOL = 0.15


@pytest.fixture(scope="module")
def frame_rgb8(davis2016_root) -> np.ndarray:
    bgr = cv2.imread(str(davis2016_root / "JPEGImages/480p/bmx-trees/00000.jpg"))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def _to_image(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].permute(1, 2, 0).numpy()


def test_rgb_to_lab_matches_opencv_float(frame_rgb8):
    rgb = frame_rgb8.astype(np.float32) / 255
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    diff = np.abs(_to_image(rgb_to_lab(_to_tensor(rgb))) - expected).reshape(-1, 3)
    assert (diff.max(0) <= LAB_ATOL).all(), diff.max(0)
    assert (diff.mean(0) <= LAB_MEAN_ATOL).all(), diff.mean(0)


def test_lab_to_rgb_matches_opencv_and_round_trips(frame_rgb8):
    rgb = frame_rgb8.astype(np.float32) / 255
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    ours = _to_image(lab_to_rgb(_to_tensor(lab)))
    assert np.abs(ours - cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)).max() < 1e-3
    round_trip = lab_to_rgb(rgb_to_lab(_to_tensor(rgb)))
    assert (round_trip - _to_tensor(rgb)).abs().max() < 1e-4


def test_uvc_normalised_lab_matches_opencv_8bit(frame_rgb8):
    # UVC: OpenCV 8-bit Lab, (x - 128) / 128. Our float version differs by 8-bit rounding and
    # OpenCV's fixed-point tables only (< 2.5 of 255 levels).
    lab8 = cv2.cvtColor(frame_rgb8, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab_n = lab_to_uvc_normalised(rgb_to_lab(_to_tensor(frame_rgb8.astype(np.float32) / 255)))
    assert np.abs(_to_image(lab_n) - (lab8 - 128) / 128).max() < 2.5 / 128
    assert lab_n.abs().max() <= 1.0
    lab = rgb_to_lab(torch.rand(2, 3, 5, 7))
    assert torch.allclose(uvc_normalised_to_lab(lab_to_uvc_normalised(lab)), lab, atol=1e-4)


def test_gray_l_mode_is_uvc_input(frame_rgb8):
    """UVC's matching input: L of 8-bit Lab, [-1, 1], replicated, (x+1)/2, ImageNet-normalised."""
    lab8 = cv2.cvtColor(frame_rgb8, cv2.COLOR_RGB2Lab).astype(np.float32)
    gray01 = ((lab8[..., :1] - 128) / 128 + 1) / 2
    expected = (np.repeat(gray01, 3, axis=2) - IMAGENET_MEAN) / IMAGENET_STD
    ours = _to_image(ColourNormalise("gray-l")(_to_tensor(frame_rgb8) / 255))
    assert np.abs(ours - expected).max() < 1.6 / 256 / min(IMAGENET_STD)


def test_lightness_alone_is_the_l_of_lab(frame_rgb8):
    # The gray-L encoders' input skips a* and b*; the shipped weights' results must not move. On a
    # 480p frame (whole SIMD vectors) it is bit for bit; elsewhere ATen's scalar pow for a tensor's
    # last few elements may differ from its vectorised one in the last bit.
    real = _to_tensor(frame_rgb8) / 255
    assert torch.equal(rgb_to_lightness(real), rgb_to_lab(real)[:, :1])
    odd_sized = torch.cat([torch.zeros(1, 3, 5, 7), torch.ones(1, 3, 5, 7), torch.rand(1, 3, 5, 7)])
    torch.testing.assert_close(rgb_to_lightness(odd_sized), rgb_to_lab(odd_sized)[:, :1], rtol=1e-6, atol=0)
    lab_n = lab_to_uvc_normalised(rgb_to_lab(real))[:, :1]
    expected = ((lab_n + 1) / 2).expand(-1, 3, -1, -1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(ColourNormalise("gray-l")(real), (expected - mean) / std)


def test_lab_mode_is_stt_input(frame_rgb8):
    rgb = frame_rgb8.astype(np.float32) / 255
    expected = (cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab) - (50, 0, 0)) / (50, 127, 127)
    ours = _to_image(ColourNormalise("lab")(_to_tensor(rgb)))
    assert np.abs(ours - expected).max() < 0.6 / 50


def test_rgb_mode_is_imagenet_normalisation():
    rgb = torch.rand(2, 3, 4, 6)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(ColourNormalise("rgb")(rgb), (rgb - mean) / std)


@pytest.mark.parametrize("mode", ["rgb", "gray-l", "lab"])
def test_normalise_gradients_finite_at_black_and_white(mode):
    rgb = torch.cat([torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.rand(1, 3, 4, 4)])
    rgb.requires_grad_(True)
    ColourNormalise(mode)(rgb).square().sum().backward()
    assert torch.isfinite(rgb.grad).all()


def test_lab_conversions_pass_gradcheck():
    rgb = (torch.rand(1, 3, 3, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    lab = rgb_to_lab(rgb.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lab_to_rgb, (lab,))


def test_colour_maths_stays_float32_under_autocast():
    rgb = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ColourNormalise("lab")(rgb)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ColourNormalise("lab")(rgb))


def test_normalise_is_not_in_state_dict_and_rejects_bad_input():
    assert ColourNormalise("lab").state_dict() == {}
    with pytest.raises(ValueError, match="colour mode"):
        ColourNormalise("hsv")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ColourNormalise("rgb")(torch.rand(3, 8, 8))
