"""UVC-track's boxes against the official code: Gaussian mean shift, seg2bbox, mask boxes, the coordinate grid."""

# The ``_official_*`` helpers are direct ports of ``test_with_track.py`` / ``libs/track_utils.py``
# (Liusifei/UVC), loops and all, written from the official code to check vidcorr against.

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from uvc_track_helpers import PRESET, CellEncoder, _object_video

from vidcorr.labels import one_hot_labels
from vidcorr.presets import SizePolicy
from vidcorr.track_boxes import (
    fit_box,
    mask_bounding_box,
    mean_shift_centre,
    predicted_mask_box,
    scale_box,
    smoothed_box,
)
from vidcorr.track_uvc import TrackOptions, UVCTracker


def _official_mean_shift(coords, bandwidth):
    """``mean_shift_center(coords, bandwidth)``: coords (n, 2) (x, y) -> (2,)."""
    avg_center = coords.mean(axis=0)
    minimum, prev_center = 100000, None
    for coord_i in coords:
        dis = np.linalg.norm(coord_i - avg_center)
        if dis < minimum:
            minimum, prev_center = dis, coord_i.copy()
    while True:
        numerator, denominator = 0, 0
        for neighbor in coords:
            distance = np.sqrt(np.sum((neighbor - prev_center) ** 2))
            if distance <= bandwidth:
                weight = (1 / (4 * np.sqrt(2 * np.pi))) * np.exp(-0.5 * (distance / 4) ** 2)  # sigma 4
                numerator = numerator + weight * neighbor
                denominator += weight
        new_center = numerator / denominator
        if np.sum(new_center - prev_center) < 0.1:
            return new_center
        prev_center = new_center


def _official_box(left, right, top, bottom, margin, h, w):
    """``BBox(left, right, top, bottom, margin, h, w)`` -> (x1, y1, x2, y2)."""
    if margin > 0:
        margin_w, margin_h = (right - left) * margin / 2, (bottom - top) * margin / 2
        left, right, top, bottom = left - margin_w, right + margin_w, top - margin_h, bottom + margin_h
    return (max(math.floor(left), 0), max(math.floor(top), 0), min(math.ceil(right), w), min(math.ceil(bottom), h))


def _official_coords2bbox_scale(coords, h, w, margin, bandwidth):
    """``coords2bbox_scale``: coords (n, 2) (x, y) -> (x1, y1, x2, y2)."""
    center = _official_mean_shift(coords, bandwidth)
    dis_x, dis_y = np.abs(coords - center).mean(axis=0)
    return _official_box(max(center[0] - 2 * dis_x, 0), min(center[0] + 2 * dis_x, w),
                         max(center[1] - 2 * dis_y, 0), min(center[1] + 2 * dis_y, h), margin, h, w)


def _official_adjust(now, pre, a, h, w):
    """``adjust_bbox`` for one box, (x1, y1, x2, y2)."""
    cy, cx = (now[1] + now[3]) / 2.0, (now[0] + now[2]) / 2.0
    height = a * (now[3] - now[1]) + (1 - a) * (pre[3] - pre[1])
    width = a * (now[2] - now[0]) + (1 - a) * (pre[2] - pre[0])
    return (max(0, math.floor(cx - width / 2.0)), max(0, math.floor(cy - height / 2.0)),
            min(w, math.ceil(cx + width / 2.0)), min(h, math.ceil(cy + height / 2.0)))


@pytest.mark.parametrize("seed", range(4))
def test_mean_shift_is_the_official_gaussian_one(seed):
    """A cluster, a second cluster within the bandwidth and strays: vidcorr's mean shift lands where
    the official loop does (Gaussian weights of sigma 4 inside the bandwidth, signed stop)."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(10, 1.5, (30, 2)), rng.normal(13, 1.0, (12, 2)),
                             rng.uniform(0, 40, (8, 2))])
    for bandwidth in (5.0, 20.0):
        got = mean_shift_centre(torch.from_numpy(points.T.copy()), bandwidth, sigma=4.0)
        np.testing.assert_allclose(got.numpy(), _official_mean_shift(points, bandwidth), atol=1e-9)


def test_mean_shift_stops_at_the_first_step_up_or_left():
    """The official stop sums the step with its sign: a first step up-left ends the search there,
    one cell from the start, although the points' mode is further up-left."""
    points = torch.tensor([[5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 9.0], [5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 9.0]])
    got = mean_shift_centre(points, bandwidth=5.0, sigma=4.0)
    want = _official_mean_shift(points.T.double().numpy(), 5.0)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    assert 3.0 < got[0] < 4.0  # one step from the start (4, 4), not at the mode (2, 2)


