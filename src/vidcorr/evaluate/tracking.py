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
and ``results.json``. Both: ``.run.json``, the run record that ``--resume`` continues from
(`vidcorr.evaluate.runs`).

This module runs trackers; scoring saved files, the results' fields, table and plots live in
`vidcorr.evaluate.tracking_results`, which `vidcorr score otb|vot` uses without a model. ``eval``
scores every sequence from the file it wrote, read back, with the same function there
(`score_saved_sequences`), so ``score`` on ``eval``'s files gives ``eval``'s numbers exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
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
    prediction_file,
    score_fields,
    score_saved_sequences,
    write_tracking_results,
)
from vidcorr.evaluate.ranks import Ranks
from vidcorr.evaluate.runs import RunRecord, check_output_folder
from vidcorr.evaluate.shards import run_items
from vidcorr.evaluate.timing import rank_timing
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
from vidcorr.models.external import check_own_module
from vidcorr.metrics.vot import SKIP_INITIALIZE, polygon_valid, region_overlap
from vidcorr.metrics.vot import eao_interval as vot_eao_interval
from vidcorr.progress import inner_bar_options
from vidcorr.track import LocaliseSettings, build_tracker, check_first_box, track_video

log = logging.getLogger(__name__)

COMMANDS = {"otb": "eval otb", "vot": "eval vot"}  # in the run record (`vidcorr.evaluate.runs.RUN_STAMP`)


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
    ranks: Ranks | None = None,
) -> np.ndarray:
    """Track ``seq`` from its first box: -> predicted boxes (T, 4), 0-based, T = len(seq) or max_frames.
    ranks: under torchrun, stop within a frame of another rank's failure (`Ranks.checked`); None: a
    single process."""
    _, frames = _first_frames(seq, max_frames, ranks or Ranks())
    boxes = track_video(encoder, frames, tuple(seq.boxes[0]), settings=settings, device=device)
    return np.array(list(boxes), np.float64).reshape(-1, 4)


def _first_frames(seq: TrackingSequence, max_frames: int | None, ranks: Ranks) -> tuple[int, Iterator[np.ndarray]]:
    """The first ``max_frames`` frames of ``seq`` (all of them without), decoded lazily behind a
    progress bar (under torchrun checked for a failed rank, `Ranks.checked`) -> (their count, the frames)."""
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    # Under eval's sequences' bar on a terminal only; called alone (from a notebook) shown anywhere.
    frames = tqdm(itertools.islice(seq.open_frames(), n), total=n, desc=seq.name, unit="frame", leave=False,
                  **inner_bar_options())
    return n, ranks.checked(frames)


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


def _timed(scores: dict, time: dict) -> dict:
    """A sequence's scores with what tracking it took (``time`` as the run record keeps it)."""
    frames, elapsed = time["frames"], time["seconds"]
    return {**scores, "seconds": round(elapsed, 3), "frames_per_second": _per_second(frames, elapsed)}


def _ope_sequence(encoder: nn.Module, seq: TrackingSequence, path: Path, settings, device: str,
                  max_frames: int | None, ranks: Ranks) -> dict[str, float]:
    """Track one sequence from its first box and write its boxes to ``path`` (OPE) -> what it took."""
    start = time.perf_counter()
    pred = track_sequence(encoder, seq, settings, device=device, max_frames=max_frames, ranks=ranks)
    elapsed = time.perf_counter() - start
    write_otb_boxes(path, pred)
    return {"frames": len(pred), "seconds": elapsed}


def _baseline_sequence(encoder: nn.Module, seq: TrackingSequence, path: Path, settings, device: str,
                       max_frames: int | None, ranks: Ranks) -> dict[str, float]:
    """Run VOT's supervised experiment on one sequence and write its trajectory to ``path`` -> what it took."""
    polygons = read_vot_polygons(seq.annotation)
    start = time.perf_counter()
    n, frames = _first_frames(seq, max_frames, ranks)
    status, boxes, _ = run_supervised(build_tracker(encoder, settings, device), frames, seq.boxes[:n], polygons[:n])
    elapsed = time.perf_counter() - start
    write_vot_trajectory(path, status, boxes)
    return {"frames": n, "seconds": elapsed}


def _track_sequences(encoder: nn.Module, seqs: list[TrackingSequence], out_dir: Path, benchmark: Benchmark,
                     protocol: str, run: dict, *, settings: LocaliseSettings | DCFSettings, device: str,
                     resume: bool, ranks: Ranks) -> RunRecord:
    """Track every sequence the run record of ``out_dir`` does not hold finished yet, each written to
    its prediction file and then recorded (`run_items`, stamped with the command, ``protocol`` and
    ``run``; under torchrun this rank's share) -> the record: the kept and newly finished sequences
    and what each took."""
    command, max_frames = COMMANDS[benchmark], run["max_frames"]
    files = {seq.name: prediction_file(out_dir, seq.name, protocol) for seq in seqs}
    folders = [] if protocol == "ope" else [*(path.parent for path in files.values()), out_dir / "baseline"]
    track_one = _ope_sequence if protocol == "ope" else _baseline_sequence
    by_name = {seq.name: seq for seq in seqs}

    def track(name: str) -> dict[str, float]:
        took = track_one(encoder, by_name[name], files[name], settings, device, max_frames, ranks)
        log.debug("%s: %d frames in %.1fs", name, took["frames"], took["seconds"])
        return took

    return run_items(ranks, out_dir, {"command": command, "protocol": protocol, **run}, list(files), resume=resume,
                     done=lambda name: files[name].is_file(), work=track, folders=folders,
                     desc=f"{benchmark} {protocol} ({run['tracker']})",
                     sizes=[min(len(seq.boxes), max_frames or len(seq.boxes)) for seq in seqs])


