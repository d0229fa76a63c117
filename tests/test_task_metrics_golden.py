"""Golden cases for the metrics of the other tasks (JHMDB PCK, keypoint codec, OTB, VOT, VIP).

Written for the mutants a mutation audit of these modules found surviving the suite: each test
below fails under one of them. Expected values are hand-computed from METHODS.md §6.2-6.4, the
toolkits the module docstrings name (OTB ``calcSeqErrRobust.m``, the VOT toolkit's stack files and
runner, VOC all-point AP), or an independent naive reference (PIL's nearest resize, a per-pixel
Gaussian loop).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vidcorr.errors import InputError
from vidcorr.evaluate.tracking import run_supervised
from vidcorr.io.vot_trajectory import VOT_FAILED, VOT_INITIALISED, VOT_SKIPPED, VOT_TRACKED
from vidcorr.keypoints import CODECS, HeatmapCodec, KeypointSet, check_first_keypoints, codec_for
from vidcorr.metrics.pck import PCKAccumulator, normalised_distances
from vidcorr.metrics.polygon import polygon_convex, polygon_simple
from vidcorr.metrics.segmentation import ConfusionMatrix, PartAP, average_precision, resize_nearest
from vidcorr.metrics.tracking import average_scores, score_sequence
from vidcorr.metrics.vot import (
    EAO_INTERVALS,
    known_ground_truth,
    polygon_valid,
    region_overlap,
    score_overlaps,
)

# --------------------------------------------------------------------------- JHMDB PCK


def test_pck_skips_frame_0_by_default():
    """METHODS §6.2 / pck.py: UVC and CRW skip frame 0, and so does our default (function and
    accumulator). Frame 0 is a miss, frame 1 a hit: with the default only the hit counts."""
    gt = np.array([[[0.0, 0.0], [30.0, 40.0]]] * 2)  # box diagonal 50 -> normaliser 30
    pred = gt.copy()
    pred[0] += 100.0
    visible = np.ones((2, 2), bool)
    d = normalised_distances(pred, gt, visible)
    assert np.isnan(d[0]).all() and d[1].tolist() == [0.0, 0.0]
    acc = PCKAccumulator(("a", "b"))
    acc.add("v", pred, gt, visible)
    results = acc.results((0.1,))
    assert results["PCK@0.1"] == 1.0 and results["counted_joints"] == 2


def test_pck_mean_leaves_out_joints_never_counted():
    """A joint that is never counted (lost in every frame) has no PCK and is left out of the mean
    over joints, not averaged in as 0: joints 0, 1 hit, joint 2 never visible -> 1.0, not 2/3."""
    gt = np.array([[[0.0, 0.0], [30.0, 40.0], [10.0, 10.0]]] * 3)
    visible = np.ones((3, 3), bool)
    visible[:, 2] = False
    acc = PCKAccumulator(("a", "b", "c"))
    acc.add("v", gt.copy(), gt, visible)
    results = acc.results((0.1,))
    assert results["PCK@0.1"] == 1.0
    assert results["per_joint"]["PCK@0.1"] == {"a": 1.0, "b": 1.0, "c": None}
    assert results["per_video"]["v"]["PCK@0.1"] == 1.0


def test_pck_box_leaves_out_a_joint_whose_prediction_has_no_position():
    """A joint marked visible but predicted at NaN is not counted, and its GT does not widen the box
    of the others: box (0, 0)-(30, 40) -> normaliser 30, so a 3 px error is exactly 0.1 (with joint
    1's GT at (300, 400) in the box it would be 3 / 300)."""
    gt = np.array([[[0.0, 0.0], [300.0, 400.0], [30.0, 40.0]]] * 2)
    pred = gt.copy()
    pred[1, 0] += [3.0, 0.0]
    pred[1, 1] = np.nan
    d = normalised_distances(pred, gt, np.ones((2, 3), bool), skip_first_frame=True)
    assert d[1, 0] == pytest.approx(0.1) and np.isnan(d[1, 1]) and d[1, 2] == 0.0


# --------------------------------------------------------------------------- OTB


@pytest.mark.parametrize("bad", [[10.0, 10.0, 0.0, 20.0], [10.0, 10.0, 20.0, 0.0]])
def test_otb_ground_truth_of_zero_width_or_height_is_unannotated(bad):
    """calcSeqErrRobust.m calls a GT box valid only when all its values are > 0: a box of width or
    height 0 gets centre error -1, a hit at every precision threshold, however far the prediction
    is, and overlap -1, a miss everywhere."""
    gt = np.array([[10.0, 10.0, 20.0, 20.0], bad])
    pred = np.array([[10.0, 10.0, 20.0, 20.0], [200.0, 200.0, 20.0, 20.0]])
    s = score_sequence(gt, pred)
    assert s["invalid_gt_frames"] == 1
    assert s["precision@20px"] == 1.0 and s["precision_curve"][0] == 1.0
    assert s["success_curve"][0] == 0.5 and s["average_overlap"] == 0.5


def test_otb_average_overlap_is_the_mean_over_sequences():
    """Sequence a tracked perfectly (mean IoU 1), sequence b shifted by half a box (IoU 50 / 150):
    the average over sequences is (1 + 1/3) / 2."""
    gt = np.array([[0.0, 0.0, 10.0, 10.0]] * 4)
    per_sequence = {"a": score_sequence(gt, gt.copy()), "b": score_sequence(gt, gt + [5.0, 0.0, 0.0, 0.0])}
    assert per_sequence["b"]["average_overlap"] == pytest.approx(1 / 3)
    assert average_scores(per_sequence)["average_overlap"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- VOT


def test_vot_failures_are_the_failed_frames_not_the_restarts():
    """A failure 2 frames before the end has no re-initialisation after it: still 1 failure."""
    status = np.array([VOT_INITIALISED] + [VOT_TRACKED] * 12 + [VOT_FAILED, VOT_SKIPPED])
    scores = score_overlaps(status, np.full(len(status), 0.5), np.ones(len(status), bool))
    assert scores["failures"] == 1 and scores["initialisations"] == 1
    assert scores["accuracy"] == 0.5 and scores["scored_frames"] == 3  # frames 10-12


def test_vot_accuracy_is_0_when_every_frame_is_in_the_burn_in():
    """The toolkits' convention: no frame outside the 10-frame burn-in -> accuracy 0."""
    status = np.array([VOT_INITIALISED] + [VOT_TRACKED] * 6)
    scores = score_overlaps(status, np.full(7, 0.8), np.ones(7, bool))
    assert scores["scored_frames"] == 0 and scores["accuracy"] == 0.0


@pytest.mark.parametrize("polygon", [[5.0] * 8, [0.0, 0.0, 10.0, 0.0, 20.0, 0.0, 5.0, 0.0]])
def test_vot_ground_truth_of_zero_area_is_not_annotated(polygon):
    assert not polygon_valid(np.array(polygon))
    assert polygon_valid(np.array([0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]))
    assert known_ground_truth(np.array([polygon, [0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]])).tolist() == [
        False, True]


SQUARE = np.array([0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0])


@pytest.mark.parametrize("box", [[-10.0, 0.0, 20.0, 10.0], [0.0, -10.0, 10.0, 20.0], [-5.0, -5.0, 15.0, 15.0]])
def test_vot_box_is_bounded_by_the_image_on_the_left_and_top_too(box):
    """VOT's bounded overlap: the part of a box left of x = 0 or above y = 0 does not count, so each
    of these boxes is the GT square (0, 0)-(10, 10) once bounded: IoU 1."""
    assert region_overlap(np.array(box), SQUARE, (100, 100)) == pytest.approx(1.0)


def test_vot_eao_intervals_are_the_toolkit_stacks():
    """votchallenge/toolkit vot/stack/vot2015..vot2019.yaml, baseline EAOScore low / high."""
    assert EAO_INTERVALS == {"vot2015": (108, 371), "vot2016": (108, 371), "vot2017": (100, 356),
                             "vot2018": (100, 356), "vot2019": (46, 291)}


class _ShiftedSquare:
    """A tracker that returns the GT square (40, 40, 20, 20) shifted right by ``shift`` px."""

    def __init__(self, shift):
        self.shift, self.inits = shift, 0

    def init(self, frame, box):
        self.inits += 1

    def update(self, frame):
        return (40.0 + self.shift, 40.0, 20.0, 20.0)


def _run_shifted(shift, n=8):
    boxes = np.tile([40.0, 40.0, 20.0, 20.0], (n, 1))
    polygons = np.tile([40.0, 40.0, 60.0, 40.0, 60.0, 60.0, 40.0, 60.0], (n, 1))
    frames = (np.zeros((100, 100, 3), np.uint8) for _ in range(n))
    return run_supervised(_ShiftedSquare(shift), frames, boxes, polygons)[0]


def test_vot_runner_fails_only_at_overlap_zero():
    """failure_overlap = 0: a prediction overlapping the GT by 0.2 px² (IoU 2.5e-4) is tracked, one
    that only touches it (shift 20) fails on frame 1, restarts 5 frames later and fails again."""
    assert _run_shifted(19.99).tolist() == [VOT_INITIALISED] + [VOT_TRACKED] * 7
    assert _run_shifted(20.0).tolist() == [VOT_INITIALISED, VOT_FAILED] + [VOT_SKIPPED] * 4 + [
        VOT_INITIALISED, VOT_FAILED]


def test_convex_polygon_with_a_straight_corner_intersects_a_non_convex_ground_truth():
    """A square written with a corner in the middle of its bottom edge is convex (straight corners
    allowed), so it can clip an L-shaped GT (area 300) that it lies inside: IoU 100 / 300."""
    pentagon = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    assert polygon_convex(pentagon) and polygon_simple(pentagon)
    ell = np.array([0.0, 0.0, 20.0, 0.0, 20.0, 10.0, 10.0, 10.0, 10.0, 20.0, 0.0, 20.0])
    assert not polygon_convex(ell.reshape(-1, 2))
    assert region_overlap(pentagon.ravel(), ell, (100, 100)) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- VIP


@pytest.mark.parametrize("src_hw, dst_hw", [((2, 3), (3, 7)), ((5, 7), (3, 4)), ((7, 5), (10, 8)), ((4, 4), (8, 8))])
def test_resize_nearest_equals_pil_nearest(src_hw, dst_hw):
    labels = np.arange(src_hw[0] * src_hw[1], dtype=np.uint8).reshape(src_hw)
    pil = np.asarray(Image.fromarray(labels).resize((dst_hw[1], dst_hw[0]), Image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(labels, dst_hw), pil)


def test_confusion_matrix_rows_are_ground_truth():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 0, 2]]), np.array([[1, 1, 2]]))
    assert cm.matrix.tolist() == [[0, 2, 0], [0, 0, 0], [0, 0, 1]]


