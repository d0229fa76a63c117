"""Golden values and naive references for the colour conversions, the input normalisations of each
colour mode, the encoder presets and CycleTime's tracking ops (METHODS.md §1.2, §2.2, §2.5, §3.2,
§4.3), written after a mutation audit of ``resnet.py``, ``colour.py``, ``encoder.py``, ``floors.py``
and ``cycletime_ops.py``: each test here fails on a plausible one-line change (a constant, a
threshold, a dropped layer) that the rest of the suite let through. Expected values come from the
standard sRGB -> CIE Lab formulas written out per pixel below, or from the published constants."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from vidcorr.methods.cycletime_ops import soft_inlier_score
from vidcorr.models import EncoderConfig, build_encoder, random_resnet18
from vidcorr.models.colour import ColourNormalise, lab_to_uvc_normalised, rgb_to_lab, rgb_to_lightness

# --------------------------------------------------------------------------- naive sRGB -> Lab

# IEC 61966-2-1 sRGB primaries (4 digits, as published) and the D65 white they sum to; the module
# uses OpenCV's 6-digit matrix, so saturated colours agree to ~0.05 only, greys exactly.
_SRGB_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
_D65 = (0.95047, 1.0, 1.08883)


def _naive_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of one sRGB colour in [0, 1], float64, branch by branch."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    xyz = [sum(m * c for m, c in zip(row, linear)) / w for row, w in zip(_SRGB_XYZ, _D65)]

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = (f(t) for t in xyz)
    lightness = 116 * fy - 16 if xyz[1] > 0.008856 else 903.3 * xyz[1]
    return lightness, 500 * (fx - fy), 200 * (fy - fz)


def _image(colours: list[tuple[float, float, float]]) -> torch.Tensor:
    """(1, 3, 1, K): one pixel per colour."""
    return torch.tensor(colours, dtype=torch.float32).T[None, :, None, :]


# Well-known Lab (D65) of the sRGB primaries and white, e.g. Bruce Lindbloom's calculator.
PUBLISHED_LAB = {
    (1.0, 0.0, 0.0): (53.24, 80.09, 67.20),
    (0.0, 1.0, 0.0): (87.73, -86.18, 83.18),
    (0.0, 0.0, 1.0): (32.30, 79.19, -107.86),
    (1.0, 1.0, 1.0): (100.0, 0.0, 0.0),
}


def test_lab_of_primaries_is_the_published_d65_value() -> None:
    """The D65 white point and the channel order: pure red, green and blue land on their
    textbook Lab values (a D50 white or BGR input moves them by several units)."""
    colours = list(PUBLISHED_LAB)
    lab = rgb_to_lab(_image(colours))[0, :, 0].T
    expected = torch.tensor([PUBLISHED_LAB[c] for c in colours])
    torch.testing.assert_close(lab, expected, atol=0.1, rtol=0)


# Dark colours put some of X/Y/Z on the linear branch of f (t <= 0.008856, 7.787 t + 16/116), the
# channel values on the linear part of the sRGB curve (c <= 0.04045, c / 12.92), or both; OpenCV's
# test frame holds too few such pixels for its tolerance to see a wrong constant there.
DARK_AND_MIXED = [(0.02, 0.02, 0.02), (0.04, 0.04, 0.04), (0.3, 0.0, 0.0), (0.0, 0.0, 0.3),
                  (0.03, 0.2, 0.01), (0.5, 0.45, 0.05), (0.1, 0.3, 0.6), (0.9, 0.8, 0.7)]


def test_lab_matches_the_formula_on_dark_and_mixed_branch_colours() -> None:
    lab = rgb_to_lab(_image(DARK_AND_MIXED))[0, :, 0].T
    expected = torch.tensor([_naive_lab(c) for c in DARK_AND_MIXED], dtype=torch.float32)
    torch.testing.assert_close(lab, expected, atol=0.06, rtol=0)


@pytest.mark.parametrize("grey", [0.005, 0.02, 0.04, 0.0405, 0.041, 0.2, 0.75])
def test_lightness_of_greys_is_exact(grey: float) -> None:
    """A grey has X/Xn = Y = Z/Zn = its linear value whatever the matrix, so L* is the gamma curve
    and the L* formula alone: exact to float rounding. 0.04 sits between 0.03928 (the old sRGB
    draft's threshold) and the standard 0.04045, where the two curves differ by ~1e-3 in L*."""
    expected = _naive_lab((grey, grey, grey))
    rgb = torch.full((1, 3, 1, 1), grey)
    lab = rgb_to_lab(rgb)[0, :, 0, 0]
    assert lab[0].item() == pytest.approx(expected[0], abs=2e-4)
    assert lab[1:].abs().max().item() < 2e-3
    assert rgb_to_lightness(rgb).item() == pytest.approx(expected[0], abs=2e-4)


# --------------------------------------------------------------------------- per-mode normalisation

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's, in RGB order


def test_rgb_mode_uses_imagenet_statistics_in_rgb_order() -> None:
    colour = (0.2, 0.5, 0.8)
    got = ColourNormalise("rgb")(_image([colour]))[0, :, 0, 0]
    expected = [(c - m) / s for c, m, s in zip(colour, *IMAGENET)]
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-6, rtol=0)