def _scored_results(seqs: list[TrackingSequence], out_dir: Path, benchmark: Benchmark, protocol: str, run: dict,
                    record: RunRecord, interval: tuple[str | None, tuple[int, int]]) -> dict:
    """Score every sequence from its file in ``out_dir`` -> results.json's dict (docs/tracking.md):
    the protocol, ``run``, the protocol's scores and the run's ``timing``."""
    # Scored as written (2 decimals for OPE, 4 for trajectories), as `score` and the toolkits read them.
    scores, fragments = score_saved_sequences(seqs, out_dir, protocol, run["max_frames"])
    per_sequence = {name: _timed(sequence_scores, record.times[name]) for name, sequence_scores in scores.items()}
    head = {"benchmark": benchmark, "protocol_name": protocol,
            "protocol": PROTOCOL_NOTE if protocol == "ope" else BASELINE_NOTE, **run}
    if protocol == "ope":
        fields = score_fields(per_sequence)
    else:
        fields = {"skip_initialize": SKIP_INITIALIZE, **baseline_fields(per_sequence, fragments, interval)}
    return {**head, **fields, "timing": {**_run_timing(per_sequence, record.kept), **rank_timing(record)}}


def _run_timing(per_sequence: dict[str, dict], kept: list[str]) -> dict:
    """results.json's ``timing``: the sequences' frames and seconds summed, and the sequences kept
    from an earlier session (``kept_from_earlier_run``) when the run was resumed."""
    frames = sum(s["frames"] for s in per_sequence.values())
    seconds = sum(s["seconds"] for s in per_sequence.values())
    timing = {"frames": frames, "seconds": round(seconds, 3), "frames_per_second": _per_second(frames, seconds)}
    if kept:
        timing["kept_from_earlier_run"] = kept
    return timing


def _per_second(frames: int, seconds: float) -> float:
    return round(frames / seconds, 3) if seconds else 0.0


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
    resume: bool = False,
    ranks: Ranks | None = None,
) -> dict | None:
    """Track and score every sequence under ``protocol`` ("ope" or, for VOT, "vot-baseline"); write
    the per-sequence files, ``results.json`` and a plot (``success_plot.png`` for OPE,
    ``eao_curve.png`` for the baseline).

    max_frames: track and score only the first N frames of each sequence (smoke tests, quick runs).
    eao_interval: the baseline's EAO sequence-length interval, a challenge (`EAO_INTERVALS`) or
    (low, high). ``out_dir`` must not exist or be empty unless ``resume``: keep the sequences an
    interrupted run of the same model, tracker, settings, protocol and max_frames finished there
    (`vidcorr.evaluate.runs.recorded_run`; another run is refused, naming what changed) and track
    only the rest. Each sequence's file is written atomically and recorded as finished once in
    place; every sequence is scored from its file, read back, kept or not, so a resumed run's
    results equal an uninterrupted one's (the times are each sequence's, from the session that
    tracked it). Returns the results dict written to ``results.json``. ranks: under torchrun each rank
    tracks its share of the sequences; rank 0 alone scores and returns the results, the others None
    (docs/metrics.md, "Several processes").
    """
    ranks = ranks or Ranks()  # None: a single process, rank 0 of 1
    out_dir = Path(out_dir)

    def prepare() -> tuple[tuple[str | None, tuple[int, int]], list[TrackingSequence]]:  # every rank, before OUT
        check_protocol(benchmark, protocol, max_frames)
        interval = vot_eao_interval(eao_interval)
        check_output_folder(out_dir, resume, COMMANDS[benchmark])
        check_own_module(encoder, device)  # a module given from Python, checked as --encoder's is
        return interval, discover_sequences(root, benchmark, sequences)  # every annotation checked before any work

    interval, seqs = ranks.agree(prepare)
    run = {"tracker": "localise" if isinstance(settings, LocaliseSettings) else "dcf",
           "settings": dataclasses.asdict(settings), "preset": preset, "model": model_info or {},
           "max_frames": max_frames}
    record = _track_sequences(encoder, seqs, out_dir, benchmark, protocol, run, settings=settings, device=device,
                              resume=resume, ranks=ranks)
    if not ranks.is_main:
        return None
    results = _scored_results(seqs, out_dir, benchmark, protocol, run, record, interval)
    write_tracking_results(results, out_dir / "results.json")
    return results

