"""VOT's supervised (baseline) experiment: polygon overlap, failure / re-initialisation / burn-in rules
with a scripted tracker, the trajectory file, and re-initialising the real trackers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vidcorr.dcf import DCFTracker
from vidcorr.errors import InputError
from vidcorr.evaluate.tracking import run_supervised
from vidcorr.io.tracking import (
    VOT_FAILED,
    VOT_INITIALISED,
    VOT_SKIPPED,
    VOT_TRACKED,
    read_vot_polygons,
    read_vot_trajectory,
    write_vot_trajectory,
)
from vidcorr.metrics.polygon import clip_to_convex, clip_to_rectangle, polygon_area, polygon_convex, polygon_simple
from vidcorr.metrics.vot import (
    EAO_INTERVALS,
    UnscorableRegion,
    average_supervised,
    burnin_mask,
    eao_curve,
    eao_fragments,
    eao_interval,
    eao_score,
    frame_overlaps,
    region_overlap,
    score_supervised,
)
from vidcorr.models import build_encoder
from vidcorr.track import LocaliseTracker, PatchSampler, tracker_settings

# A square turned by 45 degrees: corners (10, 0), (20, 10), (10, 20), (0, 10); area 200. Its axis-aligned
# box is [0, 20] x [0, 20] (area 400).
DIAMOND = np.array([10, 0, 20, 10, 10, 20, 0, 10], np.float64)


def _square(x, y, side):
    return np.array([x, y, x + side, y, x + side, y + side, x, y + side], np.float64)


# --- overlap of a box and a polygon --------------------------------------------------------------------

def test_box_polygon_overlap_by_hand():
    # The box [10, 20]^2 holds the diamond's lower-right quarter, the triangle (10,10),(20,10),(10,20):
    # area 50, so IoU = 50 / (200 + 100 - 50) = 0.2 (the axis-aligned box of the diamond would give 0.25).
    assert region_overlap(np.array([10, 10, 10, 10.]), DIAMOND, (100, 100)) == pytest.approx(0.2)
    # Bounded to a 12 px wide image: the diamond keeps 200 - 64 = 136 (the triangle x > 12 has base 16,
    # height 8), the box [10, 12] x [10, 20] 20, their intersection int_0^2 (10 - u) du = 18:
    # IoU = 18 / (136 + 20 - 18).
    assert region_overlap(np.array([10, 10, 10, 10.]), DIAMOND, (12, 100)) == pytest.approx(18 / 138)
    # Inside the diamond's bounding box but outside the diamond: no overlap (a VOT failure).
    assert region_overlap(np.array([0, 0, 4, 4.]), DIAMOND, (100, 100)) == 0.0
    assert region_overlap(np.array([0, 0, 20, 20.]), _square(0, 0, 20), (100, 100)) == pytest.approx(1.0)
    # A box entirely outside the image overlaps nothing, even a ground truth that reaches out there.
    assert region_overlap(np.array([-30, -30, 10, 10.]), _square(-25, -25, 40), (100, 100)) == 0.0


def test_clipping_and_area_of_a_non_convex_polygon():
    ell = np.array([[0, 0], [10, 0], [10, 5], [5, 5], [5, 10], [0, 10]], np.float64)  # an L of area 75
    assert polygon_area(ell) == 75.0
    # [2, 8]^2 keeps [2, 8] x [2, 5] (18) and [2, 5] x [5, 8] (9).
    assert polygon_area(clip_to_rectangle(ell, 2, 2, 8, 8)) == pytest.approx(27.0)
    assert len(clip_to_rectangle(ell, 20, 20, 30, 30)) == 0


def test_polygon_predictions_overlap_like_boxes_and_by_hand():
    # A rotated-box tracker's polygon: the same box written as its four corners gives the box's overlap,
    # in either orientation.
    corners = np.array([10, 10, 20, 10, 20, 20, 10, 20], np.float64)
    for region in (corners, corners.reshape(4, 2)[::-1].ravel()):
        assert region_overlap(region, DIAMOND, (100, 100)) == pytest.approx(0.2)
    # The diamond predicted for the square [0, 20]^2 lies inside it: IoU = 200 / 400; and the reverse.
    assert region_overlap(DIAMOND, _square(0, 0, 20), (100, 100)) == pytest.approx(0.5)
    assert region_overlap(_square(0, 0, 20), DIAMOND, (100, 100)) == pytest.approx(0.5)
    # Bounded to the image like a box: the diamond in a 10 px wide image keeps its left half (100), the
    # square [0, 10] x [0, 20] (200) holds it: IoU 0.5 again.
    assert region_overlap(DIAMOND, _square(0, 0, 20), (10, 100)) == pytest.approx(0.5)
    # A non-convex prediction against a convex ground truth: the L of area 75 inside [0, 10]^2 -> 0.75.
    ell = np.array([0, 0, 10, 0, 10, 5, 5, 5, 5, 10, 0, 10], np.float64)
    assert region_overlap(ell, _square(0, 0, 10), (100, 100)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both non-convex"):
        region_overlap(ell, ell + 1, (100, 100))
    # Corners out of order (top-left, top-right, bottom-left, bottom-right) make a bow tie, whose
    # clipped shoelace area scored 0 without a word: refused.
    bow_tie = np.array([10, 10, 20, 10, 10, 20, 20, 20], np.float64)
    assert not polygon_simple(bow_tie.reshape(4, 2)) and polygon_simple(corners.reshape(4, 2))
    assert polygon_simple(ell.reshape(-1, 2))
    # A repeated inward corner hid its turn: the L was taken for convex and scored 0.1667.
    ell_repeat = np.array([0, 0, 10, 0, 10, 5, 5, 5, 5, 5, 5, 10, 0, 10], np.float64)
    assert not polygon_convex(ell_repeat.reshape(-1, 2))
    assert region_overlap(ell_repeat, _square(0, 0, 10), (100, 100)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="the predicted polygon crosses or touches itself"):
        region_overlap(bow_tie, _square(10, 10, 10), (100, 100))


# Outlines whose edges meet without crossing strictly: their shoelace area is not the area of any
# region (the bow tie through a corner has area 0, a folded-back edge adds nothing), so they are refused.
NOT_SIMPLE = {
    # Two triangles meeting at the corner (5, 5), which lies on the edge (0, 0)-(10, 10).
    "bow tie through a corner": [0, 0, 10, 10, 10, 0, 5, 5, 0, 10],
    # The same in decimal coordinates: (52.7, 230.6) is the middle of (3.3, 187.5)-(102.1, 273.7) in
    # decimals but not in binary, where an exact test finds neither a crossing nor a touch.
    "bow tie through a corner, decimals": [3.3, 187.5, 102.1, 273.7, 145.2, 224.3, 52.7, 230.6, -39.8, 236.9],
    "corner on a non-adjacent edge": [0, 0, 10, 0, 10, 10, 5, 0, 0, 10],
    "figure eight through a repeated corner": [0, 0, 10, 0, 5, 5, 10, 10, 0, 10, 5, 5],
    # (6, 0) -> (3, 0) runs along (0, 0) -> (10, 0): two non-adjacent edges overlapping collinearly.
    "collinear overlap": [0, 0, 10, 0, 10, 4, 6, 4, 6, 0, 3, 0, 3, -4, 0, -4],
    # A 4-gon with a corner on a non-adjacent edge: (10, 5) on (10, 0)-(10, 10), the edge before
    # turning back over it.
    "edge folded back, 4 corners": [0, 0, 10, 0, 10, 10, 10, 5],
    "edge traced back": [0, 0, 10, 0, 10, 10, 10, 0],
    "edge folded back past the corner before": [0, 0, 10, 0, 10, 10, 10, -5],
}


def _every_start_and_direction(polygon):
    corners = np.asarray(polygon, np.float64).reshape(-1, 2)
    for shift in range(len(corners)):
        turned = np.roll(corners, shift, axis=0)
        yield turned
        yield turned[::-1]


@pytest.mark.parametrize("name", NOT_SIMPLE)
def test_outlines_that_touch_or_fold_back_are_refused(name):
    for corners in _every_start_and_direction(NOT_SIMPLE[name]):
        assert not polygon_simple(corners)
        with pytest.raises(UnscorableRegion, match="the predicted polygon crosses or touches itself"):
            region_overlap(corners.ravel(), _square(0, 0, 10), (100, 100))


SIMPLE = {
    "box as 4 corners": [10, 10, 20, 10, 20, 20, 10, 20],
    "rectangle with a corner in the middle of an edge": [0, 0, 5, 0, 10, 0, 10, 10, 0, 10],
    "rectangle with the middle of every edge": [0, 0, 5, 0, 10, 0, 10, 5, 10, 10, 5, 10, 0, 10, 0, 5],
    "repeated corners": [0, 0, 10, 0, 10, 0, 10, 10, 0, 10, 0, 0],
    "regular hexagon": np.ravel([(np.cos(a), np.sin(a)) for a in np.arange(6) * np.pi / 3]) * 7 + 20,
    "L": [0, 0, 10, 0, 10, 5, 5, 5, 5, 10, 0, 10],
    # (4, 4)-(6, 4) and (2, 4)-(0, 4) lie on one line but do not meet.
    "steps with non-adjacent collinear edges": [0, 0, 4, 0, 4, 4, 6, 4, 6, 8, 2, 8, 2, 4, 0, 4],
    # 0.0001 px (a trajectory file's resolution) above the edge (0, 0)-(10, 0): no touch.
    "corner just off a non-adjacent edge": [0, 0, 10, 0, 10, 10, 5, 0.0001, 0, 10],
}


@pytest.mark.parametrize("name", SIMPLE)
def test_simple_outlines_are_accepted(name):
    for corners in _every_start_and_direction(SIMPLE[name]):
        assert polygon_simple(corners)
        region_overlap(corners.ravel(), _square(0, 0, 10), (100, 100))  # scored, no refusal


def test_convex_and_degenerate_outlines_are_accepted(data_dir):
    rng = np.random.default_rng(1)
    for _ in range(50):  # rotated boxes, far from the origin too, and convex hulls of random points
        box = _rotated_box(rng.uniform(-1e4, 1e4, 2), rng.uniform(0.01, 300, 2), rng.uniform(0, np.pi))
        assert polygon_convex(box) and polygon_simple(box)
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 12))))
        hull = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(1, 100) + rng.uniform(0, 500, 2)
        assert polygon_convex(hull) and polygon_simple(hull)
    # Fewer than 3 distinct corners enclose nothing: area 0, scored 0 as the same box of size 0 is (a
    # box line of width 0 in a polygon trajectory becomes such corners), not refused.
    for corners, box in (([5, 0, 5, 0, 5, 10, 5, 10], [5, 0, 0, 10]), ([5, 5] * 4, [5, 5, 0, 0])):
        assert polygon_simple(np.reshape(corners, (-1, 2)))
        assert region_overlap(np.array(corners, np.float64), _square(0, 0, 10), (100, 100)) == 0.0
        assert region_overlap(np.array(box, np.float64), _square(0, 0, 10), (100, 100)) == 0.0
    # So do corners all on one line: a segment traced back and forth, collinear corners, and a
    # rotated box of ~1e-5 px whose 4-decimal corners round onto one line (its file was unscorable).
    for corners in ([0, 0, 10, 0, 0, 0, 10, 0], [0, 0, 5, 0, 10, 0],
                    [952.9149, 617.6182, 952.9149, 617.6181, 952.9149, 617.618, 952.9149, 617.618]):
        for turned in _every_start_and_direction(corners):
            assert polygon_simple(turned)
            assert region_overlap(turned.ravel(), _square(0, 0, 10), (100, 100)) == 0.0
    tiny = _rotated_box(np.array([952.9149, 617.6181]), np.array([3e-5, 2e-4]), 0.3)
    assert polygon_simple(np.round(tiny, 4)) and polygon_simple(tiny)
    # Every annotated ground-truth polygon of the shared VOT sequences.
    for path in sorted((data_dir / "tracking" / "vot2015").glob("*/groundtruth.txt")):
        polygons = read_vot_polygons(path)
        assert all(polygon_simple(p.reshape(-1, 2)) for p in polygons if np.isfinite(p).all()), path


def test_convex_clipping_matches_a_rasterised_intersection():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = _rotated_box(rng.uniform(10, 30, 2), rng.uniform(5, 20, 2), rng.uniform(0, np.pi))
        b = _rotated_box(rng.uniform(10, 30, 2), rng.uniform(5, 20, 2), rng.uniform(0, np.pi))
        assert polygon_convex(a) and polygon_convex(b[::-1])
        exact = polygon_area(clip_to_convex(a, b))
        assert exact == pytest.approx(polygon_area(clip_to_convex(b, a)), abs=1e-9)
        # 0.05 px cells: the exact area within the rasterised outline's error
        ys, xs = np.mgrid[0:40:0.05, 0:40:0.05] + 0.025
        inside = _inside_convex(a, xs, ys) & _inside_convex(b, xs, ys)
        assert exact == pytest.approx(inside.sum() * 0.05 ** 2, abs=1.0)
    assert not polygon_convex(np.array([[0, 0], [10, 0], [10, 5], [5, 5], [5, 10], [0, 10]], np.float64))


def _rotated_box(centre, size, angle) -> np.ndarray:
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.asarray(size) / 2 @ turn.T + centre


def _inside_convex(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    sides = [(b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) for a, b in zip(poly, np.roll(poly, -1, 0))]
    return np.all([s >= 0 for s in sides], axis=0) | np.all([s <= 0 for s in sides], axis=0)


# --- the supervised experiment with a scripted tracker --------------------------------------------------

GT_SIDE, GT_X, GT_Y, FRAME_WH = 20.0, 40.0, 40.0, (100, 100)


class ScriptedTracker:
    """Returns the ground-truth square shifted right by ``shifts[t]`` px, or ``FAR`` where shifts[t] is
    None (zero overlap). Reads the frame index from pixel (0, 0); records every init."""

    FAR = (0.0, 0.0, 5.0, 5.0)

    def __init__(self, shifts):
        self.shifts, self.inits = shifts, []

    def init(self, frame, box):
        self.inits.append((int(frame[0, 0, 0]), box))

    def update(self, frame):
        shift = self.shifts[int(frame[0, 0, 0])]
        return self.FAR if shift is None else (GT_X + shift, GT_Y, GT_SIDE, GT_SIDE)


def _frames(n):
    for t in range(n):
        frame = np.zeros((FRAME_WH[1], FRAME_WH[0], 3), np.uint8)
        frame[0, 0, 0] = t
        yield frame


def _run(shifts):
    n = len(shifts)
    boxes = np.tile([GT_X, GT_Y, GT_SIDE, GT_SIDE], (n, 1))
    polygons = np.tile(_square(GT_X, GT_Y, GT_SIDE), (n, 1))
    tracker = ScriptedTracker(shifts)
    status, pred, frame_wh = run_supervised(tracker, _frames(n), boxes, polygons)
    return tracker, status, pred, polygons, frame_wh


def test_failure_reinitialisation_and_burnin_by_hand():
    """40 frames. Frames 1-9 are in frame 0's burn-in (shift 10 px: IoU 10/30), 10-14 are scored
    (shift 5: IoU 15/25 = 0.6), frame 15 fails, 16-19 are skipped, 20 re-initialises, 21-29 are
    burn-in again (IoU 1/3), 30-39 are scored (shift 0: IoU 1). Accuracy = (5 x 0.6 + 10 x 1) / 15."""
    shifts = [10] * 10 + [5] * 5 + [None] + [10] * 14 + [0] * 10
    tracker, status, pred, polygons, frame_wh = _run(shifts)
    expected = ([VOT_INITIALISED] + [VOT_TRACKED] * 14 + [VOT_FAILED] + [VOT_SKIPPED] * 4 + [VOT_INITIALISED]
                + [VOT_TRACKED] * 19)
    assert status.tolist() == expected
    assert [t for t, _ in tracker.inits] == [0, 20]  # re-initialised 5 frames after the failure
    assert tracker.inits[1][1] == (GT_X, GT_Y, GT_SIDE, GT_SIDE)  # on the ground truth of that frame
    assert np.isnan(pred[status != VOT_TRACKED]).all() and np.isfinite(pred[status == VOT_TRACKED]).all()
    assert frame_wh == FRAME_WH
    scores = score_supervised(status, pred, polygons, frame_wh)
    assert scores == {"accuracy": pytest.approx(13 / 15), "failures": 1, "frames": 40, "scored_frames": 15,
                      "initialisations": 2}
    # Without the burn-in the 18 frames at IoU 1/3 would count: (18/3 + 3 + 10) / 33.
    assert score_supervised(status, pred, polygons, frame_wh, burnin=1)["accuracy"] == pytest.approx(19 / 33)


def test_failure_near_the_end_and_twice():
    """A failure on frame 12 restarts on 17; the next on 28 would restart on 33, past the end."""
    shifts = [0] * 12 + [None] + [0] * 15 + [None] + [0] * 2
    tracker, status, _, _, _ = _run(shifts)
    assert [t for t, _ in tracker.inits] == [0, 17]
    assert status[12] == status[28] == VOT_FAILED
    assert (status[13:17] == VOT_SKIPPED).all() and (status[29:] == VOT_SKIPPED).all()
    assert burnin_mask(status).nonzero()[0].tolist() == list(range(10)) + list(range(17, 27))


def test_failure_is_judged_on_the_polygon_not_its_bounding_box():
    """A prediction in the corner of the diamond's bounding box overlaps the box (16/400) but not the
    diamond: a failure. A frame without ground truth (NaN) cannot fail and is not scored."""

    class Corner:
        def init(self, frame, box):
            pass

        def update(self, frame):
            return (0.0, 0.0, 4.0, 4.0)

    polygons = np.tile(DIAMOND, (4, 1))
    polygons[1] = np.nan
    boxes = np.tile([0.0, 0.0, 20.0, 20.0], (4, 1))
    status, pred, frame_wh = run_supervised(Corner(), _frames(4), boxes, polygons)
    assert status.tolist() == [VOT_INITIALISED, VOT_TRACKED, VOT_FAILED, VOT_SKIPPED]
    assert score_supervised(status, pred, polygons, frame_wh, burnin=1)["scored_frames"] == 0


def test_averages_over_sequences():
    per_sequence = {"a": {"accuracy": 0.5, "failures": 3, "scored_frames": 10},
                    "b": {"accuracy": 0.8, "failures": 0, "scored_frames": 30}}
    # accuracy (0.5 + 0.8) / 2; pooled (0.5 x 10 + 0.8 x 30) / 40; robustness 3 failures / 2 sequences.
    assert average_supervised(per_sequence) == {"accuracy": pytest.approx(0.65),
                                                "accuracy_pooled": pytest.approx(0.725),
                                                "robustness": 1.5, "failures": 3}


# --- files ---------------------------------------------------------------------------------------------

T = VOT_TRACKED


def test_eao_fragments_by_hand():
    """One fragment per initialisation: up to (not including) its failure, the last to the end; a
    trajectory that never failed is one fragment, its code-1 first frame included."""
    status = np.array([1, T, T, 2, 0, 0, 0, 0, 1, T, T])
    overlaps = np.array([0, .6, .4, 0, 0, 0, 0, 0, 0, .8, .9])
    (first, failed), (last, ended) = eao_fragments(status, overlaps)
    np.testing.assert_array_equal(first, [0, .6, .4])
    np.testing.assert_array_equal(last, [0, .8, .9])
    assert failed and not ended
    failing_at_the_end = eao_fragments(status[:4], overlaps[:4])
    assert len(failing_at_the_end) == 1 and failing_at_the_end[0][1]
    (whole, failed), = eao_fragments(np.array([1, T, T]), np.array([0, .5, .7]))
    np.testing.assert_array_equal(whole, [0, .5, .7])
    assert not failed
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float64)
    polygons = np.array([_square(0, 0, 10), _square(0, 0, 10), _square(5, 0, 10), [np.nan] * 8])
    np.testing.assert_allclose(frame_overlaps(np.array([1, T, T, T]), boxes, polygons, (100, 100)),
                               [0, 1, 50 / 150, 0])  # a code line and unknown ground truth: 0


def test_eao_curve_and_score_by_hand():
    """A failed fragment counts with zeros after its failure at every length; one that reached the
    end only where it has frames; the first frame (initialisation) is left out of each mean."""
    curve = eao_curve([(np.array([0, .5, .5]), True), (np.array([0, 1.0]), False)])
    np.testing.assert_allclose(curve, [0, .75, .5])
    assert eao_score(curve, (1, 2)) == pytest.approx(.625)
    assert eao_score(curve, (1, 10)) == pytest.approx(.625)  # cut at the curve's end, as the toolkit's slice
    assert eao_score(curve, (5, 9)) is None
    failed_short = eao_curve([(np.array([0, 1.0]), True), (np.array([0, 1, 1, 1.0]), False)])
    np.testing.assert_allclose(failed_short, [0, 1, .75, 2 / 3])  # mean(1, 0) with 1; mean(1, 0, 0) with 1
    assert eao_interval("VOT2018") == ("vot2018", (100, 356)) and eao_interval((3, 9)) == (None, (3, 9))
    assert EAO_INTERVALS["vot2015"] == (108, 371)
    for bad in ("vot2014", (9, 3), (-1, 4)):
        with pytest.raises(ValueError):
            eao_interval(bad)


def _toolkit_eao_curve(fragments):
    """The toolkit's curve, column by column (vot/analysis/supervised.py compute_eao_curve, restated):
    a running mean over frames 1..j of the zero-padded rows, averaged over the rows that count at j."""
    length = max(len(o) for o, _ in fragments)
    curve = []
    for j in range(length):
        values, weights = [], []
        for overlaps, failed in fragments:
            row = np.zeros(length)
            row[:len(overlaps)] = overlaps
            if failed or j < len(overlaps):
                values.append(row[j] if j == 0 else row[1:j + 1].mean())
                weights.append(1.0)
        curve.append(np.dot(values, weights) / sum(weights))
    return np.array(curve)


def test_eao_curve_equals_the_toolkit_loop_on_random_trajectories():
    rng = np.random.default_rng(0)
    fragments = []
    for _ in range(12):
        n = int(rng.integers(20, 200))
        status = np.full(n, T)
        status[0] = VOT_INITIALISED
        for failure in sorted(rng.choice(np.arange(2, n - 6), size=int(rng.integers(0, 4)), replace=False)):
            if status[failure] == T and status[failure - 1] in (T, VOT_INITIALISED):
                status[failure] = VOT_FAILED
                status[failure + 1:failure + 5] = VOT_SKIPPED
                status[failure + 5] = VOT_INITIALISED
        overlaps = np.where(status == T, rng.random(n), 0.0)
        fragments += eao_fragments(status, overlaps)
    np.testing.assert_allclose(eao_curve(fragments), _toolkit_eao_curve(fragments), rtol=0, atol=1e-12)


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
    from vidcorr.evaluate.tracking_results import score_trajectory_file

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
    from vidcorr.io.tracking import polygon_to_box, read_vot_boxes

    path = data_dir / "tracking" / "vot2015" / "car1" / "groundtruth.txt"
    polygons = read_vot_polygons(path)
    assert polygons.shape == (252, 8)
    np.testing.assert_array_equal(polygon_to_box(polygons), read_vot_boxes(path))


# --- re-initialising the real trackers ------------------------------------------------------------------

def _texture_frames(n=9, h=96, w=128, step=3, seed=0):
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.random((h, w + step * n, 3)), (6, 6, 0))
    big = ((big - big.min()) / np.ptp(big) * 255).astype(np.uint8)
    return [np.ascontiguousarray(big[:, step * (n - t): step * (n - t) + w]) for t in range(n)]


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_reinitialised_tracker_equals_a_fresh_one(tracker):
    """The baseline re-uses one tracker object: `init` must forget everything from before."""
    frames = _texture_frames()
    settings = tracker_settings(tracker, **({"input_size": 64} if tracker == "dcf" else {}))
    sampler = PatchSampler(build_encoder("lab-pixels"), settings.l2_normalise)
    cls = LocaliseTracker if tracker == "localise" else DCFTracker
    used, fresh = cls(sampler, settings), cls(sampler, settings)
    used.init(frames[0], (30.0, 30.0, 32.0, 24.0))
    for frame in frames[1:5]:
        used.update(frame)
    restart = (50.0, 40.0, 28.0, 28.0)
    used.init(frames[5], restart)
    fresh.init(frames[5], restart)
    assert [used.update(f) for f in frames[6:]] == [fresh.update(f) for f in frames[6:]]