def test_uvc_lab_scaling_is_opencv_8bit_over_128() -> None:
    """UVC (§1.2): OpenCV 8-bit Lab is (L * 255/100, a + 128, b + 128), then (x - 128) / 128. So
    L = 100 -> 127/128 (not 1), L = 0 -> -1, and a, b are divided by 128 (not 127)."""
    lab = torch.tensor([[100.0, 0.0, 0.0], [0.0, 127.0, -128.0], [50.0, 64.0, -32.0]]).T[None, :, None, :]
    got = lab_to_uvc_normalised(lab)[0, :, 0].T
    expected = torch.tensor([[127 / 128, 0.0, 0.0], [-1.0, 127 / 128, -1.0], [(127.5 - 128) / 128, 0.5, -0.25]])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_gray_l_mode_of_white_and_black() -> None:
    """UVC's matching input of white: L 100 -> 127/128 -> (x + 1) / 2 = 255/256 in all three
    channels, each ImageNet-normalised with its own channel's statistics; black: L 0 -> 0."""
    got = ColourNormalise("gray-l")(_image([(1.0, 1.0, 1.0), (0.0, 0.0, 0.0)]))[0, :, 0].T
    expected = torch.tensor([[(v - m) / s for m, s in zip(*IMAGENET)] for v in (255 / 256, 0.0)])
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def test_lab_mode_is_stt_statistics_on_published_lab() -> None:
    """STT's student (§4.3): (L - 50) / 50, a / 127, b / 127."""
    colours = list(PUBLISHED_LAB)
    got = ColourNormalise("lab")(_image(colours))[0, :, 0].T
    expected = torch.tensor([[(l - 50) / 50, a / 127, b / 127] for l, a, b in (PUBLISHED_LAB[c] for c in colours)])
    torch.testing.assert_close(got, expected, atol=0.1 / 127, rtol=0)


# --------------------------------------------------------------------------- encoder presets


def _trunk_shapes(state: dict[str, torch.Tensor], last: str) -> dict[str, tuple[int, ...]]:
    kept = ("conv1.", "bn1.", *(f"layer{i}." for i in range(1, int(last[-1]) + 1)))
    return {k: tuple(v.shape) for k, v in state.items() if k.startswith(kept)}


def test_cycletime_preset_is_resnet50_res4_with_a_biasless_relu_head() -> None:
    """§2.2: ResNet-50 up to layer3 (res4, stride 1 -> OS 8, 1024 ch), then ``afterconv1`` 1x1
    1024 -> 512 without bias, then ReLU. Parameter shapes against torchvision's own resnet50."""
    encoder = build_encoder("cycletime").eval()
    reference = _trunk_shapes(torchvision.models.resnet50(weights=None).state_dict(), "layer3")
    assert _trunk_shapes(encoder.backbone.state_dict(), "layer3") == reference
    assert not hasattr(encoder.backbone, "layer4")
    head = {k: tuple(v.shape) for k, v in encoder.state_dict().items() if not k.startswith("backbone.")}
    assert list(head.values()) == [(512, 1024, 1, 1)]  # one weight, no bias
    assert any(isinstance(m, nn.ReLU) for m in encoder.head.modules())
    with torch.no_grad():
        feats = encoder(torch.rand(1, 3, 64, 48))
    assert feats.shape == (1, 512, 8, 6)
    assert feats.min() >= 0 and (feats == 0).any()  # after the ReLU


def test_uvc_preset_parameters_are_torchvision_resnet18_to_layer4() -> None:
    encoder = build_encoder("uvc")
    reference = _trunk_shapes(torchvision.models.resnet18(weights=None).state_dict(), "layer4")
    assert _trunk_shapes(encoder.backbone.state_dict(), "layer4") == reference


def test_crw_preset_builds_reflect_padding_into_every_padded_conv() -> None:
    """§3.2: the scratch model's convs pad by reflection; the config must reach the built convs."""
    for encoder in (build_encoder("crw"), build_encoder({"padding_mode": "reflect", "out_layer": "layer4"})):
        padded = [m for m in encoder.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
        assert len(padded) >= 13 and all(m.padding_mode == "reflect" for m in padded)
    assert all(m.padding_mode == "zeros" for m in build_encoder("resnet18").modules() if isinstance(m, nn.Conv2d))


# --------------------------------------------------------------------------- CycleTime's ops


def test_soft_inlier_score_of_a_one_cell_shift_by_hand() -> None:
    """3 x 3 patch cells on 3 x 3 frame cells, unit coordinates with corners aligned (one cell =
    1.0). theta's translation is scaled by 227/210 (§2.4), so tx = 210/227 shifts by one cell: patch
    cell (y, x) lands on frame cell (y, x + 1) for x < 2, and the last column falls off the frame
    (zero padding, no weight). Score = sum of the affinities at the landing cells / (in-frame
    weight 6 + the official 1e-5 on each of the mask's 9 * 9 entries)."""
    g = torch.Generator().manual_seed(0)
    affinity = torch.rand(1, 9, 3, 3, generator=g, dtype=torch.float64).softmax(dim=1)
    theta = torch.tensor([[[1.0, 0.0, 210 / 227], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    landed = sum(affinity[0, y * 3 + x + 1, y, x].item() for y in range(3) for x in range(2))
    expected = landed / (6 + 1e-5 * 81)
    assert soft_inlier_score(affinity, theta, (3, 3)).item() == pytest.approx(expected, rel=1e-9)
    # the same shift downwards: rows instead of columns (frame cells are row-major, y * W + x)
    theta_down = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 210 / 227]]], dtype=torch.float64)
    landed = sum(affinity[0, (y + 1) * 3 + x, y, x].item() for y in range(2) for x in range(3))
    assert soft_inlier_score(affinity, theta_down, (3, 3)).item() == pytest.approx(landed / (6 + 1e-5 * 81), rel=1e-9)