def test_average_precision_uses_the_precision_envelope():
    """Ranked miss, hit, hit with 2 GT: precision 0, 1/2, 2/3 at recall 0, 1/2, 1. VOC all-point AP
    takes the envelope (2/3 on both recall steps): 2/3, not 1/2 x 1/2 + 1/2 x 2/3."""
    assert average_precision(np.array([3.0, 2.0, 1.0]), np.array([False, True, True]), 2) == pytest.approx(2 / 3)


def test_ap_part_is_the_mean_over_the_nine_thresholds():
    """One GT part (100 px) and one prediction covering 35 of its pixels: IoU 0.35, a hit at
    t = 0.1, 0.2, 0.3 only -> AP_part = 3 / 9."""
    gt = np.zeros((10, 10), np.int64)
    gt[:, :] = 1
    pred = np.zeros((10, 10), np.int64)
    pred[:5, :7] = 1
    ap = PartAP()
    ap.add_frame(gt, {1: 3}, pred, {1: 3}, {1: 0.9})
    results = ap.results()
    assert results["AP_part"] == pytest.approx(1 / 3)
    assert results["AP_part@0.5"] == 0.0 and results["per_threshold"]["0.3"] == 1.0


def test_ap_part_matches_only_ground_truth_of_the_same_class():
    """A class-1 prediction lying exactly on a class-2 GT part is a false positive of class 1."""
    gt = np.zeros((10, 10), np.int64)
    gt[:5] = 1
    gt[5:] = 2
    pred = np.zeros((10, 10), np.int64)
    pred[5:] = 1
    ap = PartAP()
    ap.add_frame(gt, {1: 1, 2: 2}, pred, {1: 1}, {1: 0.9})
    assert ap.results()["per_class"] == {1: 0.0, 2: 0.0}
    assert ap.results()["AP_part"] == 0.0


