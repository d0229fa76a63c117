"""PCK@alpha with the 0.6 x GT-box-diagonal normaliser: hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from vidcorr.metrics.pck import PCKAccumulator, box_normalisers, normalised_distances, pck_per_joint

# Two frames, three joints. GT box per frame: (0, 0)-(30, 40) -> diagonal 50 -> normaliser 30.
GT = np.array([[[0.0, 0.0], [30.0, 40.0], [15.0, 20.0]]] * 2)
ALL = np.ones((2, 3), bool)


def test_box_normaliser_is_0_6_times_the_diagonal_of_the_counted_joints():
    np.testing.assert_allclose(box_normalisers(GT, ALL), [30.0, 30.0])
    # joint 1 not counted in frame 1: box (0, 0)-(15, 20) -> diagonal 25 -> 15
    counted = ALL.copy()
    counted[1, 1] = False
    np.testing.assert_allclose(box_normalisers(GT, counted), [30.0, 15.0])
    assert box_normalisers(GT, np.zeros((2, 3), bool)).tolist() == [0.0, 0.0]


def test_a_joint_exactly_at_the_threshold_counts_and_just_beyond_does_not():
    # alpha 0.1 x normaliser 30 = 3 px
    pred = GT.copy()
    pred[1, 0] += [3.0, 0.0]  # exactly at the threshold distance
    pred[1, 1] += [0.0, 3.0 + 1e-9]  # just beyond
    pred[1, 2] += [1.8, 2.4]  # 3-4-5 triangle scaled: distance exactly 3
    d = normalised_distances(pred, GT, ALL, skip_first_frame=True)
    assert np.isnan(d[0]).all()  # frame 0 skipped
    assert d[1, 0] == pytest.approx(0.1) and d[1, 1] > 0.1
    assert pck_per_joint(d[1:], 0.1).tolist() == [1.0, 0.0, 1.0]
    assert pck_per_joint(d[1:], 0.2).tolist() == [1.0, 1.0, 1.0]


def test_first_frame_is_scored_when_asked():
    pred = GT + [[[10.0, 0.0]] * 3, [[0.0, 0.0]] * 3]
    skipped = normalised_distances(pred, GT, ALL, skip_first_frame=True)
    included = normalised_distances(pred, GT, ALL, skip_first_frame=False)
    assert pck_per_joint(skipped, 0.1).tolist() == [1.0, 1.0, 1.0]
    assert pck_per_joint(included, 0.1).tolist() == [0.5, 0.5, 0.5]


def test_joints_predicted_invisible_are_left_out_of_score_and_box():
    pred = GT.copy()
    pred[1, 1] = np.nan
    visible = ALL.copy()
    visible[1, 1] = False
    pred[1, 2] += [0.0, 2.0]  # within 0.1 x 30 = 3 but not within 0.1 x 15 = 1.5
    d = normalised_distances(pred, GT, visible, skip_first_frame=True)
    assert np.isnan(d[1, 1])
    assert d[1, 2] == pytest.approx(2.0 / 15.0)
    assert np.isnan(pck_per_joint(d, 0.1)[1])  # never counted


def test_joints_in_a_frame_with_a_zero_size_box_count_as_misses():
    # eval_pck.py divides by a 0 box: inf (or NaN for an exact prediction), never <= alpha, but
    # the joint stays in the per-joint denominator.
    gt = np.array([[[5.0, 5.0], [5.0, 5.0]]] * 2)
    d = normalised_distances(gt, gt, np.ones((2, 2), bool), skip_first_frame=False)
    assert np.isinf(d).all()
    assert pck_per_joint(d, 0.5).tolist() == [0.0, 0.0]


def test_box_max_starts_at_minus_one_as_in_eval_pck():
    # all joints left of and above pixel -1: the box reaches from (-30, -20) to (-1, -1)
    gt = np.array([[[-30.0, -20.0], [-10.0, -5.0]]])
    np.testing.assert_allclose(box_normalisers(gt, np.ones((1, 2), bool)), [0.6 * np.hypot(29.0, 19.0)])


# Golden case, computed by hand from the UVC / CRW eval_pck.py loop (frame 0 skipped).
# frame 1: joint 0 lies outside the frame (x = -10) and is in the box: (-10, 10)-(50, 90),
#          diagonal 100, normaliser 60; joint 0 is off by (3, 4) -> 5 / 60.
# frame 2: every GT joint above / left of -1, joint 2 lost: box (-30, -20)-(-1, -1) (the
#          running max starts at -1), normaliser 0.6 * hypot(29, 19) = 20.80; joint 0 off by
#          2 px -> 0.096 (a tight box (-30, -20)-(-10, -5) would give 2 / 15 = 0.133).
# frame 3: only joint 1 visible, box of size 0 -> joint 1 is a miss although exact.
# per joint at 0.1: joint 0 2/2, joint 1 2/3, joint 2 1/1 -> mean 8/9.
GOLDEN_GT = np.array([
    [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]],
    [[-10.0, 50.0], [20.0, 10.0], [50.0, 90.0]],
    [[-30.0, -20.0], [-10.0, -5.0], [-12.0, -8.0]],
    [[10.0, 10.0], [100.0, 100.0], [20.0, 20.0]],
])
GOLDEN_VISIBLE = np.array([[True] * 3, [True] * 3, [True, True, False], [False, True, False]])


def _golden_prediction() -> np.ndarray:
    pred = GOLDEN_GT.copy()
    pred[1, 0] += [3.0, 4.0]
    pred[2, 0] += [2.0, 0.0]
    pred[~GOLDEN_VISIBLE] = np.nan
    return pred


def test_golden_case_matches_the_reference_formula():
    d = normalised_distances(_golden_prediction(), GOLDEN_GT, GOLDEN_VISIBLE, skip_first_frame=True)
    assert d[1, 0] == pytest.approx(5.0 / 60.0)
    assert d[2, 0] == pytest.approx(2.0 / (0.6 * np.hypot(29.0, 19.0)))
    assert np.isinf(d[3, 1])
    acc = PCKAccumulator(("a", "b", "c"), skip_first_frame=True)
    acc.add("golden", _golden_prediction(), GOLDEN_GT, GOLDEN_VISIBLE)
    res = acc.results((0.1,))
    assert res["per_joint"]["PCK@0.1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 1.0})
    assert res["PCK@0.1"] == pytest.approx(8 / 9)
    assert res["counted_joints"] == 6


def test_accumulator_pools_joints_over_videos_and_means_over_joints():
    acc = PCKAccumulator(("a", "b", "c"), skip_first_frame=True)
    good = GT.copy()
    bad = GT.copy()
    bad[1, 0] += [10.0, 0.0]  # joint a wrong in the second video
    acc.add("v1", good, GT, ALL)
    acc.add("v2", bad, GT, ALL)
    res = acc.results((0.1, 0.2))
    assert res["per_joint"]["PCK@0.1"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert res["PCK@0.1"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert res["per_video"]["v1"]["PCK@0.1"] == 1.0
    assert res["per_video"]["v2"]["PCK@0.1"] == pytest.approx(2 / 3)
    assert res["per_video"]["v2"]["frames"] == 2 and res["counted_joints"] == 6
    assert res["PCK@0.2"] >= res["PCK@0.1"]


def test_accumulator_checks_shapes():
    acc = PCKAccumulator(("a", "b", "c"))
    with pytest.raises(ValueError, match="must both be"):
        acc.add("v", GT[:, :2], GT[:, :2], ALL[:, :2])
