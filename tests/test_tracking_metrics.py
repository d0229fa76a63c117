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
