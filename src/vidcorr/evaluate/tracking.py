"""OTB / VOT box-tracking benchmark: track every sequence, write its boxes, score it.

Two protocols (``protocol=``, recorded in results.json as ``protocol_name``):

* ``"ope"`` (default, both benchmarks): OTB's one-pass evaluation (`vidcorr.metrics.tracking`): the
  tracker starts from the first ground-truth box and is never re-initialised. On VOT sequences this
  is OTB's success and precision on VOT footage, not VOT's accuracy / robustness.
* ``"vot-baseline"`` (VOT only): VOT's supervised experiment (`vidcorr.metrics.vot`, `run_supervised`):
  the tracker is re-initialised on the ground truth 5 frames after each failure (zero overlap with
  the polygon); accuracy and failures are scored against the ground-truth polygons.

Outputs in ``out_dir``. OPE: ``<seq>.txt`` predicted boxes in OTB format (1-based ``x,y,w,h``),
``results.json`` (schema in docs/tracking.md) and ``success_plot.png`` (drawn with Pillow).
Baseline: ``baseline/<seq>/<seq>_001.txt`` (the VOT toolkit's results layout and trajectory format)
and ``results.json``.

This module runs trackers; scoring saved files, the results' fields, table and plots live in
`vidcorr.evaluate.tracking_results`, which `vidcorr score otb|vot` uses without a model. ``eval``
scores each sequence from the file it wrote, read back, with the same function there
(`score_result_file`, `score_trajectory_file`), so ``score`` on ``eval``'s files gives ``eval``'s
numbers exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import nn
from tqdm import tqdm

from vidcorr.dcf import DCFSettings
from vidcorr.evaluate.tracking_results import (
    BASELINE_NOTE,
    PROTOCOL_NOTE,
    baseline_fields,
    check_protocol,
    score_fields,
    score_result_file,
    score_trajectory_file,
    trajectory_file,
    write_tracking_results,
)
from vidcorr.io.tracking import (
    Benchmark,
    TrackingSequence,
    discover_sequences,
    read_vot_polygons,
    write_otb_boxes,
)
from vidcorr.io.vot_trajectory import (
    VOT_FAILED,
    VOT_INITIALISED,
    VOT_SKIPPED,
    VOT_TRACKED,
    write_vot_trajectory,
)
from vidcorr.metrics.vot import SKIP_INITIALIZE, Fragment, polygon_valid, region_overlap
from vidcorr.metrics.vot import eao_interval as vot_eao_interval
from vidcorr.track import LocaliseSettings, build_tracker, check_first_box, track_video

log = logging.getLogger(__name__)


class BoxTracker(Protocol):
    """What `run_supervised` drives: `vidcorr.track.LocaliseTracker`, `vidcorr.dcf.DCFTracker`.
    ``init`` must reset all state, so that a re-initialised tracker equals a fresh one."""

    def init(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def update(self, frame: np.ndarray) -> tuple[float, float, float, float]: ...


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
    frames = itertools.islice(seq.open_frames(), n)
    boxes = track_video(encoder, tqdm(frames, total=n, desc=seq.name, unit="frame", leave=False),
                        tuple(seq.boxes[0]), settings=settings, device=device)
    return np.array(list(boxes), np.float64).reshape(-1, 4)


def _can_start(box: np.ndarray, frame: np.ndarray) -> bool:
    """Whether a tracker can be initialised on ``box`` in ``frame`` (`check_first_box`'s rules)."""
    try:
        check_first_box(tuple(box), frame.shape[:2])
    except ValueError:
        return False
    return True


def run_supervised(
    tracker: BoxTracker,
    frames: Iterable[np.ndarray],
    init_boxes: np.ndarray,
    polygons: np.ndarray,
    *,
    skip: int = SKIP_INITIALIZE,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """VOT's supervised experiment on one sequence (the toolkit's ``SupervisedExperiment.execute``).

    frames: RGB (H, W, 3), consumed one at a time; init_boxes: (T, 4) ground-truth boxes the tracker
    is (re-)initialised on; polygons: (T, 2K) ground truth that failures are judged on.
    A frame whose prediction has overlap 0 with its polygon is coded `VOT_FAILED`; the next
    ``skip - 1`` frames are `VOT_SKIPPED` and the tracker restarts on frame ``failure + skip``
    (`VOT_INITIALISED`). Ours, for annotations VOT2015 does not have: a frame without a valid
    ground-truth polygon cannot fail, and a restart whose box is missing or outside the frame moves
    to the next frame that has one (the frames in between are skipped).
    Returns status (T,) codes or `VOT_TRACKED`, boxes (T, 4) (NaN where not tracked), frame (W, H).
    """
    n = len(init_boxes)
    status = np.full(n, VOT_SKIPPED, np.int64)
    boxes = np.full((n, 4), np.nan)
    restart, frame_wh = 0, (0, 0)
    for t, frame in zip(range(n), frames):
        frame_wh = (frame.shape[1], frame.shape[0])
        if t < restart:
            continue
        if t == restart:
            if _can_start(init_boxes[t], frame):
                tracker.init(frame, tuple(float(v) for v in init_boxes[t]))
                status[t] = VOT_INITIALISED
            else:
                restart += 1
            continue
        box = np.asarray(tracker.update(frame), np.float64)
        if polygon_valid(polygons[t]) and region_overlap(box, polygons[t], frame_wh) <= 0:
            status[t], restart = VOT_FAILED, t + skip
        else:
            status[t], boxes[t] = VOT_TRACKED, box
    return status, boxes, frame_wh


def _timed(scores: dict, frames: int, elapsed: float) -> dict:
    return {**scores, "seconds": round(elapsed, 3), "frames_per_second": round(frames / elapsed, 3)}


def _ope_sequence(encoder: nn.Module, seq: TrackingSequence, out_dir: Path, settings, device: str,
                  max_frames: int | None) -> dict:
    """Track one sequence from its first box, write ``<seq>.txt``, score it (OPE)."""
    start = time.perf_counter()
    pred = track_sequence(encoder, seq, settings, device=device, max_frames=max_frames)
    elapsed = time.perf_counter() - start
    boxes_file = out_dir / f"{seq.name}.txt"
    write_otb_boxes(boxes_file, pred)
    # Scored as written (2 decimals), as `score` and the OTB toolkit read the file.
    return _timed(score_result_file(boxes_file, seq.boxes[: len(pred)], seq.annotation), len(pred), elapsed)


def _baseline_sequence(encoder: nn.Module, seq: TrackingSequence, out_dir: Path, settings, device: str,
                       max_frames: int | None) -> tuple[dict, list[Fragment]]:
    """Run VOT's supervised experiment on one sequence, write its trajectory file, score it:
    -> (its scores, its EAO fragments)."""
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    polygons = read_vot_polygons(seq.annotation)[:n]
    start = time.perf_counter()
    frames = tqdm(itertools.islice(seq.open_frames(), n), total=n, desc=seq.name, unit="frame",
                  leave=False)
    status, boxes, frame_wh = run_supervised(build_tracker(encoder, settings, device), frames, seq.boxes[:n], polygons)
    elapsed = time.perf_counter() - start
    path = trajectory_file(out_dir, seq.name)
    path.parent.mkdir(parents=True)
    write_vot_trajectory(path, status, boxes)
    # Scored as written (4 decimals), as `score` and the toolkit read the file.
    scores, fragments = score_trajectory_file(path, polygons, frame_wh, seq.annotation)
    return _timed(scores, n, elapsed), fragments


def run_tracking(
    encoder: nn.Module,
    root: str | Path,
    out_dir: str | Path,
    *,
    benchmark: Benchmark,
    settings: LocaliseSettings | DCFSettings,
    protocol: str = "ope",
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
    device: str = "cpu",
    model_info: dict | None = None,
    preset: str | None = None,
    eao_interval: str | tuple[int, int] = "vot2015",
) -> dict:
    """Track and score every sequence under ``protocol`` ("ope" or, for VOT, "vot-baseline"); write
    the per-sequence files, ``results.json`` and a plot (``success_plot.png`` for OPE,
    ``eao_curve.png`` for the baseline).

    max_frames: track and score only the first N frames of each sequence (smoke tests, quick runs).
    eao_interval: the baseline's EAO sequence-length interval, a challenge (`EAO_INTERVALS`) or
    (low, high). Returns the results dict written to ``results.json``.
    """
    check_protocol(benchmark, protocol, max_frames)
    interval = vot_eao_interval(eao_interval)
    seqs = discover_sequences(root, benchmark, sequences)  # every annotation checked before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = "localise" if isinstance(settings, LocaliseSettings) else "dcf"
    per_sequence, fragments = {}, []
    for seq in tqdm(seqs, desc=f"{benchmark} {protocol} ({tracker})", unit="seq"):
        if protocol == "ope":
            per_sequence[seq.name] = _ope_sequence(encoder, seq, out_dir, settings, device, max_frames)
        else:
            per_sequence[seq.name], seq_fragments = _baseline_sequence(encoder, seq, out_dir, settings, device,
                                                                       max_frames)
            fragments += seq_fragments
        log.debug("%s: %d frames in %.1fs", seq.name, per_sequence[seq.name]["frames"],
                  per_sequence[seq.name]["seconds"])
    frames = sum(s["frames"] for s in per_sequence.values())
    seconds = sum(s["seconds"] for s in per_sequence.values())
    run = {"tracker": tracker, "settings": dataclasses.asdict(settings), "preset": preset,
           "model": model_info or {}, "max_frames": max_frames}
    timing = {"timing": {"frames": frames, "seconds": round(seconds, 3),
                         "frames_per_second": round(frames / seconds, 3) if seconds else 0.0}}
    if protocol == "ope":
        results = {"benchmark": benchmark, "protocol_name": "ope", "protocol": PROTOCOL_NOTE, **run,
                   **score_fields(per_sequence), **timing}
    else:
        results = {"benchmark": benchmark, "protocol_name": protocol, "protocol": BASELINE_NOTE, **run,
                   "skip_initialize": SKIP_INITIALIZE, **baseline_fields(per_sequence, fragments, interval),
                   **timing}
    write_tracking_results(results, out_dir / "results.json")
    return results

