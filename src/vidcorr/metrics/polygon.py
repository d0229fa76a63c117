"""Plane polygons for region overlaps: shoelace areas, convexity, simplicity and Sutherland-Hodgman
clipping by a convex polygon (or an axis-aligned rectangle).

`vidcorr.metrics.vot` scores VOT regions with these (boxes, rotated boxes and four-corner ground
truth), exactly rather than by rasterising. Points are (x, y) floats; a polygon is (K, 2) corners
in order, either orientation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


Point = tuple[float, float]


def _cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o): > 0 when b lies to the left of the line o -> a (y up)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _points(points: np.ndarray) -> list[Point]:
    return [(float(x), float(y)) for x, y in np.asarray(points, np.float64).reshape(-1, 2)]


def _signed_area(p: Sequence[Point]) -> float:
    """Shoelace sum of a polygon: +area counter-clockwise (y up), -area clockwise."""
    return sum(p[i - 1][0] * p[i][1] - p[i][0] * p[i - 1][1] for i in range(len(p))) / 2


def polygon_area(points: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula): (K, 2) vertices in order -> float >= 0."""
    p = _points(points)
    return abs(_signed_area(p)) if len(p) >= 3 else 0.0


def _corners(points: np.ndarray) -> list[Point]:
    """The polygon's vertices without repeats of the one before (the last compared with the first):
    a repeated corner hides the turn there from the convexity test."""
    p = _points(points)
    return [v for i, v in enumerate(p) if v != p[i - 1]] if len(p) > 1 else p


def polygon_convex(points: np.ndarray) -> bool:
    """Whether a polygon (K, 2), K >= 3, is convex: every turn along its outline goes the same way
    (straight corners allowed)."""
    p = _corners(points)
    turns = [_cross(p[i - 2], p[i - 1], p[i]) for i in range(len(p))]
    return len(p) >= 3 and (all(t >= 0 for t in turns) or all(t <= 0 for t in turns))


