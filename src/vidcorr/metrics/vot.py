"""VOT's supervised ("baseline") experiment: region overlap, failures, accuracy and robustness.

Semantics of the VOT2015 toolkit (Kristan et al., ICCV-W 2015; the MATLAB toolkit
``estimate_accuracy.m`` / ``estimate_failures.m``, its Python successor ``vot/analysis/supervised.py``
and pysot ``toolkit/utils`` agree on every rule below):

* a trajectory holds, per frame, the predicted region or one of the codes 1 (the tracker was
  (re-)initialised here), 2 (it failed here), 0 (skipped: no prediction);
* **overlap** of a predicted region (a box, or a polygon as rotated-box trackers write) and the
  ground-truth polygon, both bounded to the image [0, W] x [0, H]; a frame whose overlap is 0
  (``<= failure_overlap = 0``) is a **failure**, and the tracker is re-initialised on the ground
  truth ``SKIP_INITIALIZE = 5`` frames later (the runner, `vidcorr.evaluate.tracking.run_supervised`);
* **accuracy** of a sequence = mean overlap over the frames with a predicted region, leaving out the
  ``BURNIN = 10`` frames starting at every initialisation (the initialisation frame and the 9 after
  it); 0 when no frame is left (the toolkits' convention);
* **failures** of a sequence = the number of frames coded 2.

The toolkit rasterises both regions into pixel masks (trax ``region.c``, ``compute_polygon_overlap``:
corners rounded, boundary pixels included) and counts pixels; `region_overlap` intersects them
exactly (Sutherland-Hodgman clipping by the image and of one region by the other, which must be
convex: a box, a rotated box, VOT's four-corner ground truth; shoelace areas), so it needs no
image-sized masks. The difference lives in the outline pixels, so it shrinks with region
size: on the real VOT2015 runs of docs/tracking.md a Python port of that rasteriser moved
per-sequence accuracies by at most 0.005 and single frames by up to 0.043. Regions that touch or
overlap by less than about a pixel can count as a failure under one rule and not the other.

Over sequences (`average_supervised`): ``accuracy`` and ``robustness`` are the means of the
per-sequence accuracies and failure counts (the VOT2015 toolkit's raw scores: per-sequence aspects,
then the mean over them), ``failures`` their sum; ``accuracy_pooled`` is the mean over all scored
frames of all sequences (pysot's ``AccuracyRobustnessBenchmark`` and the later MATLAB toolkit).
Our trackers are deterministic, so one repetition stands for VOT's 15 (the toolkit itself stops
after 3 identical runs).

**Expected average overlap** (EAO, `eao_fragments`, `eao_curve`, `eao_score`; the Python toolkit's
``supervised_eao_curve`` / ``supervised_eao_score``): every trajectory is cut into fragments, one
per initialisation: from the initialisation frame up to (not including) its failure, or to the end
of the sequence for the last one that never failed. Each frame of a fragment has its bounded
overlap, 0 on code lines. The curve's value at length n is the weighted mean over fragments of the
average overlap of frames 1..n (the initialisation frame left out), where a failed fragment counts
with zeros after its failure at every length and one that reached the sequence end only at lengths
it covers. EAO is the mean of the curve over a sequence-length interval that the VOT committee fixed
per challenge from its dataset's length distribution (`EAO_INTERVALS`, from the toolkit's stack
files); the curve is defined up to the longest fragment, so an interval beyond it is cut there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vidcorr.io.tracking import VOT_FAILED, VOT_INITIALISED, VOT_TRACKED

SKIP_INITIALIZE = 5  # VOT2013-2019 baseline stacks: re-initialise 5 frames after a failure
BURNIN = 10  # frames left out of the accuracy from every (re-)initialisation on, that frame included
Fragment = tuple[np.ndarray, bool]  # one EAO fragment: overlaps (L,), whether it ended in a failure

# EAO's sequence-length interval (low, high), 0-based indices of the curve, both included: the
# baseline experiment's `supervised_eao_score` in the VOT toolkit's stack files (votchallenge/toolkit
# vot/stack/vot20xx.yaml). VOT2013/2014 defined no EAO.
EAO_INTERVALS: dict[str, tuple[int, int]] = {
    "vot2015": (108, 371),
    "vot2016": (108, 371),
    "vot2017": (100, 356),
    "vot2018": (100, 356),
    "vot2019": (46, 291),
}


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


def polygon_valid(polygon: np.ndarray) -> bool:
    """A ground-truth polygon (2K,) x1, y1, ... is annotated: finite corners enclosing a positive area."""
    p = np.asarray(polygon, np.float64)
    return bool(np.all(np.isfinite(p)) and polygon_area(p.reshape(-1, 2)) > 0)


def region_overlap(region: np.ndarray, polygon: np.ndarray, frame_wh: tuple[int, int]) -> float:
    """IoU of a predicted region and a polygon, both bounded to the image [0, W] x [0, H] (VOT's
    bounded overlap).

    region: (4,) box x, y, w, h, 0-based continuous pixels, or (2K,) polygon x1, y1, x2, y2, ...
    (K >= 3; rotated-box trackers write them) in the same coordinates. polygon: (2K,) ground truth
    (VOT's). frame_wh: (W, H). Returns a value in [0, 1]; 0 when either region has no area inside
    the image. Two polygons are intersected by clipping one by the other, which needs one of them
    convex (rotated boxes and VOT's four-corner ground truth are); `UnscorableRegion` (a ValueError)
    when neither is, or when the predicted polygon crosses or touches itself (not `polygon_simple`).
    """
    values = np.asarray(region, np.float64).reshape(-1)
    width, height = frame_wh
    gt = clip_to_rectangle(np.asarray(polygon, np.float64).reshape(-1, 2), 0.0, 0.0, width, height)
    if len(values) == 4:  # the box bounded to the image is a rectangle again: one clip intersects
        x, y, w, h = values
        bx0, by0 = max(x, 0.0), max(y, 0.0)
        bx1, by1 = min(x + w, float(width)), min(y + h, float(height))
        area = max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0)
        inter = polygon_area(clip_to_rectangle(gt, bx0, by0, bx1, by1)) if area > 0 else 0.0
    else:
        if not polygon_simple(values.reshape(-1, 2)):  # a bow tie's shoelace area is not its area
            raise UnscorableRegion("the predicted polygon crosses or touches itself (corners out of order, or an "
                                   "edge run back over the one before?)")
        predicted = clip_to_rectangle(values.reshape(-1, 2), 0.0, 0.0, width, height)
        area = polygon_area(predicted)
        inter = polygon_area(_intersect_polygons(predicted, gt)) if area > 0 and len(gt) >= 3 else 0.0
    union = polygon_area(gt) + area - inter
    return float(np.clip(inter / union, 0.0, 1.0)) if union > 0 else 0.0


class UnscorableRegion(ValueError):
    """A predicted polygon `region_overlap` cannot score: one that crosses or touches itself, or one
    that is, like the ground truth, non-convex. ``frame``: the frame's index where `frame_overlaps` met
    it."""

    def __init__(self, problem: str, frame: int | None = None) -> None:
        super().__init__(problem)
        self.frame = frame


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
    """
    p = _corners(points)
    finite = [abs(c) for corner in p for c in corner if math.isfinite(c)]
    tol = TOUCH_TOLERANCE * max(finite, default=0.0)
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
    first) dropped too: a rounding-level edge would touch its neighbours' neighbours. Corners with
    NaN are kept (their distances compare false), so they stay as `_corners` leaves them."""
    kept: list[Point] = []
    for v in p:
        if not kept or not _distance(v, kept[-1]) <= tol:
            kept.append(v)
    while len(kept) > 1 and _distance(kept[-1], kept[0]) <= tol:
        kept.pop()
    return kept


def _on_one_line(p: list[Point], tol: float) -> bool:
    """Whether every corner lies within ``tol`` of the line through the two farthest apart (False
    with a non-finite corner, left to the checks that follow as before)."""
    if not all(math.isfinite(c) for corner in p for c in corner):
        return False
    u, v = max(((u, v) for u in p for v in p), key=lambda uv: _distance(*uv))
    length = _distance(u, v)  # > 0: the corners are distinct
    return all(abs(_cross(u, v, q)) / length <= tol for q in p)


def _distance(u: Point, v: Point) -> float:
    return math.hypot(u[0] - v[0], u[1] - v[1])


def _segment_distance(q: Point, a: Point, b: Point) -> float:
    """Distance from the point q to the segment a-b (NaN where a coordinate is)."""
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
    return any(e <= tol for e in ends)  # not min(): NaN distances must compare false


def _intersect_polygons(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The intersection of a predicted polygon ``a`` (K, 2) and a ground truth ``b`` (L, 2), one of
    them convex -> (M, 2); `UnscorableRegion` otherwise."""
    if polygon_convex(a):
        return clip_to_convex(b, a)
    if polygon_convex(b):
        return clip_to_convex(a, b)
    raise UnscorableRegion("the predicted polygon and the ground truth are both non-convex: their exact "
                           "intersection needs one convex region (a box, a rotated box)")


def burnin_mask(status: np.ndarray, burnin: int = BURNIN) -> np.ndarray:
    """Frames inside a burn-in: status (T,) codes -> (T,) bool, True on each initialisation frame and
    the ``burnin - 1`` frames after it."""
    status = np.asarray(status)
    mask = np.zeros(len(status), bool)
    for start in np.flatnonzero(status == VOT_INITIALISED):
        mask[start:start + burnin] = True
    return mask


def score_supervised(
    status: np.ndarray, regions: np.ndarray, polygons: np.ndarray, frame_wh: tuple[int, int], burnin: int = BURNIN
) -> dict:
    """Accuracy and failures of one baseline trajectory.

    status: (T,) VOT codes per frame (`VOT_TRACKED` where ``regions`` holds a prediction); regions:
    (T, 4) boxes x, y, w, h or (T, 2K) polygons (ignored elsewhere); polygons: (T, 2K) ground truth;
    frame_wh: (W, H). Frames whose ground truth is not `polygon_valid` are not scored (the toolkit
    skips unknown ground truth). Returns {"accuracy", "failures", "frames", "scored_frames",
    "initialisations"}.
    """
    if not (len(status) == len(regions) == len(polygons)):
        raise ValueError(f"{len(status)} codes, {len(regions)} regions and {len(polygons)} ground-truth polygons")
    overlaps = frame_overlaps(status, regions, polygons, frame_wh)
    return score_overlaps(status, overlaps, known_ground_truth(polygons), burnin)


def score_overlaps(status: np.ndarray, overlaps: np.ndarray, known: np.ndarray, burnin: int = BURNIN) -> dict:
    """`score_supervised` from the trajectory's `frame_overlaps` (T,) and known (T,) bool, whether each
    frame's ground truth is `polygon_valid`: for a caller that needs the overlaps too (EAO)."""
    status = np.asarray(status)
    scored = (status == VOT_TRACKED) & ~burnin_mask(status, burnin) & np.asarray(known, bool)
    return {
        "accuracy": float(np.mean(overlaps[scored])) if scored.any() else 0.0,
        "failures": int((status == VOT_FAILED).sum()),
        "frames": len(status),
        "scored_frames": int(scored.sum()),
        "initialisations": int((status == VOT_INITIALISED).sum()),
    }


def known_ground_truth(polygons: np.ndarray) -> np.ndarray:
    """(T,) bool: whether each frame's ground-truth polygon is `polygon_valid`."""
    return np.array([polygon_valid(polygon) for polygon in polygons], bool)


def average_supervised(per_sequence: Mapping[str, dict]) -> dict:
    """Combine `score_supervised` results over sequences (module docstring): -> {"accuracy",
    "accuracy_pooled", "robustness", "failures"}."""
    if not per_sequence:
        raise ValueError("no sequences to average")
    seqs = list(per_sequence.values())
    scored = sum(s["scored_frames"] for s in seqs)
    return {
        "accuracy": float(np.mean([s["accuracy"] for s in seqs])),
        "accuracy_pooled": sum(s["accuracy"] * s["scored_frames"] for s in seqs) / scored if scored else 0.0,
        "robustness": float(np.mean([s["failures"] for s in seqs])),
        "failures": int(sum(s["failures"] for s in seqs)),
    }


def frame_overlaps(status: np.ndarray, regions: np.ndarray, polygons: np.ndarray,
                   frame_wh: tuple[int, int]) -> np.ndarray:
    """(T,) bounded overlap of each frame's predicted region (boxes (T, 4) or polygons (T, 2K)) with
    its ground-truth polygon: 0 on code lines (the toolkit's overlap of a special region) and where
    the ground truth is not `polygon_valid`. `UnscorableRegion` names the frame where it is raised."""
    overlaps = np.zeros(len(status), np.float64)
    for t in range(len(status)):
        if status[t] == VOT_TRACKED and polygon_valid(polygons[t]):
            try:
                overlaps[t] = region_overlap(regions[t], polygons[t], frame_wh)
            except UnscorableRegion as error:
                raise UnscorableRegion(str(error), t) from None
    return overlaps


def eao_fragments(status: np.ndarray, overlaps: np.ndarray) -> list[Fragment]:
    """One trajectory's EAO fragments: (overlaps (L,), failed) per initialisation (module docstring).

    status: (T,) codes as `score_supervised` takes them; overlaps: (T,) `frame_overlaps`. A
    trajectory without a failure is one fragment over all of it, as the toolkit takes it.
    """
    status = np.asarray(status)
    failures = np.flatnonzero(status == VOT_FAILED)
    inits = np.flatnonzero(status == VOT_INITIALISED)
    if len(failures) == 0:
        return [(np.asarray(overlaps, np.float64), False)]
    fragments = [(np.asarray(overlaps[inits[i]:failures[i]], np.float64), True) for i in range(len(failures))]
    if len(inits) > len(failures):  # initialised again and never failed until the end
        fragments.append((np.asarray(overlaps[inits[-1]:], np.float64), False))
    return fragments


def eao_curve(fragments: Sequence[Fragment]) -> np.ndarray:
    """Expected average overlap by sequence length: (N,) over lengths 0..N-1, N = longest fragment.

    fragments: (overlaps (L,), failed) of every trajectory of every sequence, weight 1 each, as
    `eao_fragments` cuts them. Value n: mean over fragments of the mean overlap of frames 1..n
    (zero-padded after a failure; a fragment that did not fail counts only for n < L); value 0 is
    the fragments' first-frame overlap (0 on initialisation lines).
    """
    if not fragments:
        raise ValueError("no fragments: EAO needs at least one trajectory")
    length = max(len(o) for o, _ in fragments)
    if length == 0:
        raise ValueError("EAO fragments are all empty")
    padded = np.zeros((len(fragments), length))
    counted = np.zeros((len(fragments), length), bool)
    for row, (overlaps, failed) in enumerate(fragments):
        padded[row, :len(overlaps)] = overlaps
        counted[row, : length if failed else len(overlaps)] = True
    running = padded.copy()
    frames = np.arange(1, length)
    running[:, 1:] = np.cumsum(padded[:, 1:], axis=1) / frames  # mean of frames 1..n
    # Every length has a fragment that counts there: the longest fragment covers them all.
    return (running * counted).sum(axis=0) / counted.sum(axis=0)


def eao_interval(spec: str | Sequence[int]) -> tuple[str | None, tuple[int, int]]:
    """A challenge's name (`EAO_INTERVALS`, e.g. "vot2018") or (low, high) -> (name or None, interval)."""
    if isinstance(spec, str):
        if spec.lower() not in EAO_INTERVALS:
            raise ValueError(f"unknown EAO interval {spec!r}; expected one of {', '.join(EAO_INTERVALS)} or LOW,HIGH")
        return spec.lower(), EAO_INTERVALS[spec.lower()]
    low, high = (int(v) for v in spec)
    if not 0 <= low <= high:
        raise ValueError(f"EAO interval must satisfy 0 <= low <= high, got {low}..{high}")
    return None, (low, high)


def eao_score(curve: np.ndarray, interval: tuple[int, int]) -> float | None:
    """Mean of the EAO curve over ``interval`` (low, high), indices included, cut at the curve's end
    as the toolkit's slice is; None when the curve ends before ``low``."""
    low, high = interval
    if not 0 <= low <= high:
        raise ValueError(f"EAO interval must satisfy 0 <= low <= high, got {low}..{high}")
    part = np.asarray(curve)[low:high + 1]
    return float(part.mean()) if len(part) else None