def test_mean_shift_counts_a_point_exactly_at_the_bandwidth():
    """The official window is ``distance <= bandwidth``: three points at (0, 0) and one at (5, 0),
    bandwidth 5, sigma 4. From (0, 0) the far point counts with weight exp(-0.5 (5/4)^2) = 0.458:
    x 5 x 0.458 / 3.458 = 0.662, then 0.790 (step 0.128), then 0.817 (step 0.027 < 0.1: stop). Left
    out of the first window it would stop at once, at (0, 0)."""
    points = torch.tensor([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    got = mean_shift_centre(points, bandwidth=5.0, sigma=4.0)
    np.testing.assert_allclose(got.numpy(), _official_mean_shift(points.T.double().numpy(), 5.0), atol=1e-12)
    assert got.tolist() == pytest.approx([0.817, 0.0], abs=1e-3)


def test_fit_box_is_the_official_coords2bbox_scale():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal((12, 7), (3, 2), (60, 2)), rng.uniform(0, 30, (10, 2))])
    for margin, bandwidth, hw in ((1.0, 5.0, (20, 30)), (0.6, 20.0, (20, 30)), (0.6, 5.0, (9, 14))):
        got = fit_box(torch.from_numpy(points.T.copy()), bandwidth, 4.0, margin, hw)
        assert got == _official_coords2bbox_scale(points, *hw, margin, bandwidth), (margin, bandwidth, hw)


def test_box_arithmetic_is_the_officials():
    """``seg2bbox`` spans first to last pixel (not one past), ``upscale`` floors every edge,
    ``adjust_bbox`` keeps the centre and blends the size."""
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[8:16, 16:32] = True
    assert mask_bounding_box(mask, 0.0) == (16, 8, 31, 15)
    assert mask_bounding_box(mask, 1.0) == (8, 4, 39, 19)  # 15 x 7 grown by 7.5 / 3.5 a side
    assert mask_bounding_box(torch.zeros(4, 4, dtype=torch.bool), 0.6) is None
    assert scale_box((8, 4, 39, 19), (1 / 8, 1 / 8)) == (1, 0, 4, 2)
    assert smoothed_box((2, 2, 12, 6), (0, 0, 4, 4), 0.1, (20, 20)) == _official_adjust(
        (2, 2, 12, 6), (0, 0, 4, 4), 0.1, 20, 20)
    assert smoothed_box((2, 2, 12, 6), (0, 0, 4, 4), 0.1, (20, 20)) == (4, 2, 10, 6)  # size 4.6 x 4 about (7, 4)
    assert smoothed_box((2, 2, 12, 6), None, 0.1, (20, 20)) == (2, 2, 12, 6)


def test_first_boxes_are_seg2bbox_on_the_input_sized_mask():
    """Object pixels x 8..31, y 16..39: grown by 0.6 of 23 -> [1.1, 37.9] -> [1, 38] px -> cells
    [0, 4] (floored); y [9.1, 45.9] -> [9, 46] -> [1, 5]. With a resized input, the box is that of
    the mask nearest-resized to the input (``read_seg``'s ``large_seg``), then floored to cells."""
    frames, masks = _object_video(n_frames=1)
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    assert tracker.boxes == {1: (0, 1, 4, 5)}
    square = UVCTracker(CellEncoder(), PRESET.with_overrides(size=SizePolicy("square", 64)))
    square.start(frames[0], one_hot_labels(masks[0]))
    large = np.asarray(Image.fromarray(masks[0]).resize((64, 64), Image.NEAREST))  # scipy imresize nearest
    ys, xs = np.nonzero(large == 1)
    box = _official_box(xs.min(), xs.max(), ys.min(), ys.max(), 0.6, 64, 64)
    assert square.boxes == {1: tuple(math.floor(e / 8) for e in box)}


