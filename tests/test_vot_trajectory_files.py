"""VOT trajectory and ground-truth files: round trip, polygon lines, the experiment's order, real polygons."""

from __future__ import annotations

import numpy as np
import pytest
from vot_helpers import DIAMOND, T

from vidcorr.errors import InputError
from vidcorr.evaluate.tracking_results import score_trajectory_file
from vidcorr.io.tracking import polygon_to_box, read_vot_boxes, read_vot_polygons
from vidcorr.io.vot_trajectory import (
    VOT_FAILED,
    VOT_INITIALISED,
    VOT_SKIPPED,
    VOT_TRACKED,
    read_vot_trajectory,
    write_vot_trajectory,
)


def test_trajectory_file_round_trip_and_refusals(tmp_path):
    status = np.array([VOT_INITIALISED, VOT_TRACKED, VOT_FAILED, VOT_SKIPPED])
    boxes = np.array([[np.nan] * 4, [1.23456, 2.0, 30.5, 40.25], [np.nan] * 4, [np.nan] * 4])
    path = tmp_path / "seq_001.txt"
    write_vot_trajectory(path, status, boxes)
    assert path.read_text() == "1\n1.2346,2.0000,30.5000,40.2500\n2\n0\n"
    read_status, read_boxes = read_vot_trajectory(path)
    assert read_status.tolist() == status.tolist()
    np.testing.assert_allclose(read_boxes[1], [1.2346, 2.0, 30.5, 40.25])
    assert np.isnan(read_boxes[[0, 2, 3]]).all()
    path.write_text("1\n3\n")
    with pytest.raises(InputError, match="line 2: a one-value line must be the code 0, 1 or 2"):
        read_vot_trajectory(path)
    path.write_text("1\n1,2,3\n")
    with pytest.raises(InputError, match="line 2: expected 1, 4 or 8 values, got 3"):
        read_vot_trajectory(path)


def test_polygon_trajectories_score_like_their_boxes(tmp_path):
    """Rotated-box trackers write polygons (8 values): read as corners, boxes beside them too, and
    scored like the same regions written as boxes; two non-convex regions are refused by line."""
    gt = np.stack([DIAMOND + 3 * t for t in range(14)])  # the diamond drifting down-right
    status = np.array([VOT_INITIALISED] + [VOT_TRACKED] * 13)
    boxes = np.array([[np.nan] * 4] + [[10 + 3 * t, 10 + 3 * t, 10, 10 - t / 2] for t in range(1, 14)])
    as_boxes, as_polygons = tmp_path / "boxes_001.txt", tmp_path / "polygons_001.txt"
    write_vot_trajectory(as_boxes, status, boxes)
    lines = as_boxes.read_text().splitlines()
    for t in range(1, 14, 2):  # every other box as its corners, in the toolkit's polygon format
        x, y, w, h = (float(v) for v in lines[t].split(","))
        lines[t] = ",".join(f"{v:.4f}" for v in (x, y, x + w, y, x + w, y + h, x, y + h))
    as_polygons.write_text("\n".join(lines) + "\n")
    read_status, regions = read_vot_trajectory(as_polygons)
    assert read_status.tolist() == status.tolist() and regions.shape == (14, 8) and np.isnan(regions[0]).all()
    np.testing.assert_allclose(regions[2], [16, 16, 26, 16, 26, 25, 16, 25])  # a box line, as its corners
    scored = {path.name: score_trajectory_file(path, gt, (100, 100), tmp_path / "groundtruth.txt")
              for path in (as_boxes, as_polygons)}
    (box_scores, box_fragments), (poly_scores, poly_fragments) = scored.values()
    assert box_scores["scored_frames"] == 4 and 0 < box_scores["accuracy"] < 1  # frames 10..13 after burn-in
    assert poly_scores == pytest.approx(box_scores)
    np.testing.assert_allclose(poly_fragments[0][0], box_fragments[0][0], atol=1e-12)
    lines[5] = "0,0,10,0,3,3,0,10"  # an arrowhead: non-convex
    as_polygons.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 6: the predicted polygon and the ground truth are both non-convex"):
        score_trajectory_file(as_polygons, np.stack([np.array([0, 0, 20, 0, 6, 6, 0, 20.])] * 14), (100, 100),
                              tmp_path / "groundtruth.txt")  # an arrowhead ground truth too
    # A bow tie whose crossing point is a corner; with 4 corners one of its loops lies flat on an edge:
    # (25, 20) is on the edge (20, 20)-(30, 20). Scored 0.125 without a word before: refused by line.
    lines[5] = "20,20,30,20,30,30,25,20"
    as_polygons.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 6: the predicted polygon crosses or touches itself"):
        score_trajectory_file(as_polygons, gt, (100, 100), tmp_path / "groundtruth.txt")


