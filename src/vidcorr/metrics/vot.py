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
image-sized masks (the plane geometry: `vidcorr.metrics.polygon`). The difference lives in the
outline pixels, so it shrinks with region size: on the real VOT2015 runs of docs/tracking.md a
Python port of that rasteriser moved per-sequence accuracies by at most 0.005 and single frames by
up to 0.043. Regions that touch or
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

from collections.abc import Mapping, Sequence

import numpy as np

from vidcorr.io.vot_trajectory import VOT_FAILED, VOT_INITIALISED, VOT_TRACKED
from vidcorr.metrics.polygon import clip_to_convex, clip_to_rectangle, polygon_area, polygon_convex, polygon_simple

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
    the image, and for a region with a NaN or infinite value. Two polygons are intersected by clipping
    one by the other, which needs one of them convex (rotated boxes and VOT's four-corner ground truth
    are); `UnscorableRegion` (a ValueError) when neither is, or when the predicted polygon crosses or
    touches itself (not `polygon_simple`).
    """
    values = np.asarray(region, np.float64).reshape(-1)
    if not np.isfinite(values).all():
        # The toolkit's "unknown" region (a NaN value: vot/region/io.py `parse`) overlaps nothing
        # (vot/region/raster.py `calculate_overlap`). Said here: NaN arithmetic came to 0 by chance.
        return 0.0
    width, height = frame_wh
    gt = clip_to_rectangle(np.asarray(polygon, np.float64).reshape(-1, 2), 0.0, 0.0, width, height)
    gt_area = polygon_area(gt)
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
        # A ground truth bounded to a segment or a point (outside the image but for its border) meets
        # nothing: not clipped, so that it is not taken for a non-convex region (UnscorableRegion).
        inter = polygon_area(_intersect_polygons(predicted, gt)) if area > 0 and gt_area > 0 else 0.0
    union = gt_area + area - inter
    return float(np.clip(inter / union, 0.0, 1.0)) if union > 0 else 0.0


class UnscorableRegion(ValueError):
    """A predicted polygon `region_overlap` cannot score: one that crosses or touches itself, or one
    that is, like the ground truth, non-convex. ``frame``: the frame's index where `frame_overlaps` met
    it."""

    def __init__(self, problem: str, frame: int | None = None) -> None:
        super().__init__(problem)
        self.frame = frame


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
    frame_wh: (W, H). Frames whose ground truth is not `polygon_valid` are not scored: our rule; the
    toolkit scores a NaN ground truth as overlap 0 (`known_ground_truth`). Returns {"accuracy",
    "failures", "frames", "scored_frames", "initialisations"}.
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
    """(T,) bool: whether each frame's ground-truth polygon is `polygon_valid`.

    Frames without one are neither failures nor scored: our rule, not the toolkit's. The Python
    toolkit reads a NaN ground truth as the special region 0 (vot/region/io.py `parse`), whose
    overlap with anything is 0 (vot/region/raster.py `calculate_overlap`: not a Shape); its runner
    then calls the frame a failure (vot/experiment/multirun.py `SupervisedExperiment.execute`:
    overlap <= failure_overlap), and a prediction there adds 0 to the accuracy (its mask looks at the
    trajectory only). The short-term datasets the baseline experiment runs on have no such frames;
    charging a tracker a failure where no target is annotated would score the annotation, not it.
    A NaN *prediction* follows the toolkit (`vidcorr.io.vot_trajectory.read_vot_trajectory`: unknown)."""
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