def test_mask_boxes_are_fitted_on_the_upsampled_mask_as_seg2bbox_v2():
    """A propagated frame's boxes: its soft labels upsampled x8 (bilinear), min-max normalised,
    argmax; then ``coords2bbox_scale`` (bandwidth 20 px, margin 0.6) on each object's pixels (the
    official list flipped: last pixel first), ``upscale(0.125)`` and ``adjust_bbox`` against the
    previous box, clamped to the input image's size (the official arguments)."""
    frames, masks = _object_video(n_frames=1, hw=(6, 10))
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    rng = np.random.default_rng(0)
    soft = torch.from_numpy(rng.uniform(0, 0.3, (3, 6, 10))).float()
    soft[0] += 0.5
    soft[1, 1:4, 2:6] += torch.from_numpy(rng.uniform(0.5, 1.0, (3, 4))).float()
    soft[1, 5, 0] += 0.9  # a stray pixel group away from object 1
    soft[2, 3:6, 7:10] += 0.9  # in the corner, after a larger box: the smoothed box passes the edges
    previous = {1: (1, 0, 6, 4), 2: (2, 0, 10, 6)}
    got = tracker._mask_boxes(soft.flatten(1).T, {k: previous[k] for k in (1, 2)})
    up = F.interpolate(soft[None], scale_factor=8, mode="bilinear", align_corners=False)[0]
    up = (up - up.amin(dim=(1, 2), keepdim=True)) / (up.amax(dim=(1, 2)) - up.amin(dim=(1, 2)))[:, None, None]
    hard = up.argmax(dim=0)
    for k in (1, 2):
        fg = torch.flip((hard == k).nonzero().double(), (0, 1)).numpy()  # (x, y), last pixel first
        box = _official_coords2bbox_scale(fg, 48, 80, margin=0.6, bandwidth=20)
        want = _official_adjust(tuple(math.floor(e * 0.125) for e in box), previous[k], 0.1, 48, 80)
        assert got[k] == want, (k, got[k], want)
    assert got[2][2] > 10 and got[2][3] > 6  # clamped to the 80 x 48 image, as the official code does
    assert tracker._mask_boxes(soft.flatten(1).T, {1: None}) == {1: None}  # None stays None


def test_mask_box_starts_from_the_last_of_tied_pixels():
    """Two pixels tie for nearest to the mean, (65, 6) and (65, 10); the official list is flipped,
    so the mean shift starts from the later one, and (signed stop) the box depends on it."""
    index = torch.zeros(48, 80, dtype=torch.long)
    index[10:19, 61:75] = 1
    index[1:7, 50:78] = 1
    fg = torch.flip(index.nonzero().double(), (0, 1)).numpy()
    want = _official_coords2bbox_scale(fg, 48, 80, margin=0.6, bandwidth=20)
    assert predicted_mask_box(index, 1, 20.0, 4.0, 0.6) == want == (48, 0, 80, 34)


def test_mask_boxes_of_a_block_are_on_its_upsampled_pixels():
    """Object cells x 2..5, y 1..2: its upsampled pixels are x 16..47, y 8..23. Mean shift from the
    last of the central pixels, (32, 16), barely moves (its window is symmetric to 1e-4); 2 MAD
    = 16 and 8 px; grown by 0.6: x [6.4, 57.6] -> [6, 58] px -> cells [0, 7], y [3.2, 28.8] ->
    [3, 29] -> [0, 3]. (Fitted on the cells instead, with the old flat kernel: (0, 0, 8, 4).)"""
    frames, masks = _object_video(n_frames=1, hw=(6, 10))
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    soft = torch.zeros(2, 6, 10)
    soft[1, 1:3, 2:6] = 1.0
    soft[0] = 1.0 - soft[1]
    assert tracker._mask_boxes(soft.flatten(1).T, {1: (0, 0, 7, 3)}) == {1: (0, 0, 7, 3)}


