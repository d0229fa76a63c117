"""OTB OPE metrics on hand-made boxes: known IoU, the 20 px boundary, perfect and all-miss tracks."""

from __future__ import annotations

import numpy as np
import pytest

from vidcorr.metrics.tracking import (
    OVERLAP_THRESHOLDS,
    PRECISION_KEY,
    average_scores,
    box_iou,
    centre_error,
    score_sequence,
    success_curve,
    valid_boxes,
)


def test_known_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [2.5, 2.5, 5, 5]], float)
    b = np.array([[5, 0, 10, 10], [10, 0, 10, 10], [20, 20, 4, 4], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b), [50 / 150, 0.0, 0.0, 25 / 100])
    assert box_iou(a[:1], a[:1])[0] == 1.0


def test_otb_thresholds_and_strict_success():
    assert len(OVERLAP_THRESHOLDS) == 21 and OVERLAP_THRESHOLDS[0] == 0 and OVERLAP_THRESHOLDS[-1] == 1
    curve = success_curve(np.array([0.5, 0.5]))
    assert curve[10] == 0.0 and curve[9] == 1.0  # IoU 0.5 is not "> 0.5"


def test_centre_error_exactly_20px_counts():
    gt = np.array([[0, 0, 10, 10]] * 2, float)  # centre (5, 5)
    pred = np.array([[12, 16, 10, 10], [12, 16.01, 10, 10]], float)  # centres 20 px and just over
    err = centre_error(gt, pred)
    assert err[0] == 20.0 and err[1] > 20.0
    scores = score_sequence(gt, pred)
    assert scores[PRECISION_KEY] == 0.5
    assert scores["precision_curve"][19] == 0.0 and scores["precision_curve"][20] == 0.5


def test_perfect_track():
    gt = np.array([[10, 20, 30, 40], [12, 21, 30, 41], [15, 25, 28, 40]], float)
    scores = score_sequence(gt, gt.copy())
    # OTB's strict "IoU > t" leaves t = 1 unreachable: a perfect track scores 20/21 (docs/tracking.md).
    assert scores["success_curve"] == [1.0] * 20 + [0.0]
    assert scores["success_auc"] == pytest.approx(20 / 21)
    assert scores["average_overlap"] == 1.0 and scores[PRECISION_KEY] == 1.0 and scores["frames"] == 3


def test_all_miss_track():
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    pred = gt + np.array([100, 100, 0, 0])
    scores = score_sequence(gt, pred)
    assert scores["success_auc"] == 0.0 and scores[PRECISION_KEY] == 0.0 and scores["average_overlap"] == 0.0


def test_average_over_sequences_weighs_sequences_equally():
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    perfect = score_sequence(gt, gt)
    half = score_sequence(gt, np.concatenate([gt[:2], gt[2:] + [100, 0, 0, 0]]))
    mean = average_scores({"a": perfect, "b": half})
    assert mean["success_auc"] == pytest.approx((perfect["success_auc"] + half["success_auc"]) / 2)
    assert mean[PRECISION_KEY] == pytest.approx(0.75)


def test_shape_errors():
    with pytest.raises(ValueError, match="predicted boxes"):
        score_sequence(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(T, 4\)"):
        box_iou(np.zeros((3, 5)), np.zeros((3, 5)))


def test_valid_boxes():
    boxes = np.array([[1, 2, 3, 4], [np.nan] * 4, [0, 0, 0, 0], [5, 5, 3, -1], [1, np.nan, 3, 4], [-5, -5, 2, 2]])
    assert valid_boxes(boxes).tolist() == [True, False, False, False, False, True]


def test_frames_without_valid_ground_truth_are_scored_as_the_otb_toolkit_does():
    """calcSeqErrRobust.m: an invalid GT frame gets overlap -1 and centre error -1 and stays in the
    denominator, so it misses at every success threshold and hits at every precision threshold.
    Hand-computed over 5 frames: frame 0 exact (IoU 1, 0 px), frames 1-2 without a box (NaN row,
    all-zero row), frame 3 IoU 1/3 at 5 px, frame 4 IoU 0 at 141 px.
      success: t = 0 .. 0.30 (7 thresholds) 2/5, t = 0.35 .. 0.95 (13) 1/5, t = 1 0 -> AUC 27/105
      precision: t < 5 px 3/5, t >= 5 px 4/5; average overlap (1 + 1/3) / 5.
    (Leaving frames 1-2 out would give AUC 27/63 and precision@20px 2/3.)"""
    gt = np.array([[0, 0, 10, 10], [np.nan] * 4, [0, 0, 0, 0], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    far = [100, 100, 10, 10]
    pred = np.array([[0, 0, 10, 10], far, far, [5, 0, 10, 10], far], float)
    scores = score_sequence(gt, pred)
    assert scores["success_curve"] == pytest.approx([2 / 5] * 7 + [1 / 5] * 13 + [0.0])
    assert scores["success_auc"] == pytest.approx(27 / 105)
    assert scores["precision_curve"] == pytest.approx([3 / 5] * 5 + [4 / 5] * 46)
    assert scores[PRECISION_KEY] == pytest.approx(0.8)
    assert scores["average_overlap"] == pytest.approx(4 / 15)
    assert scores["frames"] == 5 and scores["invalid_gt_frames"] == 2
