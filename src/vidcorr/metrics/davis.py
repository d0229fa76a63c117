"""DAVIS semi-supervised video object segmentation metrics: J (region IoU), F (boundary), J&F.

Reproduces the official davis2017-evaluation code (commit ac7c43f, task "semi-supervised")
number for number: ../shared/metric-goldens/README.md states its semantics, docs/metrics.md
how this module was checked against the goldens (per frame, per object and global, <= 1e-6;
bitwise in practice). The rules that are easy to get wrong, and where they live here:

* void (255) in the GT is set to background and *scored* (`evaluate_sequence`);
* frames 0 and T-1 are never scored, and their predictions are never read (`score_davis`);
* objects are 1..K with K = max id of the first GT frame; absent ids are all-empty masks;
* boundaries are `_seg2bmap`'s half-pixel-shifted map (`seg2bmap`), matched within a disk of
  radius ceil(0.008 * image diagonal) with x^2 + y^2 <= r^2 (`boundary_f`);
* Decay bins share their end frames (`object_statistics`); the global line is a plain mean over
  all objects of all sequences.

Numpy only, no OpenCV or scikit-image: the official F dilates boundaries with a disk only to
count matched boundary pixels, and `_count_near` computes that count exactly without dilating.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset, check_mask_size
from vidcorr.io.masks import VOID, read_mask

log = logging.getLogger(__name__)

BOUND_TH = 0.008  # official F tolerance: fraction of the image diagonal
MEASURES = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
GLOBAL_KEYS = ("J&F-Mean", *MEASURES)
PROTOCOL_NOTE = (
    "DAVIS semi-supervised J&F, semantics of davis2017-evaluation ac7c43f: frames 1..T-2 scored; "
    "objects 1..K, K = max id of the first annotation; void (255) counted as background; "
    "F tolerance ceil(0.008*diagonal) px; Mean/Recall(>0.5)/Decay per object; global = mean over "
    "all objects of all sequences. 0/255 grayscale masks are read as object 1 (DAVIS-2016)."
)


# --------------------------------------------------------------------------- per-frame measures
def jaccard_frames(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Region similarity J = |G and P| / |G or P| per frame.

    Args:
        gt, pred: bool [..., H, W].
    Returns:
        float64 [...]; 1 where the union is empty (official: an absent object predicted absent).
    """
    gt, pred = _same_shape_masks(gt, pred, what="[..., H, W]")
    inter = np.count_nonzero(gt & pred, axis=(-2, -1))
    union = np.count_nonzero(gt | pred, axis=(-2, -1))
    return np.divide(inter, union, out=np.ones(np.shape(union)), where=np.asarray(union) > 0)