def test_localised_points_sit_on_the_official_coordinate_grid():
    """A still object: each foreground cell lands on itself, at the official ``create_grid``
    coordinate i * w / (w - 1) (PyTorch 1.1's align_corners=True grid), not at i."""
    frames, masks = _object_video(n_frames=2, step=0)
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    first = tracker.boxes[1]
    tracker.step(frames[1])
    h, w = tracker.feature_hw
    ys, xs = torch.meshgrid(torch.arange(2, 5.0), torch.arange(1, 4.0), indexing="ij")  # the object's cells
    landed = torch.stack([xs.flatten() * w / (w - 1), ys.flatten() * h / (h - 1)])
    want = smoothed_box(fit_box(landed, 5.0, 4.0, 1.0, (h, w)), first, 0.1, (h, w))
    assert tracker.boxes[1] == want == (0, 1, 5, 6)


def test_first_boxes_grow_by_first_margin_not_mask_margin():
    """first_margin alone sets the first frame's growth: object pixels x 8..31, y 16..39 grown by
    1.0 x 23 / 2 = 11.5 a side: x [-3.5, 42.5] -> [0, 43] px -> cells [0, 5]; y [4.5, 50.5] ->
    [4, 51] px -> cells [0, 6] (mask_margin 0.6 would give (0, 1, 4, 5))."""
    frames, masks = _object_video(n_frames=1)
    tracker = UVCTracker(CellEncoder(), PRESET, TrackOptions(first_margin=1.0))
    tracker.start(frames[0], one_hot_labels(masks[0]))
    assert tracker.boxes == {1: (0, 0, 5, 6)}


def test_an_object_of_min_pixels_cells_is_localised_and_fewer_are_not():
    """min_pixels (2): an object with fewer foreground cells in the latest frame is not localised;
    one with exactly that many is."""
    frames, masks = _object_video(n_frames=1)
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    first = tracker._first
    h, w = tracker.feature_hw
    for cells, found in (([2 * w + 1, 2 * w + 2], True), ([2 * w + 1], False)):
        hard = torch.zeros(h * w, dtype=torch.long)
        hard[cells] = 1
        assert (tracker._locate(first, hard, first.feats, 1) is not None) == found, cells


def test_pixel_boxes_scale_each_axis_by_its_own_frame_side():
    """With a square 64 px input the 160 x 96 frame maps to 8 x 8 cells: a cell is 160 / 8 = 20 px wide
    and 96 / 8 = 12 px high, so box edges (x1, y1, x2, y2) in cells become (20 x1, 12 y1, 20 (x2 - x1),
    12 (y2 - y1)) in the frame's pixels."""
    frames, masks = _object_video(n_frames=1)
    tracker = UVCTracker(CellEncoder(), PRESET.with_overrides(size=SizePolicy("square", 64)))
    tracker.start(frames[0], one_hot_labels(masks[0]))
    (x1, y1, x2, y2), = tracker.boxes.values()
    assert tracker.pixel_boxes() == {1: (20 * x1, 12 * y1, 20 * (x2 - x1), 12 * (y2 - y1))}
    assert (x2 - x1, y2 - y1) != (0, 0)


def test_pixels_to_cells_use_each_axis_own_ratio():
    """A native 160 x 100 frame (height not a multiple of 8) gives the stride-8 encoder 20 x 12 cells:
    0.125 cells per pixel in x, 12 / 100 = 0.12 in y. Object pixels x 16..47, y 8..40, no margin:
    cells floor(16 x 0.125) = 2, floor(47 x 0.125) = 5, floor(8 x 0.12) = 0, floor(40 x 0.12) = 4."""
    frame = np.random.default_rng(0).integers(0, 255, (100, 160, 3), dtype=np.uint8)
    mask = np.zeros((100, 160), np.uint8)
    mask[8:41, 16:48] = 1
    tracker = UVCTracker(CellEncoder(), PRESET, TrackOptions(first_margin=0.0))
    tracker.start(frame, one_hot_labels(mask))
    assert tracker.feature_hw == (12, 20)
    assert tracker.boxes == {1: (2, 0, 5, 4)}
