"""UVC's loss functions and the differentiable crop on hand-made cases with known answers."""

from __future__ import annotations

import pytest
import torch

from vidcorr.affinity import coordinate_grid, region_from_coordinates
from vidcorr.methods.crop import crop_boxes, region_box
from vidcorr.methods.uvc_losses import (
    coordinate_cycle,
    decode_transported,
    global_concentration,
    kept_after_truncation,
    local_concentration,
    to_unit,
    weighted_l1,
)

BIG = 1e4  # logits this far apart give an exactly one-hot float32 softmax


def _permutation_scores(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax (either axis) is the permutation matrix P: target j <- reference perm[j]."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    scores = torch.zeros(1, n, n)
    scores[0, perm, torch.arange(n)] = BIG
    return scores, perm


# --------------------------------------------------------------------------- colour


def test_weighted_l1_known_value():
    target = torch.zeros(2, 3, 4, 4)
    pred = target.clone()
    pred[0, 0], pred[0, 1], pred[0, 2] = 0.1, -0.2, 0.3
    loss = weighted_l1(pred, target, (1.0, 10.0, 10.0))
    torch.testing.assert_close(loss, torch.tensor([0.1 + 2.0 + 3.0, 0.0]))


def test_truncation_zeroes_samples_above_threshold():
    per_sample = torch.tensor([1.0, 3.0, 2.5, 2.6])
    torch.testing.assert_close(kept_after_truncation(per_sample, 2.5), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(kept_after_truncation(per_sample, None), torch.ones(4))


def test_orthogonal_affinity_reconstructs_both_ways():
    """A permutation is orthogonal: A moves frame 1 onto frame 2 and A^T moves it back exactly,
    so both the reconstruction and the "switch" (orthogonal) term vanish; a blurry affinity fails."""
    h = w = 4
    scores, perm = _permutation_scores(h * w)
    aff = scores.softmax(dim=1)
    frame1 = torch.randn(1, 3, h, w)
    frame2 = frame1.flatten(2)[:, :, perm].view(1, 3, h, w)
    identity = lambda x: x  # noqa: E731 - a decoder that returns its input
    pred2 = decode_transported(frame1, aff, (h, w), identity)
    pred1 = decode_transported(frame2, aff.transpose(1, 2), (h, w), identity)
    assert weighted_l1(pred2, frame2, (1, 10, 10)).item() == pytest.approx(0.0, abs=1e-6)
    assert weighted_l1(pred1, frame1, (1, 10, 10)).item() == pytest.approx(0.0, abs=1e-6)
    blurry = torch.full_like(aff, 1.0 / (h * w))
    pred1 = decode_transported(frame2, blurry.transpose(1, 2), (h, w), identity)
    assert weighted_l1(pred1, frame1, (1, 10, 10)).item() > 0.1


# --------------------------------------------------------------------------- coordinates


def test_coordinate_cycle_is_zero_for_identity_and_permutations():
    n = 16
    identity = torch.eye(n).unsqueeze(0) * BIG
    assert coordinate_cycle(identity, (4, 4), (4, 4)).item() == pytest.approx(0.0, abs=1e-6)
    perm_scores, _ = _permutation_scores(n, seed=3)
    assert coordinate_cycle(perm_scores, (4, 4), (4, 4)).item() == pytest.approx(0.0, abs=1e-6)
    assert coordinate_cycle(torch.randn(1, n, n), (4, 4), (4, 4)).item() > 0.05


def test_local_concentration_zero_when_every_window_moves_to_one_point():
    """All target pixels come from reference pixel i0 and all reference pixels go to target j0:
    every window's coordinates coincide, in both directions."""
    n, i0, j0 = 64, 9, 50
    scores = torch.zeros(2, n, n)
    scores[:, i0, :] += BIG
    scores[:, :, j0] += BIG
    loss = local_concentration(scores, (8, 8), (8, 8))
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-8, rtol=0)
    assert (local_concentration(torch.randn(2, n, n) * 3, (8, 8), (8, 8)) > 0).all()


def test_local_concentration_matches_window_variance_by_hand():
    """Identity affinity: the coordinates are the grid itself, so each direction costs the grid's
    own per-axis variance inside the (single, 4x4) window."""
    scores = torch.eye(16).unsqueeze(0) * BIG
    unit = to_unit(coordinate_grid(4, 4), (4, 4))  # (2, 16), one 4x4 window
    per_axis_var = unit.var(dim=1, unbiased=False).mean()
    want = 2 * per_axis_var  # forward + backward direction
    torch.testing.assert_close(local_concentration(scores, (4, 4), (4, 4), window=4)[0], want)


def _uniform_block(x0: int, y0: int, w: int, h: int) -> torch.Tensor:
    grid = coordinate_grid(h, w)
    return (grid + torch.tensor([[x0], [y0]], dtype=grid.dtype)).unsqueeze(0)  # (1, 2, h*w)


def test_global_concentration_zero_inside_the_eq6_bound_positive_outside():
    coords = _uniform_block(3, 5, 6, 4)
    centre, half = region_from_coordinates(coords)
    assert global_concentration(coords, centre, half).item() == 0.0
    far = torch.tensor([[[30.0], [5.0]]])
    with_outlier = torch.cat([coords, far], dim=2)
    centre, half = region_from_coordinates(with_outlier)
    loss = global_concentration(with_outlier, centre, half)
    n = with_outlier.shape[2]
    assert loss.item() >= ((far[0, :, 0] - centre[0]).norm() / n).item() - 1e-6


def test_global_concentration_gradients_are_finite_at_the_centre():
    coords = torch.zeros(1, 2, 5, requires_grad=True)  # every point exactly on the centre
    centre = coords.mean(dim=2)
    global_concentration(coords, centre, torch.ones(1, 2)).backward()
    assert torch.isfinite(coords.grad).all()


# --------------------------------------------------------------------------- crop and box


def test_crop_of_the_whole_map_returns_the_input():
    x = torch.randn(2, 5, 6, 7)
    box = torch.tensor([[0.0, 0.0, 7.0, 6.0]]).expand(2, 4)
    torch.testing.assert_close(crop_boxes(x, box, (6, 7)), x, atol=1e-5, rtol=1e-5)


def test_crop_of_an_integer_sub_box_equals_slicing():
    x = torch.randn(1, 3, 10, 12)
    box = torch.tensor([[2.0, 3.0, 7.0, 9.0]])  # x in [2, 7), y in [3, 9)
    torch.testing.assert_close(crop_boxes(x, box, (6, 5)), x[:, :, 3:9, 2:7], atol=1e-5, rtol=1e-5)


def test_feature_box_times_stride_crops_the_matching_image_region():
    """A box on the stride-8 feature map, scaled by 8, crops exactly the image pixels of its cells."""
    cells = torch.randn(1, 1, 4, 4)
    image = cells.repeat_interleave(8, 2).repeat_interleave(8, 3)
    box = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # cells x 1..2, y 2..3
    got = crop_boxes(image, box * 8, (16, 16))
    want = cells[:, :, 2:4, 1:3].repeat_interleave(8, 2).repeat_interleave(8, 3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_crop_is_differentiable_in_the_box():
    x = torch.randn(1, 2, 8, 8)
    box = torch.tensor([[1.3, 2.1, 5.7, 6.2]], requires_grad=True)
    crop_boxes(x, box, (4, 4)).square().sum().backward()
    assert box.grad is not None and box.grad.abs().sum() > 0


def test_mad_box_recovers_a_uniform_blob():
    """UVC Eq. 4-5: 2 x MAD of a uniform blob is its half extent, so the box is the blob exactly."""
    coords = _uniform_block(3, 5, 6, 4)  # cells x 3..8, y 5..8
    centre, half = region_from_coordinates(coords)
    box = region_box(centre, half, (20, 20))
    torch.testing.assert_close(box, torch.tensor([[3.0, 5.0, 9.0, 9.0]]))
    x = torch.randn(1, 2, 20, 20)
    torch.testing.assert_close(crop_boxes(x, box, (4, 6)), x[:, :, 5:9, 3:9], atol=1e-5, rtol=1e-5)


def test_region_box_is_clamped_to_the_map():
    centre = torch.tensor([[0.0, 9.0]])
    box = region_box(centre, torch.tensor([[3.0, 3.0]]), (10, 10))
    torch.testing.assert_close(box, torch.tensor([[0.0, 6.5, 3.5, 10.0]]))