def clip_to_convex(points: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clipping of a simple polygon (K, 2) by a convex polygon ``clip`` (L, 2) of
    either orientation -> (M, 2) vertices of the part inside, M = 0 when nothing is."""
    window = _points(clip)
    inner = 1.0 if _signed_area(window) > 0 else -1.0  # the side of each edge the inside lies on
    poly = _points(points)
    for i in range(len(window)):
        if not poly:
            break
        a, b = window[i - 1], window[i]
        side = [inner * _cross(a, b, v) for v in poly]
        clipped = []
        for j, cur in enumerate(poly):
            prev = poly[j - 1]
            if (side[j] >= 0) != (side[j - 1] >= 0):  # the edge crosses the line: keep the crossing point
                t = side[j - 1] / (side[j - 1] - side[j])
                clipped.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if side[j] >= 0:
                clipped.append(cur)
        poly = clipped
    return np.array(poly, np.float64).reshape(-1, 2)


def clip_to_rectangle(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """`clip_to_convex` by the rectangle [x0, x1] x [y0, y1]: (K, 2) -> (M, 2)."""
    return clip_to_convex(points, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))


# Two edges of `polygon_simple` closer than TOUCH_TOLERANCE times the polygon's largest coordinate
# magnitude touch. Predictions are floats read from decimals (the toolkit's %.4f) or computed from a
# rotated box: a corner that lies exactly on an edge in decimals lands a few ulps of the coordinates
# off it in binary, and the distance computed adds a few more, either way (an exact test would call
# the same touch a crossing or a miss by chance). Rounding grows with the coordinates' magnitude,
# not the polygon's size, hence the scale. 1e-12 (some 4500 ulps) covers it with margin and stays far
# below anything a tracker means (1e-9 px for coordinates in the thousands; files resolve 1e-4 px).
TOUCH_TOLERANCE = 1e-12


def polygon_simple(points: np.ndarray) -> bool:
    """Whether a polygon (K, 2) is simple: no two edges that are not neighbours cross, touch or
    overlap (a corner on another edge, collinear edges sharing a piece: corners out of order make a
    bow tie, whose shoelace area is not its area), and no edge runs back over its neighbour (a turn
    of 180 degrees at their shared corner: an outline traced back over itself).

    Legal: repeated consecutive corners (one corner, as `_corners` takes them), a corner in the
    middle of a straight edge. An outline whose corners all lie on one line (a point; a segment, such
    as a box of width 0 written as its 4 corners, or a box of a few 1e-5 px whose 4-decimal corners
    round onto one line) encloses nothing under any reading: simple, of area 0, scored as the same
    box of size 0 is. Distances are compared with `TOUCH_TOLERANCE`.

    Not simple: a polygon with a NaN or infinite coordinate, which has no outline to test (its
    distances compare false, so every test passed and it was called simple). VOT writes a region it
    has not got with NaN (the toolkit's "unknown"); `vidcorr.metrics.vot.region_overlap` scores such a
    region 0 before asking this.
    """
    p = _corners(points)
    if not all(math.isfinite(c) for corner in p for c in corner):
        return False
    tol = TOUCH_TOLERANCE * max((abs(c) for corner in p for c in corner), default=0.0)
    p = _distinct_corners(p, tol)
    n = len(p)
    if n < 3 or _on_one_line(p, tol):
        return True
    for i in range(n):  # the edges p[i-1] -> p[i] -> p[i+1] fold when either end lies on the other edge
        a, b, c = p[i - 1], p[i], p[(i + 1) % n]
        if _segment_distance(c, a, b) <= tol or _segment_distance(a, b, c) <= tol:
            return False
    edges = [(p[i - 1], p[i]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:  # neighbours through the first corner
                continue
            if _segments_meet(edges[i], edges[j], tol):
                return False
    return True


def _distinct_corners(p: list[Point], tol: float) -> list[Point]:
    """`_corners` with corners within ``tol`` of the one kept before (the last compared with the
    first) dropped too: a rounding-level edge would touch its neighbours' neighbours."""
    kept: list[Point] = []
    for v in p:
        if not kept or _distance(v, kept[-1]) > tol:
            kept.append(v)
    while len(kept) > 1 and _distance(kept[-1], kept[0]) <= tol:
        kept.pop()
    return kept


def _on_one_line(p: list[Point], tol: float) -> bool:
    """Whether every corner (finite) lies within ``tol`` of the line through the two farthest apart."""
    u, v = max(((u, v) for u in p for v in p), key=lambda uv: _distance(*uv))
    length = _distance(u, v)  # > 0: the corners are distinct
    return all(abs(_cross(u, v, q)) / length <= tol for q in p)


def _distance(u: Point, v: Point) -> float:
    return math.hypot(u[0] - v[0], u[1] - v[1])


def _segment_distance(q: Point, a: Point, b: Point) -> float:
    """Distance from the point q to the segment a-b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = ((q[0] - a[0]) * dx + (q[1] - a[1]) * dy) / length2 if length2 > 0 else 0.0
    t = min(max(t, 0.0), 1.0)
    return _distance(q, (a[0] + t * dx, a[1] + t * dy))


def _segments_meet(ab: tuple[Point, Point], cd: tuple[Point, Point], tol: float) -> bool:
    """Whether two segments share a point, up to ``tol``: they cross strictly, or an end of one lies
    on the other (a touch, a collinear overlap). Segments that do not cross are nearest at an end of
    one of them, so the four end distances decide the rest."""
    (a, b), (c, d) = ab, cd
    if _cross(a, b, c) * _cross(a, b, d) < 0 and _cross(c, d, a) * _cross(c, d, b) < 0:
        return True
    ends = (_segment_distance(c, a, b), _segment_distance(d, a, b),
            _segment_distance(a, c, d), _segment_distance(b, c, d))
    return min(ends) <= tol
