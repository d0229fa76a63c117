"""VIP metrics: class mIoU from a confusion matrix, and instance-level part AP (METHODS.md §6.3).

**mIoU** (UVC / CRW ``eval_vip.py``, STT ``mean_iou``): one confusion matrix accumulated over all
scored frames of all videos, GT value 255 ignored, predictions nearest-resized to the GT size;
IoU_c = TP / (TP + FP + FN), mIoU = mean over classes with a non-empty union.

**AP_part** — the region AP of instance-level human parsing (AP^r of Hariharan et al. 2014, used
for parts by Li, Arnab & Torr 2017 and by the CIHP / VIP evaluation ``test_inst_part_ap.py``):
every part instance (one part of one person) is a region with a class and, for predictions, a
score. Per class, predictions of all frames are ranked by score; within each frame a prediction
is matched greedily, in score order, to the not yet matched GT instance of its class with the
highest IoU, and is a true positive when that IoU > t (strictly, as the CIHP script). AP is the
area under the interpolated precision-recall curve (VOC all-point). mAP(t) is the mean over
classes with at least one GT instance, background excluded; AP_part = mean of mAP(t) over
t = 0.1, 0.2, ..., 0.9 (the "AP^r_vol" of the VIP benchmark), and AP_part@0.5 = mAP(0.5).
Unlike the CIHP script, a second prediction on an already matched GT instance is a false
positive (one-to-one matching, as in VOC and SDS).

Instances are given as index maps (0 = none) with id -> class (and id -> score) tables; IoUs come
from one contingency table per frame, so memory stays at one map.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


def resize_nearest(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) integer map -> (H, W), nearest neighbour at pixel centres (PIL / torch nearest-exact)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


class ConfusionMatrix:
    """(num_classes, num_classes) pixel counts, rows = GT class, columns = predicted class."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """gt: (H, W) class ids, 255 ignored; pred: (h, w) class ids, nearest-resized to gt's size."""
        if pred.shape != gt.shape:
            pred = resize_nearest(pred, gt.shape)
        keep = gt != IGNORE
        g, p = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
        n = self.num_classes
        if g.size and (g.max() >= n or p.max() >= n or p.min() < 0):
            raise ValueError(f"class ids must be in 0..{n - 1} (gt max {g.max()}, pred {p.min()}..{p.max()})")
        self.matrix += np.bincount(n * g + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """(num_classes,) IoU per class; NaN where the class is neither in GT nor predicted."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float | None:
        iou = self.iou()
        return None if np.all(np.isnan(iou)) else float(np.nanmean(iou))


def instance_ious(pred_ids: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted with every GT instance of two (H, W) index maps (0 = no instance).

    Returns (pred labels (P,), gt labels (G,), ious (P, G)), labels sorted, 0 left out.
    """
    if pred_ids.shape != gt_ids.shape:
        raise ValueError(f"instance maps differ in size: {pred_ids.shape} vs {gt_ids.shape}")
    p_labels, p_inv = np.unique(pred_ids, return_inverse=True)
    g_labels, g_inv = np.unique(gt_ids, return_inverse=True)
    table = np.bincount(p_inv.ravel() * len(g_labels) + g_inv.ravel(),
                        minlength=len(p_labels) * len(g_labels)).reshape(len(p_labels), len(g_labels))
    inter = table.astype(np.float64)
    union = table.sum(1)[:, None] + table.sum(0)[None, :] - inter
    ious = inter / np.maximum(union, 1)
    p_keep, g_keep = p_labels != 0, g_labels != 0
    return p_labels[p_keep], g_labels[g_keep], ious[np.ix_(p_keep, g_keep)]


def greedy_match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """ious: (P, G), rows in descending score order -> (P,) bool true positives (one-to-one)."""
    taken = np.zeros(ious.shape[1], bool)
    tp = np.zeros(ious.shape[0], bool)
    for i in range(ious.shape[0]):
        candidates = np.where(taken, -1.0, ious[i])
        if candidates.size and candidates.max() > threshold:
            j = int(candidates.argmax())
            taken[j] = tp[i] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """VOC all-point interpolated AP of ranked detections: scores (N,), tp (N,) bool."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(tp, bool)[order]
    ctp, cfp = np.cumsum(hits), np.cumsum(~hits)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class PartAP:
    """Accumulates part-instance detections over frames; `results` gives AP per class and threshold."""

    thresholds: tuple[float, ...] = IOU_THRESHOLDS
    scores: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    hits: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    n_gt: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add_frame(self, gt_ids: np.ndarray, gt_classes: dict[int, int], pred_ids: np.ndarray,
                  pred_classes: dict[int, int], pred_scores: dict[int, float]) -> None:
        """One frame: (H, W) GT and predicted instance maps (0 = none) with id -> class / score tables.

        Every id present in a map must be in its class table.
        """
        p_labels, g_labels, ious = instance_ious(pred_ids, gt_ids)
        p_cls = np.array([pred_classes[int(i)] for i in p_labels], np.int64)
        g_cls = np.array([gt_classes[int(i)] for i in g_labels], np.int64)
        for c in np.unique(g_cls):
            self.n_gt[int(c)] += int((g_cls == c).sum())
        for c in np.unique(p_cls):
            rows = np.flatnonzero(p_cls == c)
            frame_scores = np.array([pred_scores[int(p_labels[r])] for r in rows])
            order = np.argsort(-frame_scores, kind="stable")
            rows, frame_scores = rows[order], frame_scores[order]
            sub = ious[np.ix_(rows, np.flatnonzero(g_cls == c))]
            self.scores[int(c)].extend(frame_scores.tolist())
            self.hits[int(c)].append(np.stack([greedy_match(sub, t) for t in self.thresholds], axis=1))

    def merge(self, other: PartAP) -> None:
        for c, n in other.n_gt.items():
            self.n_gt[c] += n
        for c in other.scores:
            self.scores[c].extend(other.scores[c])
            self.hits[c].extend(other.hits[c])

    def class_ap(self) -> dict[int, np.ndarray]:
        """{class: (len(thresholds),) AP} for every class with at least one GT instance."""
        out = {}
        for c, n in sorted(self.n_gt.items()):
            if n == 0:
                continue
            if not self.scores.get(c):
                out[c] = np.zeros(len(self.thresholds))
                continue
            hits = np.concatenate(self.hits[c])
            out[c] = np.array([average_precision(np.array(self.scores[c]), hits[:, k], n)
                               for k in range(len(self.thresholds))])
        return out

    def results(self) -> dict:
        """{"AP_part": mean over thresholds, "AP_part@0.5", "per_threshold": {t: mAP}, "per_class": {c: AP}}.

        Values are None when no GT instance was seen.
        """
        per_class = self.class_ap()
        if not per_class:
            return {"AP_part": None, "AP_part@0.5": None, "per_threshold": None, "per_class": {}}
        m_ap = np.mean(np.stack(list(per_class.values())), axis=0)
        per_threshold = {f"{t:g}": float(v) for t, v in zip(self.thresholds, m_ap)}
        return {"AP_part": float(m_ap.mean()), "AP_part@0.5": per_threshold.get("0.5"),
                "per_threshold": per_threshold, "per_class": {c: float(v.mean()) for c, v in per_class.items()}}
