"""Confusion-matrix mIoU and instance-level part AP on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from vidcorr.metrics.segmentation import (
    ConfusionMatrix,
    PartAP,
    average_precision,
    greedy_match,
    instance_ious,
    resize_nearest,
)


# --------------------------------------------------------------------------- mIoU


def test_confusion_matrix_ignores_255_and_averages_present_classes():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 3]], np.uint8)
    cm = ConfusionMatrix(5)
    cm.update(gt, pred)
    assert cm.matrix.sum() == 6  # the two ignored pixels are not counted
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [1 / 2, 2 / 3, 1.0])
    assert np.isnan(iou[3]) and np.isnan(iou[4])  # absent from GT and prediction after ignoring
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_confusion_matrix_accumulates_over_frames_and_merges():
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([[0, 1]]), np.array([[0, 1]]))
    b.update(np.array([[1, 1]]), np.array([[0, 0]]))
    a.merge(b)
    # class 0: tp 1, fp 2; class 1: tp 1, fn 2
    np.testing.assert_allclose(a.iou(), [1 / 3, 1 / 3])


def test_predictions_are_nearest_resized_to_the_gt():
    pred = np.array([[1, 2], [3, 4]], np.uint8)
    assert resize_nearest(pred, (4, 4)).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    cm = ConfusionMatrix(5)
    cm.update(resize_nearest(pred, (4, 4)), pred)
    assert cm.miou() == 1.0


def test_confusion_matrix_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="class ids must be in 0..1"):
        ConfusionMatrix(2).update(np.array([[0, 1]]), np.array([[0, 2]]))


# --------------------------------------------------------------------------- part AP


def _map(*boxes, shape=(10, 10)):
    """Index map with instance id k + 1 filling rows/cols box k = (r0, r1, c0, c1)."""
    out = np.zeros(shape, np.int64)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        out[r0:r1, c0:c1] = k + 1
    return out


def test_instance_ious_from_index_maps():
    gt = _map((0, 2, 0, 5))  # 10 px
    pred = _map((0, 2, 0, 4), (5, 6, 0, 1))  # 8 px inside gt; 1 px elsewhere
    p, g, ious = instance_ious(pred, gt)
    assert p.tolist() == [1, 2] and g.tolist() == [1]
    np.testing.assert_allclose(ious, [[0.8], [0.0]])


def test_perfect_prediction_gives_ap_one_at_every_threshold():
    gt = _map((0, 3, 0, 3), (5, 9, 5, 9), (0, 2, 6, 10))
    ap = PartAP()
    ap.add_frame(gt, {1: 1, 2: 1, 3: 2}, gt.copy(), {1: 1, 2: 1, 3: 2}, {1: 0.9, 2: 0.8, 3: 0.7})
    res = ap.results()
    assert res["AP_part"] == 1.0 and res["AP_part@0.5"] == 1.0
    assert set(res["per_threshold"].values()) == {1.0} and res["per_class"] == {1: 1.0, 2: 1.0}


def test_a_missed_instance_halves_recall():
    gt = _map((0, 3, 0, 3), (5, 9, 5, 9))
    pred = _map((0, 3, 0, 3))
    ap = PartAP()
    ap.add_frame(gt, {1: 4, 2: 4}, pred, {1: 4}, {1: 0.9})
    assert ap.results()["AP_part"] == pytest.approx(0.5)


@pytest.mark.parametrize(("fp_score", "expected"), [(0.1, 1.0), (0.95, 0.5)])
def test_a_false_positive_costs_only_when_ranked_first(fp_score, expected):
    gt = _map((0, 3, 0, 3))
    pred = _map((0, 3, 0, 3), (6, 9, 6, 9))
    ap = PartAP()
    ap.add_frame(gt, {1: 4}, pred, {1: 4, 2: 4}, {1: 0.9, 2: fp_score})
    assert ap.results()["AP_part@0.5"] == pytest.approx(expected)


def test_iou_just_below_and_just_above_the_threshold():
    gt = _map((0, 1, 0, 10))  # 10 px
    exactly_half = _map((0, 1, 0, 5))  # IoU 5 / 10 = 0.5
    above = _map((0, 1, 0, 6))  # IoU 0.6
    for pred, hit_at_half in ((exactly_half, False), (above, True)):
        ap = PartAP(thresholds=(0.4, 0.5, 0.6))
        ap.add_frame(gt, {1: 3}, pred, {1: 3}, {1: 1.0})
        per_t = ap.results()["per_threshold"]
        assert per_t["0.4"] == 1.0
        assert per_t["0.5"] == (1.0 if hit_at_half else 0.0)  # a match needs IoU > t, strictly
        assert per_t["0.6"] == 0.0


def test_duplicates_and_wrong_classes_do_not_match():
    gt = _map((0, 4, 0, 4))
    pred = _map((0, 4, 0, 2), (0, 4, 2, 4))  # two halves of the same GT instance: IoU 0.5 each
    ap = PartAP(thresholds=(0.3,))
    ap.add_frame(gt, {1: 7}, pred, {1: 7, 2: 7}, {1: 0.9, 2: 0.8})
    assert ap.results()["AP_part"] == pytest.approx(1.0)  # first half matches; second is a FP ranked last
    wrong = PartAP(thresholds=(0.3,))
    wrong.add_frame(gt, {1: 7}, gt.copy(), {1: 8}, {1: 0.9})  # right region, wrong class
    assert wrong.results()["AP_part"] == 0.0 and wrong.results()["per_class"] == {7: 0.0}


def test_greedy_matching_is_one_to_one_in_score_order():
    ious = np.array([[0.9, 0.6], [0.8, 0.2], [0.7, 0.7]])
    assert greedy_match(ious, 0.5).tolist() == [True, False, True]


def test_average_precision_pools_frames_by_score():
    # ranked: TP, FP, TP with 2 GT -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2) == pytest.approx(
        0.5 * 1.0 + 0.5 * (2 / 3))
    a, b = PartAP(thresholds=(0.5,)), PartAP(thresholds=(0.5,))
    gt = _map((0, 3, 0, 3))
    a.add_frame(gt, {1: 1}, gt, {1: 1}, {1: 0.9})
    b.add_frame(gt, {1: 1}, _map((6, 9, 6, 9)), {1: 1}, {1: 0.8})
    a.merge(b)
    assert a.n_gt[1] == 2 and a.results()["AP_part"] == pytest.approx(0.5)


def test_classes_without_ground_truth_are_left_out_and_empty_gives_none():
    gt = _map((0, 3, 0, 3))
    ap = PartAP()
    ap.add_frame(gt, {1: 1}, _map((0, 3, 0, 3), (6, 9, 6, 9)), {1: 1, 2: 5}, {1: 0.9, 2: 0.9})
    assert ap.results()["per_class"] == {1: 1.0}  # class 5 has no GT instance: not averaged
    assert PartAP().results()["AP_part"] is None
