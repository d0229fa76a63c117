"""OTB / VOT tracking results without a model: score saved predictions, build, print, write and plot results.

`score_tracking` scores a folder of predictions (ours or another tracker's; `vidcorr score
otb|vot`): OPE ``<seq>.txt`` boxes, or baseline trajectories (`trajectory_file`). The runner,
`vidcorr.evaluate.tracking`, scores each sequence from the file it wrote, read back, with the same
function (`score_result_file`, `score_trajectory_file`) and builds ``results.json`` from the same
fields (`score_fields`, `baseline_fields`), so ``score`` on ``eval``'s files gives ``eval``'s
numbers exactly. Also here: the protocols (`PROTOCOLS`, `PROTOCOL_NOTE`, `BASELINE_NOTE`), the
results file and its plot (`write_tracking_results`, `draw_success_plot`, `draw_eao_plot`) and the
printed table (`format_results_table`).

Separate from the runner because none of it runs a tracker or needs a model: the runner imports
this module, never the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.atomic import write_json_atomic
from vidcorr.io.images import image_size
from vidcorr.io.tracking import (
    Benchmark,
    TrackingSequence,
    discover_sequences,
    read_result_boxes,
    read_vot_polygons,
)
from vidcorr.io.vot_trajectory import read_vot_trajectory
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
    score_overlaps,
)
from vidcorr.metrics.vot import eao_interval as vot_eao_interval
from vidcorr.viz import PALETTE, Curve, line_plot

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


def trajectory_file(results_dir: Path, sequence: str) -> Path:
    """Where the VOT toolkit keeps a baseline trajectory: ``baseline/<seq>/<seq>_001.txt`` (run 1)."""
    return results_dir / "baseline" / sequence / f"{sequence}_001.txt"


def check_protocol(benchmark: Benchmark, protocol: str, max_frames: int | None) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol == "vot-baseline" and benchmark != "vot":
        raise ValueError(f"the vot-baseline protocol needs VOT sequences, not {benchmark}")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames}")


def _length_mismatch(path: Path, what: str, found: int, total: int, annotation: Path,
                     max_frames: int | None = None) -> InputError:
    """The error for a predictions file without exactly one line per scored ground-truth line
    (total: the annotation's frames; max_frames: only the first of them were scored)."""
    expected = total if max_frames is None else min(total, max_frames)
    if max_frames is not None and expected == max_frames:  # the ground truth was cut: name the N that fits
        fix = ("; score it without --max-frames" if found == total else
               f"; score it with --max-frames {found}" if 2 <= found < total else
               f", which has {total} lines" if found > total else "")
        return InputError(path, f"{found} {what} but --max-frames {max_frames} scores the first {expected} frames "
                                f"of {annotation}{fix}")
    first_unmatched = min(found, expected) + 1
    hint = " (from `eval --max-frames N`? score them with --max-frames N)" if found < expected else ""
    return InputError(path, f"{found} {what} but {expected} ground-truth lines in {annotation}; line "
                            f"{first_unmatched} {'has no ground truth' if found > expected else 'is missing'}{hint}")


def score_result_file(path: Path, gt: np.ndarray, annotation: Path, max_frames: int | None = None) -> dict:
    """`score_sequence` of an OTB-format results file against gt (T, 4) 0-based boxes read from
    ``annotation`` (named in the error when the file does not have one box per scored ground-truth
    line); max_frames: score only the first N (files of an ``eval --max-frames N`` run)."""
    pred = read_result_boxes(path)
    scored = gt[:max_frames]
    if len(pred) != len(scored):
        raise _length_mismatch(path, "boxes", len(pred), len(gt), annotation, max_frames)
    return score_sequence(scored, pred)


def score_trajectory_file(path: Path, polygons: np.ndarray, frame_wh: tuple[int, int],
                          annotation: Path, max_frames: int | None = None) -> tuple[dict, list[Fragment]]:
    """`score_supervised` of a VOT trajectory file (`read_vot_trajectory`) against polygons (T, 2K)
    read from ``annotation``, in frames of size frame_wh (W, H), and its `eao_fragments`
    (``max_frames`` as `score_result_file`'s)."""
    if not path.is_file():
        raise InputError(path, "trajectory not found (VOT toolkit layout: baseline/<seq>/<seq>_001.txt)")
    status, regions = read_vot_trajectory(path)
    scored = polygons[:max_frames]
    if len(status) != len(scored):
        raise _length_mismatch(path, "lines", len(status), len(polygons), annotation, max_frames)
    try:
        overlaps = frame_overlaps(status, regions, scored, frame_wh)  # once, for the accuracy and EAO
    except UnscorableRegion as error:
        raise InputError(path, f"line {error.frame + 1}: {error} (ground truth: {annotation})") from None
    return score_overlaps(status, overlaps, known_ground_truth(scored)), eao_fragments(status, overlaps)


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
    check_protocol(benchmark, protocol, max_frames)
    interval = vot_eao_interval(eao_interval)
    results_dir = Path(results_dir)
    seqs = discover_sequences(root, benchmark, sequences)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    scored = {"benchmark": benchmark, "protocol_name": protocol, "results": str(results_dir), "max_frames": max_frames}
    if protocol == "ope" and (results_dir / "baseline").is_dir():
        # `score otb` has no --protocol: name the command that scores them, not an option it lacks.
        how = ("--protocol vot-baseline" if benchmark == "vot" else
               "`vidcorr score vot --root VOT_ROOT --protocol vot-baseline` (the VOT sequences they were run on)")
        raise InputError(results_dir, "holds VOT baseline trajectories (baseline/<seq>/<seq>_001.txt, from "
                                      f"`eval vot --protocol vot-baseline`): score them with {how}")
    if protocol == "vot-baseline" and not (results_dir / "baseline").is_dir():
        _refuse_ope_boxes(seqs, results_dir)
    if sequences is None:
        _refuse_partial_run(seqs, results_dir, protocol)
    per_sequence, fragments = score_saved_sequences(seqs, results_dir, protocol, max_frames)
    if protocol == "vot-baseline":
        return {**scored, "protocol": BASELINE_NOTE, **baseline_fields(per_sequence, fragments, interval)}
    return {**scored, "protocol": PROTOCOL_NOTE, **score_fields(per_sequence)}


def _refuse_ope_boxes(seqs: Sequence[TrackingSequence], results_dir: Path) -> None:
    """A folder of OPE boxes (`<seq>.txt`, `eval vot` without --protocol) scored as baseline trajectories
    is named as such, as the reverse mix-up is, not only as the first sequence's missing trajectory."""
    held = [seq.name for seq in seqs if prediction_file(results_dir, seq.name, "ope").is_file()]
    if held:
        raise InputError(results_dir, f"holds one-pass (OPE) boxes ({held[0]}.txt, from `eval vot` without "
                                      "--protocol), not VOT baseline trajectories (baseline/<seq>/<seq>_001.txt): "
                                      "score them without --protocol vot-baseline")


def _refuse_partial_run(seqs: Sequence[TrackingSequence], results_dir: Path, protocol: str) -> None:
    """A folder holding only some sequences' predictions (an ``eval --sequences`` run) is refused
    with the --sequences that scores it, not only as the first sequence's missing file."""
    held = [seq.name for seq in seqs if prediction_file(results_dir, seq.name, protocol).is_file()]
    if held and len(held) < len(seqs):
        missing = next(seq.name for seq in seqs if seq.name not in held)
        raise InputError(prediction_file(results_dir, missing, protocol),
                         f"results file not found; {results_dir} holds predictions of {', '.join(held)} only "
                         f"(an eval --sequences run?): score them with --sequences {','.join(held)}")


def prediction_file(results_dir: Path, sequence: str, protocol: str) -> Path:
    """Where a run under ``protocol`` keeps a sequence's predictions: ``<seq>.txt`` (OPE) or its
    baseline trajectory (`trajectory_file`)."""
    return results_dir / f"{sequence}.txt" if protocol == "ope" else trajectory_file(results_dir, sequence)


def score_saved_sequences(seqs: Sequence[TrackingSequence], results_dir: Path, protocol: str,
                          max_frames: int | None) -> tuple[dict[str, dict], list[Fragment]]:
    """Score each sequence's saved predictions (`prediction_file`) -> ({name: scores}, the baseline's EAO
    fragments, none for OPE); `score_tracking` and `eval` (`run_tracking`) read them alike."""
    per_sequence, fragments = {}, []
    for seq in seqs:
        path = prediction_file(results_dir, seq.name, protocol)
        if protocol == "ope":
            per_sequence[seq.name] = score_result_file(path, seq.boxes, seq.annotation, max_frames)
            continue
        height, width = image_size(seq.frame_files[0])
        per_sequence[seq.name], seq_fragments = score_trajectory_file(
            path, read_vot_polygons(seq.annotation), (width, height), seq.annotation, max_frames)
        fragments += seq_fragments
    return per_sequence, fragments


def score_fields(per_sequence: dict[str, dict]) -> dict:
    """The averages, thresholds and per-sequence scores that `eval` and `score` results share."""
    return {
        **average_scores(per_sequence),
        "overlap_thresholds": OVERLAP_THRESHOLDS.tolist(),
        "error_thresholds_px": ERROR_THRESHOLDS.tolist(),
        "per_sequence": per_sequence,
    }


def baseline_fields(per_sequence: dict[str, dict], fragments: list[Fragment],
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
    write_json_atomic(results, path)
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
                 f"{results['robustness']:>8.2f}"
                 + (f"  {results['timing']['frames_per_second']:>8.2f}" if timed else ""))
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
              x_label="sequence length (frames)", x_ticks=[step * i for i in range(math.ceil(last / step) + 1)],
              y_label="expected average overlap")


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
              x_label="overlap threshold", x_ticks=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), y_label="success rate")