@pytest.mark.parametrize(
    "lines, message",
    [
        # Another tracker's box file in the baseline layout: no initialisation, so no burn-in (it
        # scored accuracy over every frame).
        (["5,5,10,10"] * 3, "line 1: a predicted region before the first initialisation"),
        # These crashed in the EAO fragments (IndexError) or cut a fragment from a later
        # initialisation to an earlier failure.
        (["2", "0", "1", "5,5,10,10"], "line 1: a failure \\(2\\) before the first initialisation"),
        (["1", "2", "0", "2"], "line 4: a failure \\(2\\) after the failure on line 2 without a re-initialisation"),
        (["1", "2", "0", "5,5,10,10"], "line 4: a predicted region after the failure on line 2"),
        (["1", "5,5,10,10", "1", "2"], "line 3: initialised \\(1\\) again without a failure \\(2\\) since the "
                                       "initialisation on line 1"),
    ],
)
def test_trajectory_out_of_the_experiments_order_is_refused(tmp_path, lines, message):
    path = tmp_path / "seq_001.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message):
        read_vot_trajectory(path)


def test_trajectory_order_that_the_runner_writes_is_read(tmp_path):
    """0 lines may come anywhere, before the first initialisation too (`run_supervised` skips a first
    frame whose box is outside it); a failure in the last lines leaves no initialisation after it."""
    path = tmp_path / "seq_001.txt"
    path.write_text("0\n1\n5,5,10,10\n0\n2\n0\n1\n5,5,10,10\n2\n0\n")
    status, _ = read_vot_trajectory(path)
    assert status.tolist() == [0, 1, T, 0, 2, 0, 1, T, 2, 0]


def test_polygon_reader_keeps_corners(tmp_path):
    path = tmp_path / "groundtruth.txt"
    path.write_text("10,0,20,10,10,20,0,10\n5\t6 7,8\nNaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN\n")
    polygons = read_vot_polygons(path)
    np.testing.assert_array_equal(polygons[0], DIAMOND)
    np.testing.assert_array_equal(polygons[1], [5, 6, 12, 6, 12, 14, 5, 14])  # x, y, w, h -> 4 corners
    assert np.isnan(polygons[2]).all()


def test_real_vot_polygons_match_the_box_reader(data_dir):
    path = data_dir / "tracking" / "vot2015" / "car1" / "groundtruth.txt"
    polygons = read_vot_polygons(path)
    assert polygons.shape == (252, 8)
    np.testing.assert_array_equal(polygon_to_box(polygons), read_vot_boxes(path))


def test_a_region_holding_nan_is_the_toolkits_unknown_region(tmp_path):
    """The VOT toolkit reads a box or polygon with a NaN value as the special region 0 (unknown):
    left out of the accuracy, overlap 0 in EAO, not a failure. It used to be scored as a region of
    overlap 0, pulling the accuracy down."""
    gt = np.tile(np.array([10, 10, 30, 10, 30, 30, 10, 30], np.float64), (14, 1))  # the box 10,10,20,20
    exact, half = "10,10,20,20", "10,10,20,10"  # overlap 1 and 0.5 with the ground truth
    lines = ["1", *[exact] * 9, half, "nan,nan,nan,nan", "NaN,1,2,3,4,5,6,7", half]
    path = tmp_path / "seq_001.txt"
    path.write_text("\n".join(lines) + "\n")
    status, regions = read_vot_trajectory(path)
    assert status.tolist() == [VOT_INITIALISED, *[T] * 10, VOT_SKIPPED, VOT_SKIPPED, T]
    scores, fragments = score_trajectory_file(path, gt, (100, 100), tmp_path / "groundtruth.txt")
    assert scores["scored_frames"] == 2 and scores["accuracy"] == pytest.approx(0.5)  # frames 10 and 13 only
    assert scores["failures"] == 0
    overlaps, failed = fragments[0]
    assert not failed and overlaps[11] == overlaps[12] == 0.0 and overlaps[13] == pytest.approx(0.5)