# --------------------------------------------------------------------------- keypoint codec


def test_preset_codecs_follow_methods():
    """METHODS §6.2 / keypoints.py: UVC (and TimeCycle, whose test code UVC re-uses) sigma 0.5 cell,
    top-5, min-max; CRW sigma 0.5 cell, top-3, no min-max; STT sigma 4 px, top-5 at full resolution.
    Unknown names get CRW's."""
    uvc = HeatmapCodec(0.5, "cell", 5, "feature", minmax=True)
    assert CODECS["uvc"] == uvc and CODECS["timecycle"] == uvc
    assert CODECS["crw"] == HeatmapCodec(0.5, "cell", 3, "feature", minmax=False)
    assert CODECS["stt"] == HeatmapCodec(4.0, "pixel", 5, "original", minmax=False)
    assert codec_for("no-such-preset") == CODECS["crw"]


@pytest.mark.parametrize("original_hw, feature_hw, point", [((25, 35), (10, 14), (12.3, 7.9)),
                                                            ((16, 16), (8, 8), (7.5, 6.5))])
def test_cell_heatmap_equals_a_per_pixel_reference(original_hw, feature_hw, point):
    """Each pixel takes the value of the cell containing its centre (nearest-exact, also at a
    non-integer 2.5 px per cell), a Gaussian of sigma 0.5 cell around the point's feature
    coordinate u = (x + 0.5) w / W - 0.5, cut beyond 3 sigma (a cell exactly at 3 sigma is kept:
    the second case puts cells at 1.5 cells from the point)."""
    (H, W), (h, w) = original_hw, feature_hw
    labels = HeatmapCodec(0.5, "cell", 5, "feature").encode(np.array([point]), original_hw, feature_hw)
    u, v = (point[0] + 0.5) * w / W - 0.5, (point[1] + 0.5) * h / H - 0.5
    expected = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            i, j = math.floor((y + 0.5) * h / H), math.floor((x + 0.5) * w / W)
            d2 = (j - u) ** 2 + (i - v) ** 2
            expected[y, x] = math.exp(-d2 / (2 * 0.25)) if d2 <= 9 * 0.25 else 0.0
    np.testing.assert_allclose(labels[1].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(labels[0].numpy(), (expected == 0).astype(np.float32))
    if point == (7.5, 6.5):  # u = 3.5, v = 3: cell (3, 2) is at exactly 3 sigma
        assert labels[1, 6, 4].item() == pytest.approx(math.exp(-4.5), rel=1e-6)
        assert torch.count_nonzero(labels[1]).item() == 8 * 4  # cells (3, 2..5), (2, 3..4), (4, 3..4): 2 x 2 px each


def test_first_keypoints_may_lie_anywhere_on_the_edge_pixels():
    """Pixel centres are at integers, so a 10 x 10 frame spans -0.5 .. 9.5."""
    def kps(x, y):
        return KeypointSet(np.array([[x, y]]), np.array([True]), ["a"], [])

    for x, y in [(-0.4, 3.0), (3.0, -0.5), (9.5, 9.4)]:
        check_first_keypoints(kps(x, y), (10, 10))
    for x, y in [(-0.6, 3.0), (3.0, 9.6)]:
        with pytest.raises(InputError, match="outside"):
            check_first_keypoints(kps(x, y), (10, 10))
