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

`score_tracking` scores such files (ours or another tracker's) without a model (`vidcorr score
otb|vot`): OPE ``<seq>.txt`` boxes, or baseline trajectories. ``eval`` scores each sequence from the
file it wrote, read back, with the same function (`score_result_file`, `score_trajectory_file`), so
``score`` on ``eval``'s files gives ``eval``'s numbers exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import nn
from tqdm import tqdm

from vidcorr.dcf import DCFSettings
from vidcorr.errors import InputError
from vidcorr.io.tracking import (
    VOT_FAILED,
    VOT_INITIALISED,
    VOT_SKIPPED,
    VOT_TRACKED,
    Benchmark,
    TrackingSequence,
    discover_sequences,
    read_result_boxes,
    read_vot_polygons,
    read_vot_trajectory,
    write_otb_boxes,
    write_vot_trajectory,
)
from vidcorr.io.images import image_size
from vidcorr.metrics.davis import write_results_json
from vidcorr.metrics.tracking import (
    ERROR_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    PRECISION_KEY,
    average_scores,
    score_sequence,
)
from vidcorr.metrics.vot import (
    BURNIN,
    SKIP_INITIALIZE,
    Fragment,
    UnscorableRegion,
    average_supervised,
    eao_curve,
    eao_fragments,
    eao_score,
    frame_overlaps,
    known_ground_truth,
    polygon_valid,
    region_overlap,
    score_overlaps,
)
from vidcorr.metrics.vot import eao_interval as vot_eao_interval
from vidcorr.track import LocaliseSettings, build_tracker, check_first_box, track_video
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
BASELINE_NOTE = (
    "VOT supervised (baseline) experiment, semantics of the VOT2015 toolkit: the tracker starts on frame 0; "
    "a frame whose predicted box has zero overlap with the ground-truth polygon (both bounded to the image) "
    f"is a failure, and the tracker is re-initialised on the ground truth {SKIP_INITIALIZE} frames later; "
    f"accuracy = mean overlap over the predicted frames outside the {BURNIN}-frame burn-in that starts at every "
    "(re-)initialisation; failures = count per sequence. Over sequences: accuracy and robustness (failures) "
    "are per-sequence means, failures their sum, accuracy_pooled the mean over all scored frames. Overlap "
    "is the exact polygon intersection (the toolkit counts pixels). One run (deterministic trackers). "
    "EAO as the VOT toolkit's supervised_eao_score: fragments from each (re-)initialisation to its failure "
    "(or the sequence end), the expected average overlap by sequence length (eao_curve), its mean over "
    "eao_interval (the challenge's, from the toolkit's stack files); meaningful on a whole VOT dataset only."
)
PROTOCOLS = ("ope", "vot-baseline")


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


def trajectory_file(results_dir: Path, sequence: str) -> Path:
    """Where the VOT toolkit keeps a baseline trajectory: ``baseline/<seq>/<seq>_001.txt`` (run 1)."""
    return results_dir / "baseline" / sequence / f"{sequence}_001.txt"


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
    _check_protocol(benchmark, protocol, max_frames)
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
                   **_score_fields(per_sequence), **timing}
    else:
        results = {"benchmark": benchmark, "protocol_name": protocol, "protocol": BASELINE_NOTE, **run,
                   "skip_initialize": SKIP_INITIALIZE, **_baseline_fields(per_sequence, fragments, interval),
                   **timing}
    write_tracking_results(results, out_dir / "results.json")
    return results


def _check_protocol(benchmark: Benchmark, protocol: str, max_frames: int | None) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol == "vot-baseline" and benchmark != "vot":
        raise ValueError(f"the vot-baseline protocol needs VOT sequences, not {benchmark}")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames}")


def _length_mismatch(path: Path, what: str, found: int, expected: int, annotation: Path) -> InputError:
    """The error for a predictions file without exactly one line per scored ground-truth line."""
    first_unmatched = min(found, expected) + 1
    hint = " (from `eval --max-frames N`? score them with --max-frames N)" if found < expected else ""
    return InputError(path, f"{found} {what} but {expected} ground-truth lines in {annotation}; line "
                            f"{first_unmatched} {'has no ground truth' if found > expected else 'is missing'}{hint}")


def score_result_file(path: Path, gt: np.ndarray, annotation: Path) -> dict:
    """`score_sequence` of an OTB-format results file against gt (T, 4) 0-based boxes read from
    ``annotation`` (named in the error when the file does not have one box per ground-truth line)."""
    pred = read_result_boxes(path)
    if len(pred) != len(gt):
        raise _length_mismatch(path, "boxes", len(pred), len(gt), annotation)
    return score_sequence(gt, pred)


def score_trajectory_file(path: Path, polygons: np.ndarray, frame_wh: tuple[int, int],
                          annotation: Path) -> tuple[dict, list[Fragment]]:
    """`score_supervised` of a VOT trajectory file (`read_vot_trajectory`) against polygons (T, 2K)
    read from ``annotation``, in frames of size frame_wh (W, H), and its `eao_fragments`."""
    if not path.is_file():
        raise InputError(path, "trajectory not found (VOT toolkit layout: baseline/<seq>/<seq>_001.txt)")
    status, regions = read_vot_trajectory(path)
    if len(status) != len(polygons):
        raise _length_mismatch(path, "lines", len(status), len(polygons), annotation)
    try:
        overlaps = frame_overlaps(status, regions, polygons, frame_wh)  # once, for the accuracy and EAO
    except UnscorableRegion as error:
        raise InputError(path, f"line {error.frame + 1}: {error} (ground truth: {annotation})") from None
    return score_overlaps(status, overlaps, known_ground_truth(polygons)), eao_fragments(status, overlaps)


def score_tracking(
    root: str | Path,
    results_dir: str | Path,
    *,
    benchmark: Benchmark,
    protocol: str = "ope",
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
    eao_interval: str | tuple[int, int] = "vot2015",
) -> dict:
    """Score saved predictions of every sequence under ``protocol``, as `run_tracking` scores its own.

    ope: ``results_dir/<seq>.txt`` (OTB-format boxes, one line per frame); vot-baseline (VOT only):
    ``results_dir/baseline/<seq>/<seq>_001.txt`` (`trajectory_file`; VOT trajectory codes and boxes).
    max_frames: score only the first N ground-truth frames (files of an ``eval --max-frames N`` run).
    eao_interval: as `run_tracking`'s. The results dict has `run_tracking`'s schema without what
    only a run knows (tracker, settings, preset, model, timing, per-sequence seconds, the baseline's
    skip_initialize); ``results`` names the folder scored. Every file is read and checked before
    anything is returned; nothing is written.
    """
    _check_protocol(benchmark, protocol, max_frames)
    interval = vot_eao_interval(eao_interval)
    results_dir = Path(results_dir)
    seqs = discover_sequences(root, benchmark, sequences)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    scored = {"benchmark": benchmark, "protocol_name": protocol, "results": str(results_dir), "max_frames": max_frames}
    if protocol == "vot-baseline":
        per_sequence, fragments = {}, []
        for seq in seqs:
            polygons = read_vot_polygons(seq.annotation)[:max_frames]
            height, width = image_size(seq.frame_files[0])
            per_sequence[seq.name], seq_fragments = score_trajectory_file(
                trajectory_file(results_dir, seq.name), polygons, (width, height), seq.annotation)
            fragments += seq_fragments
        return {**scored, "protocol": BASELINE_NOTE, **_baseline_fields(per_sequence, fragments, interval)}
    if (results_dir / "baseline").is_dir():
        raise InputError(results_dir, "holds VOT baseline trajectories (baseline/<seq>/<seq>_001.txt, from "
                                      "`eval vot --protocol vot-baseline`): score them with --protocol vot-baseline")
    per_sequence = {seq.name: score_result_file(results_dir / f"{seq.name}.txt", seq.boxes[:max_frames],
                                                seq.annotation)
                    for seq in seqs}
    return {**scored, "protocol": PROTOCOL_NOTE, **_score_fields(per_sequence)}


def _score_fields(per_sequence: dict[str, dict]) -> dict:
    """The averages, thresholds and per-sequence scores that `eval` and `score` results share."""
    return {
        **average_scores(per_sequence),
        "overlap_thresholds": OVERLAP_THRESHOLDS.tolist(),
        "error_thresholds_px": ERROR_THRESHOLDS.tolist(),
        "per_sequence": per_sequence,
    }


def _baseline_fields(per_sequence: dict[str, dict], fragments: list[Fragment],
                     interval: tuple[str | None, tuple[int, int]]) -> dict:
    """The combined scores, EAO and per-sequence scores that `eval` and `score` baseline results share.

    interval: `vidcorr.metrics.vot.eao_interval`'s (name or None, (low, high)).
    """
    curve = eao_curve(fragments)
    name, (low, high) = interval
    return {"burnin": BURNIN, **average_supervised(per_sequence), "eao": eao_score(curve, (low, high)),
            "eao_interval": [low, high], "eao_interval_name": name, "eao_curve": curve.tolist(),
            "per_sequence": per_sequence}


def write_tracking_results(results: dict, path: str | Path) -> Path:
    """Write results to ``path`` (JSON) and its plot beside it, the success plot (OPE) or the EAO
    curve (vot-baseline, `draw_eao_plot`); returns the plot's path.

    The plot is ``success_plot.png`` / ``eao_curve.png`` beside a ``results.json``, else
    ``<name>.success_plot.png`` / ``<name>.eao_curve.png``.
    """
    path = Path(path)
    ope = results["protocol_name"] == "ope"
    stem = "success_plot" if ope else "eao_curve"
    plot = path.with_name(f"{stem}.png") if path.name == "results.json" else path.with_suffix(f".{stem}.png")
    (draw_success_plot if ope else draw_eao_plot)(results, plot)
    write_results_json(results, path)
    return plot


def format_results_table(results: dict) -> str:
    """Per-sequence scores of the results' protocol and (for a run, not a `score`) speed, then the average."""
    if results.get("protocol_name") == "vot-baseline":
        return _format_baseline_table(results)
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


def _format_baseline_table(results: dict) -> str:
    """Per-sequence accuracy, failures and (for a run, not a `score`) speed of vot-baseline results,
    then the combined scores."""
    seqs = results["per_sequence"]
    timed = "timing" in results
    width = max([len("sequence"), len("average"), *map(len, seqs)])
    lines = [f"{'sequence':<{width}}  frames  scored  accuracy  failures" + ("  frames/s" if timed else "")]
    for name, s in seqs.items():
        lines.append(f"{name:<{width}}  {s['frames']:>6d}  {s['scored_frames']:>6d}  {s['accuracy']:>8.4f}  "
                     f"{s['failures']:>8d}" + (f"  {s['frames_per_second']:>8.2f}" if timed else ""))
    total, scored = (sum(s[k] for s in seqs.values()) for k in ("frames", "scored_frames"))
    lines.append(f"{'average':<{width}}  {total:>6d}  {scored:>6d}  {results['accuracy']:>8.4f}  "
                 f"{results['robustness']:>8.2f}" + (f"  {results['timing']['frames_per_second']:>8.2f}" if timed else ""))
    low, high = results["eao_interval"]
    end = len(results["eao_curve"]) - 1  # the longest fragment's last length
    eao = ("not computed (the curve ends before the interval)" if results["eao"] is None
           else f"{results['eao']:.4f}" + (f" (the curve ends at {end})" if end < high else ""))
    lines.append(f"accuracy (mean over sequences) {results['accuracy']:.4f}, pooled over frames "
                 f"{results['accuracy_pooled']:.4f}; failures {results['failures']} in all, robustness "
                 f"{results['robustness']:.2f} failures per sequence; EAO {eao} over lengths {low}-{high} "
                 f"({results['eao_interval_name'] or 'given interval'})")
    return "\n".join(lines)


def draw_eao_plot(results: dict, path: str | Path) -> None:
    """The expected average overlap by sequence length (black), the EAO interval between two grey
    lines, the EAO in the legend."""
    curve, (low, high) = results["eao_curve"], results["eao_interval"]
    lengths = range(len(curve))
    eao = "not computed: the curve ends before the interval" if results["eao"] is None else f"{results['eao']:.3f}"
    name = results["eao_interval_name"] or "EAO"
    curves = [Curve(f"EAO curve [{eao}]", lengths, curve, (0, 0, 0), width=2),
              Curve(f"{name} interval from {low}", (low, low), (0.0, 1.0), (150, 150, 150)),
              Curve(f"{name} interval to {high}", (high, high), (0.0, 1.0), (150, 150, 150))]
    # At least 1: a curve of one value (every fragment failed on its first frame) with the interval
    # 0,0 divided by a step of 0.
    last = max(len(curve) - 1, high, 1)
    step = math.ceil(last / 8 / 50) * 50  # about 8 ticks, multiples of 50 frames
    source = results.get("tracker") or Path(results["results"]).name
    line_plot(path, curves, title=f"Expected average overlap ({results['benchmark']} baseline, {source})",
              x_label="sequence length (frames)", x_ticks=[step * i for i in range(math.ceil(last / step) + 1)])


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
