"""VOT region overlap: box and polygon IoU by hand, clipping, and which outlines are refused as not simple."""

from __future__ import annotations

import numpy as np
import pytest
from vot_helpers import DIAMOND, _square

from vidcorr.io.tracking import read_vot_polygons
from vidcorr.metrics.polygon import clip_to_convex, clip_to_rectangle, polygon_area, polygon_convex, polygon_simple
from vidcorr.metrics.vot import UnscorableRegion, region_overlap


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


def test_a_polygon_with_a_nan_or_infinite_corner_is_not_simple_and_overlaps_nothing():
    """polygon_simple called a polygon with a NaN corner simple (every distance test compared false).
    A region with a NaN value is the VOT toolkit's "unknown" region, overlap 0 with anything: so
    region_overlap says, for boxes and polygons, rather than refusing it as a self-crossing outline."""
    square = np.array([0, 0, 10, 0, 10, 10, 0, 10], np.float64)
    for bad in (np.nan, np.inf, -np.inf):
        for at in range(8):
            corners = square.copy()
            corners[at] = bad
            assert not polygon_simple(corners.reshape(4, 2)), (bad, at)
            assert region_overlap(corners, square, (100, 100)) == 0.0
        assert region_overlap(np.array([0, 0, 10, bad]), square, (100, 100)) == 0.0
    assert not polygon_simple(np.full((4, 2), np.nan))
    assert polygon_simple(square.reshape(4, 2)) and region_overlap(square, square, (100, 100)) == 1.0


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