def test_soft_inlier_score_rejects_a_frame_size_that_is_not_the_affinity_s() -> None:
    with pytest.raises(ValueError, match="frame cells"):
        soft_inlier_score(torch.rand(1, 12, 2, 2), torch.eye(2, 3)[None], (3, 3))


# preset -> (block, layer1..4 strides, stem max-pool, padding, last stage, colour mode, head) per
# METHODS.md §1.2 (UVC), §3.2 (CRW), §4.6 (STT d8), §2.2 (CycleTime); plain backbones as CRW's.
PRESET_TABLE = {
    "uvc": ("BasicBlock", (1, 2, 1, 1), True, "zeros", "layer4", "gray-l", None),
    "crw": ("BasicBlock", (1, 2, 1, 1), True, "reflect", "layer3", "rgb", None),
    "stt": ("BasicBlock", (1, 2, 2, 1), False, "zeros", "layer3", "lab", None),
    "stt-r50": ("Bottleneck", (1, 2, 2, 1), False, "zeros", "layer3", "lab", None),
    "cycletime": ("Bottleneck", (1, 2, 1, 1), True, "zeros", "layer3", "rgb", 512),
    "resnet18": ("BasicBlock", (1, 2, 1, 1), True, "zeros", "layer3", "rgb", None),
    "resnet50": ("Bottleneck", (1, 2, 1, 1), True, "zeros", "layer3", "rgb", None),
}


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_built_preset_has_the_methods_architecture(name: str) -> None:
    """Read off the built modules, not the config: the block type, each stage's conv stride
    (where torchvision strides: BasicBlock conv1, Bottleneck conv2), the stem pool, the padding,
    the last stage and the head. Several of these give the same OS 8, so shapes alone miss them."""
    block, strides, maxpool, padding, last, colour, head = PRESET_TABLE[name]
    encoder = build_encoder(name)
    backbone = encoder.backbone
    built = [getattr(backbone, f"layer{i}") for i in range(1, int(last[-1]) + 1)]
    assert not hasattr(backbone, f"layer{int(last[-1]) + 1}")
    assert {type(b).__name__ for stage in built for b in stage} == {block}
    got = [(stage[0].conv2 if block == "Bottleneck" else stage[0].conv1).stride[0] for stage in built]
    assert got == list(strides[: len(built)])
    assert isinstance(backbone.maxpool, nn.MaxPool2d) == maxpool
    assert backbone.conv1.padding_mode == padding and backbone.layer1[0].conv1.padding_mode == padding
    assert (encoder.colour_mode, encoder.colour.mode, encoder.stride) == (colour, colour, 8)
    assert isinstance(encoder.head, nn.Identity) == (head is None)


@pytest.mark.parametrize(("config", "stride"), [
    ({"strides": (1, 2, 2, 2), "out_layer": "layer4"}, 32),
    ({"strides": (1, 2, 2, 1), "maxpool": False, "out_layer": "layer2"}, 4),
    ({"strides": (2, 2, 1, 1), "out_layer": "layer3"}, 16),
])
def test_encoder_stride_is_the_backbones_for_any_config(config: dict, stride: int) -> None:
    """The shipped presets are all OS 8, but a config of one's own is not: the stride propagation
    sizes its labels by must be the backbone's, 4 (stem conv 2 x max-pool 2) x the stage strides."""
    encoder = build_encoder(config).eval()
    assert encoder.stride == stride
    with torch.no_grad():
        assert encoder(torch.rand(1, 3, 64, 96)).shape[2:] == (64 // stride, 96 // stride)


def test_random_resnet18_floor_is_the_plain_resnet18_preset() -> None:
    """The floor is "architecture without training": the plain RGB ResNet-18 at OS 8 (zero
    padding, stem max-pool, no head), not CRW's reflect-padded variant."""
    floor = random_resnet18()
    assert floor.config == EncoderConfig(out_layer="layer3")
    assert all(m.padding_mode == "zeros" for m in floor.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(floor.backbone.maxpool, nn.MaxPool2d) and isinstance(floor.head, nn.Identity)
