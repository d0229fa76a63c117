"""OTB one-pass evaluation (OPE): success plot + AUC, precision plot + precision at 20 px.

Semantics of the OTB toolkit (Wu, Lim, Yang, TPAMI 2015; ``genPerfMat.m`` / ``calcSeqErrRobust.m``):

* every frame is scored, the first one included (the toolkit overwrites the tracker's first box with
  the ground truth; our trackers output it unchanged);
* overlap = IoU of the two rectangles. OTB's ``calcRectInt`` uses inclusive pixel ends
  (x + w - 1 ... + 1), which cancel out: it equals the continuous IoU computed here;
* success plot: fraction of frames whose IoU is **strictly greater** than each threshold
  t in {0, 0.05, ..., 1} (21 thresholds); ``success_auc`` is the mean of those 21 values. Because the
  comparison is strict, no frame counts at t = 1, so a perfect track scores 20/21 = 0.952, not 1.0
  (pysot and DCFNet's ``eval_otb.py`` share this convention). ``average_overlap`` (mean IoU, the
  continuous-threshold limit of the AUC) is 1.0 for a perfect track;
* precision plot: fraction of frames whose centre distance is **at most** each threshold
  0, 1, ..., 50 px; ``precision@20px`` is the value at 20 px. Centres are x + w/2 (OTB writes
  x + (w-1)/2; the -1/2 cancels in the difference);
* frames whose ground truth is not a valid box (a NaN value, or w or h <= 0: `valid_boxes`) stay in
  every denominator; the toolkit (``calcSeqErrRobust.m``) gives them overlap -1 and centre error -1,
  so they are a **miss at every success threshold and a hit at every precision threshold**, and
  they add 0 to the mean overlap (its ``aveErrCoverage`` sums the valid frames over all frames).
  pysot (``toolkit/utils/statistics.py``) does the same for NaN and all-zero rows; its precision
  mask tests the centre (> 0) instead of w and h. The MATLAB toolkit also calls a box invalid when
  its 1-based x or y is <= 0 (a box reaching past the left or top edge); pysot and got-10k score
  such boxes normally, and so do we. (got-10k masks nothing: a NaN frame misses in both curves.)
* over sequences: the mean of the per-sequence curves, then AUC / precision@20px of that mean curve
  (equal to the mean of the per-sequence values).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

OVERLAP_THRESHOLDS = np.arange(21) / 20.0  # OTB: 0:0.05:1
ERROR_THRESHOLDS = np.arange(51, dtype=np.float64)  # OTB: 0:50 px
PRECISION_PX = 20
PRECISION_KEY = f"precision@{PRECISION_PX}px"


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (T, 4) (x, y, w, h), got {b.shape}")
    return b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired boxes: a, b (T, 4) x, y, w, h -> (T,) in [0, 1]."""
    a, b = _as_boxes(a), _as_boxes(b)
    iw = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0), 0.0, 1.0)


def centre_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between paired box centres in pixels: a, b (T, 4) -> (T,)."""
    a, b = _as_boxes(a), _as_boxes(b)
    return np.hypot((a[:, 0] + a[:, 2] / 2) - (b[:, 0] + b[:, 2] / 2),
                    (a[:, 1] + a[:, 3] / 2) - (b[:, 1] + b[:, 3] / 2))


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """Which ground-truth boxes count as annotated: (T, 4) -> (T,) bool, finite with w > 0 and h > 0."""
    b = _as_boxes(boxes)
    return np.all(np.isfinite(b), axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)


def success_curve(iou: np.ndarray) -> np.ndarray:
    """Fraction of frames with IoU > t for t in `OVERLAP_THRESHOLDS`: (T,) -> (21,)."""
    return (np.asarray(iou)[:, None] > OVERLAP_THRESHOLDS[None, :]).mean(axis=0)


def precision_curve(error: np.ndarray) -> np.ndarray:
    """Fraction of frames with centre error <= t px for t in `ERROR_THRESHOLDS`: (T,) -> (51,)."""
    return (np.asarray(error)[:, None] <= ERROR_THRESHOLDS[None, :]).mean(axis=0)


def _summary(success: np.ndarray, precision: np.ndarray, overlap: float) -> dict:
    return {
        "success_auc": float(success.mean()),
        PRECISION_KEY: float(precision[PRECISION_PX]),
        "average_overlap": float(overlap),
        "success_curve": [float(v) for v in success],
        "precision_curve": [float(v) for v in precision],
    }


def score_sequence(gt: np.ndarray, pred: np.ndarray) -> dict:
    """OPE scores of one sequence: gt, pred (T, 4) boxes in the same convention.

    Frames whose ground truth is not `valid_boxes` are scored as the OTB toolkit does (module
    docstring): overlap -1 (a miss at every t >= 0) and centre error -1 (a hit at every t >= 0).
    Returns {"success_auc", "precision@20px", "average_overlap", "success_curve" (21 values),
    "precision_curve" (51 values), "frames", "invalid_gt_frames"}.
    """
    gt, pred = _as_boxes(gt), _as_boxes(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} ground-truth boxes")
    valid = valid_boxes(gt)
    iou = np.full(len(gt), -1.0)
    iou[valid] = box_iou(gt[valid], pred[valid])
    error = np.full(len(gt), -1.0)
    error[valid] = centre_error(gt[valid], pred[valid])
    overlap = iou[valid].sum() / len(gt)  # calcSeqErrRobust's aveErrCoverage
    scores = _summary(success_curve(iou), precision_curve(error), overlap)
    scores["frames"] = len(gt)
    scores["invalid_gt_frames"] = int((~valid).sum())
    return scores


def average_scores(per_sequence: Mapping[str, dict]) -> dict:
    """Average `score_sequence` results over sequences (each sequence weighs the same, as in OTB)."""
    if not per_sequence:
        raise ValueError("no sequences to average")
    seqs = list(per_sequence.values())
    success = np.mean([s["success_curve"] for s in seqs], axis=0)
    precision = np.mean([s["precision_curve"] for s in seqs], axis=0)
    return _summary(success, precision, np.mean([s["average_overlap"] for s in seqs]))
