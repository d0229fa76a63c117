"""OTB / VOT box-tracking benchmark: track every sequence from its first box, write boxes, score OPE.

Both benchmarks are scored with OTB's one-pass evaluation (`vidcorr.metrics.tracking`): the tracker
starts from the first ground-truth box and is never re-initialised. For VOT sequences this is *not*
VOT's own reset-based protocol (accuracy / robustness / EAO); it is OTB's success and precision on
VOT footage, which is what a dense-correspondence model can be compared on here.

Outputs in ``out_dir``: ``<seq>.txt`` predicted boxes in OTB format (1-based ``x,y,w,h``),
``results.json`` (schema in docs/tracking.md) and ``success_plot.png`` (drawn with Pillow).

`score_tracking` scores such ``<seq>.txt`` files (ours or another tracker's) without a model
(`vidcorr score otb|vot`). Both paths score a sequence with `score_result_file`, i.e. the boxes as
read back from the file written, so ``score`` on ``eval``'s files gives ``eval``'s numbers exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from vidcorr.dcf import DCFSettings
from vidcorr.errors import InputError
from vidcorr.io.tracking import (
    Benchmark,
    TrackingSequence,
    discover_sequences,
    read_result_boxes,
    write_otb_boxes,
)
from vidcorr.io.video import open_frames
from vidcorr.metrics.davis import write_results_json
from vidcorr.metrics.tracking import (
    ERROR_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    PRECISION_KEY,
    average_scores,
    score_sequence,
)
from vidcorr.track import LocaliseSettings, track_video
from vidcorr.viz import PALETTE, Curve, line_plot

log = logging.getLogger(__name__)

PROTOCOL_NOTE = (
    "OTB one-pass evaluation (OPE), semantics of the OTB toolkit: every frame scored (the first one "
    "included), success = fraction of frames with IoU > t for t = 0, 0.05, ..., 1 (strict, so a "
    "perfect track scores 20/21), success_auc = mean of those 21 values; precision = fraction with "
    "centre error <= t px, precision@20px at t = 20; curves averaged over sequences. No re-initialisation. "
    "Frames whose ground truth is not a valid box (NaN, or w or h <= 0) stay in the denominators as a "
    "miss in success and a hit in precision (OTB toolkit calcSeqErrRobust.m)."
)


def track_sequence(
    encoder: nn.Module,
    seq: TrackingSequence,
    settings: LocaliseSettings | DCFSettings,
    *,
    device: str = "cpu",
    max_frames: int | None = None,
) -> np.ndarray:
    """Track ``seq`` from its first box: -> predicted boxes (T, 4), 0-based, T = len(seq) or max_frames."""
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    frames = itertools.islice(open_frames(seq.frames_dir), n)
    boxes = track_video(encoder, tqdm(frames, total=n, desc=seq.name, unit="frame", leave=False),
                        tuple(seq.boxes[0]), settings=settings, device=device)
    return np.array(list(boxes), np.float64).reshape(-1, 4)


def run_tracking(
    encoder: nn.Module,
    root: str | Path,
    out_dir: str | Path,
    *,
    benchmark: Benchmark,
    settings: LocaliseSettings | DCFSettings,
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
    device: str = "cpu",
    model_info: dict | None = None,
    preset: str | None = None,
) -> dict:
    """Track and score every sequence; write ``<seq>.txt``, ``results.json`` and ``success_plot.png``.

    max_frames: track and score only the first N frames of each sequence (smoke tests, quick runs).
    Returns the results dict written to ``results.json``.
    """
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames}")
    seqs = discover_sequences(root, benchmark, sequences)  # every annotation checked before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_sequence, frames, seconds = {}, 0, 0.0
    tracker = "localise" if isinstance(settings, LocaliseSettings) else "dcf"
    for seq in tqdm(seqs, desc=f"{benchmark} ({tracker})", unit="seq"):
        start = time.perf_counter()
        pred = track_sequence(encoder, seq, settings, device=device, max_frames=max_frames)
        elapsed = time.perf_counter() - start
        boxes_file = out_dir / f"{seq.name}.txt"
        write_otb_boxes(boxes_file, pred)
        # Scored as written (2 decimals), as `score` and the OTB toolkit read the file.
        scores = score_result_file(boxes_file, seq.boxes[: len(pred)], seq.annotation)
        scores.update(seconds=round(elapsed, 3), frames_per_second=round(len(pred) / elapsed, 3))
        per_sequence[seq.name] = scores
        frames, seconds = frames + len(pred), seconds + elapsed
        log.debug("%s: %d frames in %.1fs", seq.name, len(pred), elapsed)
    results = {
        "benchmark": benchmark,
        "protocol": PROTOCOL_NOTE,
        "tracker": tracker,
        "settings": dataclasses.asdict(settings),
        "preset": preset,
        "model": model_info or {},
        "max_frames": max_frames,
        **_score_fields(per_sequence),
        "timing": {"frames": frames, "seconds": round(seconds, 3),
                   "frames_per_second": round(frames / seconds, 3) if seconds else 0.0},
    }
    write_tracking_results(results, out_dir / "results.json")
    return results


def score_result_file(path: Path, gt: np.ndarray, annotation: Path) -> dict:
    """`score_sequence` of an OTB-format results file against gt (T, 4) 0-based boxes read from
    ``annotation`` (named in the error when the file does not have one box per ground-truth line)."""
    pred = read_result_boxes(path)
    if len(pred) != len(gt):
        first_unmatched = min(len(pred), len(gt)) + 1
        raise InputError(path, f"{len(pred)} boxes but {len(gt)} ground-truth lines in {annotation}; line "
                               f"{first_unmatched} {'has no ground truth' if len(pred) > len(gt) else 'is missing'}")
    return score_sequence(gt, pred)


def score_tracking(
    root: str | Path,
    results_dir: str | Path,
    *,
    benchmark: Benchmark,
    sequences: Sequence[str] | None = None,
) -> dict:
    """Score ``results_dir/<seq>.txt`` (OTB-format boxes, one line per frame) for every sequence.

    The results dict has `run_tracking`'s schema without what only a run knows (tracker, settings,
    preset, model, max_frames, timing, per-sequence seconds); ``results`` names the folder scored.
    Every file is read and checked before anything is returned; nothing is written here.
    """
    results_dir = Path(results_dir)
    seqs = discover_sequences(root, benchmark, sequences)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    per_sequence = {seq.name: score_result_file(results_dir / f"{seq.name}.txt", seq.boxes, seq.annotation)
                    for seq in seqs}
    return {"benchmark": benchmark, "protocol": PROTOCOL_NOTE, "results": str(results_dir),
            **_score_fields(per_sequence)}


def _score_fields(per_sequence: dict[str, dict]) -> dict:
    """The averages, thresholds and per-sequence scores that `eval` and `score` results share."""
    return {
        **average_scores(per_sequence),
        "overlap_thresholds": OVERLAP_THRESHOLDS.tolist(),
        "error_thresholds_px": ERROR_THRESHOLDS.tolist(),
        "per_sequence": per_sequence,
    }


def write_tracking_results(results: dict, path: str | Path) -> Path:
    """Write results to ``path`` (JSON) and the success plot beside it; returns the plot's path.

    The plot is ``success_plot.png`` beside a ``results.json``, else ``<name>.success_plot.png``.
    """
    path = Path(path)
    plot = path.with_name("success_plot.png") if path.name == "results.json" else path.with_suffix(".success_plot.png")
    draw_success_plot(results, plot)
    write_results_json(results, path)
    return plot


def format_results_table(results: dict) -> str:
    """Per-sequence success AUC, precision@20px and (for a run, not a `score`) speed, then the average."""
    seqs = results["per_sequence"]
    timed = "timing" in results
    width = max([len("sequence"), len("average"), *map(len, seqs)])
    lines = [f"{'sequence':<{width}}  frames  success_auc  {PRECISION_KEY}" + ("  frames/s" if timed else "")]
    for name, s in seqs.items():
        lines.append(f"{name:<{width}}  {s['frames']:>6d}  {s['success_auc']:>11.4f}  {s[PRECISION_KEY]:>14.4f}"
                     + (f"  {s['frames_per_second']:>8.2f}" if timed else ""))
    total = sum(s["frames"] for s in seqs.values())
    lines.append(f"{'average':<{width}}  {total:>6d}  {results['success_auc']:>11.4f}  {results[PRECISION_KEY]:>14.4f}"
                 + (f"  {results['timing']['frames_per_second']:>8.2f}" if timed else ""))
    lines += [f"note: {name}: {s['invalid_gt_frames']} frame(s) without a valid ground-truth box (NaN or "
              f"w/h <= 0), scored as the OTB toolkit does: a miss in success, a hit in precision"
              for name, s in seqs.items() if s.get("invalid_gt_frames")]
    return "\n".join(lines)


def draw_success_plot(results: dict, path: str | Path) -> None:
    """OTB-style success plot (success rate vs overlap threshold), one line per sequence and the mean
    in black, AUC in the legend."""
    curves = [Curve(f"{name} [{seq['success_auc']:.3f}]", OVERLAP_THRESHOLDS, seq["success_curve"],
                    PALETTE[i % len(PALETTE)])
              for i, (name, seq) in enumerate(results["per_sequence"].items())]
    curves.append(Curve(f"average [{results['success_auc']:.3f}]", OVERLAP_THRESHOLDS,
                        results["success_curve"], (0, 0, 0), width=3))
    # `score` results have no tracker: the folder scored names the predictions instead.
    source = results.get("tracker") or Path(results["results"]).name
    line_plot(path, curves, title=f"Success plot of OPE ({results['benchmark']}, {source})",
              x_label="overlap threshold", x_ticks=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