def _same_shape_masks(
    gt: np.ndarray, pred: np.ndarray, what: str, ndim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """gt and pred as bool arrays of one shape, at least (H, W) or exactly ``ndim`` dimensions, else a
    ValueError naming both shapes: numpy broadcast a one-row prediction against a whole GT frame,
    and zip() over frames dropped the GT's extra ones."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape or gt.ndim < 2 or (ndim is not None and gt.ndim != ndim):
        raise ValueError(f"gt and pred must be bool masks {what} of one shape, got gt {gt.shape} and pred {pred.shape}")
    return gt, pred


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """J of one frame; gt, pred: bool [H, W]."""
    return float(jaccard_frames(gt, pred))


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """Boundary map of the official `_seg2bmap`: bool [..., H, W] -> bool [..., H, W].

    A pixel is boundary if it differs from its east, south or south-east neighbour; the last row
    compares east only, the last column south only, the bottom-right pixel is always 0. So the
    map sits half a pixel toward the origin, the image border is never a boundary, and an
    all-ones mask has none.
    """
    seg = np.asarray(mask, bool)
    here = seg[..., :-1, :-1]
    b = np.zeros_like(seg)
    b[..., :-1, :-1] = (here ^ seg[..., :-1, 1:]) | (here ^ seg[..., 1:, :-1]) | (here ^ seg[..., 1:, 1:])
    b[..., -1, :-1] = seg[..., -1, :-1] ^ seg[..., -1, 1:]
    b[..., :-1, -1] = seg[..., :-1, -1] ^ seg[..., 1:, -1]
    return b


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Official tolerance in pixels: ceil(bound_th * hypot(H, W)) (8 at 480x854); bound_th >= 1 is pixels."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a radius in pixels and must be an integer, got {bound_th}")
        return int(bound_th)
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def _count_near(points: tuple[np.ndarray, np.ndarray], target: np.ndarray, radius: int) -> int:
    """How many `points` (ys, xs) have a `target` pixel within x^2 + y^2 <= radius^2.

    Equals |points and dilate(target, disk(radius))|, the count the official F takes from
    cv2.dilate with skimage's disk, without forming the dilation: the disk is 2r+1 horizontal
    runs of half-width isqrt(r^2 - dy^2), and a run's content is one difference of row-wise
    prefix sums, looked up only at the (sparse) boundary points.
    """
    r = radius
    h, w = target.shape
    # Column j of `csum` = target pixels left of padded column j; r rows/columns of zero padding
    # on each side keep every lookup in range without clipping.
    csum = np.zeros((h + 2 * r, w + 2 * r + 1), np.int32)
    np.cumsum(target, axis=1, dtype=np.int32, out=csum[r:h + r, r + 1:w + r + 1])
    csum[r:h + r, w + r + 1:] = csum[r:h + r, w + r:w + r + 1]
    ys, xs = points
    hit = np.zeros(ys.shape, bool)
    for dy in range(-r, r + 1):
        half = math.isqrt(r * r - dy * dy)
        row = ys + (r + dy)
        hit |= csum[row, xs + (r + half + 1)] > csum[row, xs + (r - half)]
    return int(np.count_nonzero(hit))


def _f_measure(gt_b: np.ndarray, pred_b: np.ndarray, radius: int) -> float:
    """F of one frame from boundary maps gt_b, pred_b: bool [H, W] (official `f_measure`)."""
    n_gt, n_pred = int(np.count_nonzero(gt_b)), int(np.count_nonzero(pred_b))
    # Official empty-boundary rules: one side empty -> F = 0, both empty -> F = 1.
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = _count_near(np.nonzero(pred_b), gt_b, radius) / float(n_pred)
        recall = _count_near(np.nonzero(gt_b), pred_b, radius) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)  # same operation order as the official code


def _frame_f(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    """F of one frame, gt, pred: bool [H, W], computed inside the masks' joint bounding box."""
    union = gt | pred
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return 1.0  # both masks empty: both boundaries empty
    # seg2bmap looks one pixel east/south and marks up to one pixel north/west of a mask, so a
    # one-pixel margin gives the same map as the full frame (the margin rows/columns are empty,
    # or are the image's own last row/column, where the border rules coincide).
    box = np.s_[max(rows[0] - 1, 0):rows[-1] + 2, max(cols[0] - 1, 0):cols[-1] + 2]
    return _f_measure(seg2bmap(gt[box]), seg2bmap(pred[box]), radius)


def boundary_f_frames(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> np.ndarray:
    """Boundary F-measure per frame; gt, pred: bool [T, H, W] -> float64 [T]."""
    gt, pred = _same_shape_masks(gt, pred, what="[T, H, W]", ndim=3)
    radius = boundary_radius(*gt.shape[-2:], bound_th)
    return np.array([_frame_f(g, p, radius) for g, p in zip(gt, pred)], np.float64)


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F of one frame; gt, pred: bool [H, W]."""
    return float(boundary_f_frames(np.asarray(gt)[None], np.asarray(pred)[None], bound_th)[0])


# --------------------------------------------------------------------------- per object / sequence
def decay_bin_ids(n: int) -> np.ndarray:
    """Official Decay bin edges for n scored frames: int64 [5] = round(linspace(1, n, 5) + 1e-10) - 1.

    The 1e-10 rounds .5 up (numpy alone rounds half to even): n = 48 gives [0, 12, 24, 35, 47].
    The official code casts to uint8, which only matters past n = 256; we do not wrap.
    """
    return (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)


def object_statistics(per_frame: np.ndarray) -> dict[str, float]:
    """Official `db_statistics` of one object's per-frame J or F values, float [N] (N >= 1).

    Returns {"Mean": nanmean, "Recall": fraction of frames > 0.5 (strict), "Decay": mean of the
    first bin minus mean of the fourth}, bin i = x[ids[i] : ids[i+1] + 1] with ids from
    `decay_bin_ids`, so neighbouring bins share their end frame.
    """
    x = np.asarray(per_frame, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"per_frame must be a non-empty 1-D array, got shape {x.shape}")
    ids = decay_bin_ids(x.size)
    first, last = x[ids[0]:ids[1] + 1], x[ids[3]:ids[4] + 1]
    return {
        "Mean": float(np.nanmean(x)),
        "Recall": float(np.nanmean(x > 0.5)),
        "Decay": float(np.nanmean(first) - np.nanmean(last)),
    }


def num_objects(first_gt: np.ndarray) -> int:
    """K: the largest object id of the first GT frame, uint8 [H, W], void excluded."""
    return int(np.where(first_gt == VOID, 0, first_gt).max())


def _check_ids(name: str, ids: np.ndarray) -> None:
    """ValueError unless ``ids`` are integers (or bools) in 0..255: a GT id 300 made K = 300 objects,
    the 298 absent from both maps each scoring J = F = 1; float ids 1.5 or negative ones matched no
    object, J = 0, without a word."""
    if ids.dtype.kind not in "biu":
        raise ValueError(f"{name} must hold integer object ids (uint8 [T, H, W]), got {ids.dtype}")
    low, high = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
    if low < 0 or high > VOID:
        raise ValueError(f"{name} holds id {low if low < 0 else high}; DAVIS ids lie in 0..{VOID} ({VOID} = void)")


def evaluate_sequence(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> dict[int, dict]:
    """Score one sequence the semi-supervised way.

    Args:
        gt: uint8 [T, H, W] object ids, 255 = void; T >= 3.
        pred: uint8 [T, H, W] predicted ids. pred[0] and pred[T-1] are ignored: frames 0 and T-1
            are not scored (frame 0 is the given annotation).
    Returns:
        {k: {"J_per_frame": float64 [T-2], "F_per_frame": float64 [T-2], "J-Mean", "J-Recall",
        "J-Decay", "F-Mean", "F-Recall", "F-Decay", "J&F-Mean"}} for k = 1..K.
    Raises:
        ValueError: shapes differ, T < 3, ids that are not integers in 0..255 (any integer or bool
        dtype is taken), or a scored prediction holds an id > K (the official code aborts there too).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3 or gt.shape != pred.shape or gt.shape[0] < 3:
        raise ValueError(f"gt and pred must both be [T >= 3, H, W], got {gt.shape} and {pred.shape}")
    _check_ids("gt", gt)
    _check_ids("pred", pred)
    k_max = num_objects(gt[0])
    # Semi-supervised task: void becomes background and stays in the scored pixels, so a
    # prediction inside a void band is a false positive for J and F (official `_evaluate_semisupervised`
    # passes void_pixels=None).
    gt_scored = np.where(gt[1:-1] == VOID, 0, gt[1:-1])
    pred_scored = pred[1:-1]
    if int(pred_scored.max()) > k_max:
        raise ValueError(f"prediction holds id {int(pred_scored.max())} but the first GT frame has {k_max} objects")
    objects = {}
    for k in range(1, k_max + 1):
        g, p = gt_scored == k, pred_scored == k
        j, f = jaccard_frames(g, p), boundary_f_frames(g, p, bound_th)
        js, fs = object_statistics(j), object_statistics(f)
        record = {"J_per_frame": j, "F_per_frame": f}
        record.update({f"J-{name}": v for name, v in js.items()})
        record.update({f"F-{name}": v for name, v in fs.items()})
        record["J&F-Mean"] = (record["J-Mean"] + record["F-Mean"]) / 2.0
        objects[k] = record
    return objects


# --------------------------------------------------------------------------- whole results folder
def score_davis(
    root: str | Path,
    results_dir: str | Path,
    year: str | None = None,
    split: str = "val",
    sequences: Sequence[str] | None = None,
    *,
    resolution: str = "480p",
    bound_th: float = BOUND_TH,
    per_frame: bool = False,
    progress: bool = True,
    max_frames: int | None = None,
) -> dict:
    """Score a DAVIS results folder (semi-supervised) against a DAVIS root.

    Args:
        root: DAVIS root (Annotations/480p, ImageSets/<year>/<split>.txt; JPEGImages not needed).
        results_dir: predictions as ``results_dir/<seq>/<frame>.png``, named like the annotations,
            palette (or grayscale) PNGs of object ids. First/last-frame files are not read.
        year, split, sequences: which sequences, as in `DavisDataset`.
        resolution: the annotations' folder, "480p" or "Full-Resolution" (`DavisDataset`).
        per_frame: also put "J_per_frame" / "F_per_frame" lists in each per-object entry.
        progress: show a tqdm bar over sequences.
        max_frames: score only the first N frames of each sequence (results of ``propagate
            --max-frames N``), as if it ended there: frames 1..N-2; at least 3; the results must hold
            frame N-1 too (a shorter prefix is refused, naming both counts). None: every frame,
            and a folder missing the later frames is refused, naming the N that would score it.
    Returns:
        The results dict (schema in docs/metrics.md): global measures at the top level,
        "per_object" {"<seq>_<id>": ...}, "per_sequence" {"<seq>": ...}, "protocol".
    """
    check_max_frames(max_frames)
    dataset = DavisDataset(root, year, split, resolution, sequences=sequences)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    # Find every file before the long loop so that a missing prediction fails in seconds.
    files = {seq: _sequence_files(dataset, results_dir, seq, max_frames) for seq in dataset.sequences}
    per_object: dict[str, dict] = {}
    per_sequence: dict[str, dict] = {}
    # disable=True only when asked: an explicit disable=False overrode TQDM_DISABLE=1, which
    # tqdm reads as the default of every argument left out.
    bar_off = {} if progress else {"disable": True}
    for seq in tqdm(dataset.sequences, desc="DAVIS J&F", unit="seq", **bar_off):
        gt, pred = _load_sequence(*files[seq])
        objects = evaluate_sequence(gt, pred, bound_th)
        if not objects:
            log.warning("%s: the first annotation holds no object; nothing to score", seq)
            continue
        for k, rec in objects.items():
            entry = {key: rec[key] for key in GLOBAL_KEYS}
            if per_frame:
                entry.update(J_per_frame=rec["J_per_frame"].tolist(), F_per_frame=rec["F_per_frame"].tolist())
            per_object[f"{seq}_{k}"] = entry
        j_mean = float(np.mean([rec["J-Mean"] for rec in objects.values()]))
        f_mean = float(np.mean([rec["F-Mean"] for rec in objects.values()]))
        per_sequence[seq] = {"J&F-Mean": (j_mean + f_mean) / 2.0, "J-Mean": j_mean, "F-Mean": f_mean,
                             "n_objects": len(objects)}
    if not per_object:
        raise InputError(dataset.root, "no objects to score: every first annotation is empty")
    # Official evaluation_method.py: each measure is a plain mean over all objects (a 2-object
    # sequence weighs twice, frame counts do not matter).
    results: dict = {m: float(np.mean([o[m] for o in per_object.values()])) for m in MEASURES}
    results = {"J&F-Mean": (results["J-Mean"] + results["F-Mean"]) / 2.0, **results}
    results["per_object"] = per_object
    results["per_sequence"] = per_sequence
    results["protocol"] = {"benchmark": "DAVIS", "task": "semi-supervised", "year": dataset.year,
                           "split": split, "resolution": dataset.resolution, "bound_th": bound_th,
                           "n_sequences": len(per_sequence), "n_objects": len(per_object),
                           "note": PROTOCOL_NOTE}
    if max_frames is not None:  # a prefix run's score is not the benchmark's: said in the record
        results["max_frames"] = max_frames
    return results


def check_max_frames(max_frames: int | None, name: str = "max_frames") -> None:
    """ValueError unless ``max_frames`` (None: every frame) leaves a frame to score: 3 or more, as the
    protocol scores frames 1..N-2. name: how the caller spells it (``--max-frames``)."""
    if max_frames is not None and max_frames < 3:
        raise ValueError(f"{name} must be at least 3 (the protocol scores frames 1..N-2), got {max_frames}")


def _sequence_files(dataset: DavisDataset, results_dir: Path, seq: str,
                    max_frames: int | None = None) -> tuple[list[Path], list[Path]]:
    """(all annotation paths, prediction paths of the scored frames 1..T-2) of `seq`, T its frames
    or the first ``max_frames`` of them."""
    gt_paths = dataset.masks(seq)[:max_frames]
    if len(gt_paths) < 3:
        raise InputError(gt_paths[0].parent, f"{len(gt_paths)} annotated frame(s): the semi-supervised "
                         "protocol scores frames 1..T-2 and needs at least 3")
    pred_dir = results_dir / seq
    if not pred_dir.is_dir():
        raise InputError(pred_dir, f"prediction folder of sequence {seq!r} not found (results of a subset of "
                                   "the split? --sequences names the ones to score)")
    pred_paths = [pred_dir / p.name for p in gt_paths[1:-1]]
    missing = [p for p in pred_paths if not p.is_file()]
    if missing:
        raise InputError(missing[0], f"prediction not found ({len(missing)} of the {len(pred_paths)} scored "
                         f"frames of {seq!r} are missing; the first and last frame are not needed)"
                         + _prefix_hint(pred_paths, missing, max_frames))
    _refuse_a_shorter_prefix(pred_dir / gt_paths[-1].name, seq, len(gt_paths), max_frames)
    return gt_paths, pred_paths


def _refuse_a_shorter_prefix(last: Path, seq: str, frames: int, max_frames: int | None) -> None:
    """InputError unless the results hold the last of the ``max_frames`` frames asked for (``last``)
    where the sequence has that many (``frames``). The protocol never scores it, but without it the
    masks of `propagate --max-frames 4` passed as the first 5 frames: frame 3, the end of that run,
    was scored as a middle frame and score.json said max_frames 5."""
    if max_frames is None or frames < max_frames or last.is_file():
        return
    raise InputError(last, f"prediction not found: --max-frames {max_frames} asks for the first {max_frames} "
                           f"frames of {seq!r}, and the results hold {max_frames - 1} (frame {max_frames - 1}, "
                           f"the last, is not scored but ends the run); score them with --max-frames {max_frames - 1}")


def _prefix_hint(pred_paths: list[Path], missing: list[Path], max_frames: int | None) -> str:
    """Where the predictions present are frames 1..n-1 and only later ones are missing (the masks of
    ``propagate --max-frames n``, n >= 3), the --max-frames that scores them; else ""."""
    n = 1 + pred_paths.index(missing[0])  # frames 0..n-1 present (frame 0's file is not read)
    if n < 3 or pred_paths[n - 1:] != missing:
        return ""
    if max_frames is None:
        return f"; a `propagate --max-frames {n}` run? score its first {n} frames with --max-frames {n}"
    return f"; score them with --max-frames {n}"


def _load_sequence(gt_paths: list[Path], pred_paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """GT uint8 [T, H, W] and predictions uint8 [T, H, W] (frames 0 and T-1 left 0: never read)."""
    first = read_mask(gt_paths[0])
    size = first.shape[::-1]
    gt = np.empty((len(gt_paths), *first.shape), np.uint8)
    gt[0] = first
    for t, path in enumerate(gt_paths[1:], start=1):
        gt[t] = _read_sized(path, size, f"{gt_paths[0].name} is")
    k_max = num_objects(first)
    pred = np.zeros_like(gt)
    for t, path in enumerate(pred_paths, start=1):
        pred[t] = _read_sized(path, size, "the annotations are")
        if int(pred[t].max()) > k_max:
            raise InputError(path, f"holds object id {int(pred[t].max())} but the first annotation of the sequence "
                             f"has {k_max} object(s) (the official evaluation aborts on this; palette index 255 "
                             "is void and not a valid prediction)")
    return gt, pred


def _read_sized(path: Path, size: tuple[int, int], reference: str) -> np.ndarray:
    mask = read_mask(path)
    check_mask_size(path, mask, size, reference)
    return mask


# --------------------------------------------------------------------------- output
def format_results_table(results: dict) -> str:
    """A per-sequence table (J&F, J, F means) followed by the global line of all 7 measures."""
    seqs = results["per_sequence"]
    width = max([len("sequence"), *map(len, seqs)])
    lines = [f"{'sequence':<{width}}  objects  J&F-Mean  J-Mean  F-Mean"]
    for name, s in seqs.items():
        lines.append(f"{name:<{width}}  {s['n_objects']:>7d}  {s['J&F-Mean']:>8.4f}  "
                     f"{s['J-Mean']:>6.4f}  {s['F-Mean']:>6.4f}")
    n_obj = len(results["per_object"])
    lines.append("")
    prefix = f", first {results['max_frames']} frames of each" if results.get("max_frames") else ""
    lines.append(f"global over {n_obj} object(s) in {len(seqs)} sequence(s){prefix}:")
    lines.append("  ".join(f"{k:>8}" for k in GLOBAL_KEYS))
    lines.append("  ".join(f"{results[k]:>8.4f}" for k in GLOBAL_KEYS))
    return "\n".join(lines)
