"""DAVIS semi-supervised benchmark: propagate every sequence of a split, write result PNGs, score.

Ties a model, a propagation preset and a DAVIS root together. The scoring is
`vidcorr.metrics.davis.score_davis` (the official davis2017-evaluation semantics, checked against
../shared/metric-goldens), so ``eval`` and ``score`` write the same results JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidcorr.evaluate.davis_overlays import DAVIS_FPS, overlay_frames, overlay_from_results, overlay_path
from vidcorr.evaluate.davis_overlays import OVERLAYS
from vidcorr.evaluate.ranks import Ranks
from vidcorr.evaluate.runs import check_output_folder, write_item_folder
from vidcorr.evaluate.shards import run_items
from vidcorr.evaluate.timing import run_timing, timed_sequence
from vidcorr.io.atomic import write_json_atomic
from vidcorr.io.davis import DavisDataset
from vidcorr.io.masks import write_indexed_png
from vidcorr.io.video import open_frame_files, write_video
from vidcorr.masks import propagate_mask
from vidcorr.models.external import check_own_module
from vidcorr.metrics.davis import score_davis
from vidcorr.presets import PROTOCOL_SHORT_SIDE, PropagationPreset, customised_preset, preset_knobs
from vidcorr.propagate import Propagator
from vidcorr.runtime import checked_device
from vidcorr.track_uvc import TrackOptions, mask_propagator, track_options
from vidcorr.viz import PALETTE, Curve, line_plot

log = logging.getLogger(__name__)

COMMAND = "eval davis"  # in its run record (`vidcorr.evaluate.runs.RUN_STAMP`)


def write_mask_sequence(
    propagator: Propagator, frames_source: Iterable[np.ndarray], first_mask: np.ndarray, out_dir: Path,
    frame_names: list[str],
    overlay: Path | None = None, truth: Sequence[Path] = (),
) -> int:
    """Propagate ``first_mask`` (H, W) through a video and write one indexed PNG per frame.

    frames_source: RGB uint8 frames (H, W, 3), the first included (`propagate_mask`).
    frame_names: output file stems, one per frame. overlay: also encode the frames with the
    masks drawn on them to this mp4 (`vidcorr.evaluate.davis_overlays.overlay_frames`: UVC-track's
    boxes too; 24 fps, DAVIS's frame rate).
    truth: annotation PNGs; with an overlay, each frame shows the propagated masks beside its
    annotation (matched by file stem; "no annotation" where a frame has none).
    Returns the number of frames written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0

    def masks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal written
        for name, (frame, labels) in zip(frame_names, propagate_mask(propagator, frames_source, first_mask)):
            write_indexed_png(out_dir / f"{name}.png", labels)
            written += 1
            yield frame, labels

    if overlay is None:
        for _ in masks():
            pass
    else:
        write_video(overlay, overlay_frames(masks(), frame_names, truth, propagator), fps=DAVIS_FPS)
    return written


def run_davis(
    encoder: nn.Module,
    preset: str | PropagationPreset,
    root: str | Path,
    out_dir: str | Path,
    *,
    year: str | None = None,
    split: str = "val",
    sequences: list[str] | None = None,
    resolution: str = "480p",
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    model_info: dict | None = None,
    resume: bool = False,
    overlays: bool = False,
    track: bool | TrackOptions | None = None,
    ranks: Ranks | None = None,
) -> dict | None:
    """Propagate and score every sequence; write ``out_dir/<seq>/*.png`` and ``out_dir/results.json``.

    encoder: any module mapping RGB (B, 3, H, W) in [0, 1] to features (B, C, h, w) (ours or
    one's own, docs/propagation.md). preset: a name ("crw", "uvc", "timecycle", "stt") or a
    `PropagationPreset` (`vidcorr.presets.customised_preset` changes its knobs).

    ``out_dir`` must not exist or be empty unless ``resume``. Each sequence is written to a
    temporary folder and renamed when complete, so an interrupted run leaves no half-written
    sequence behind. resume: keep the sequences an interrupted run of the same model, protocol and
    split already finished in ``out_dir`` (its record ``.run.json`` says which run
    that was; another one is refused, naming ``out_dir``) and propagate only the rest; ``timing``
    then covers the whole run, each sequence timed in the session that propagated it (the run record
    keeps the times), and lists the sequences kept. A resume first deletes the temporary
    files a killed run left in ``out_dir`` and ``out_dir/overlays``
    (`vidcorr.evaluate.runs.recorded_run`).
    overlays: also write ``out_dir/overlays/<seq>.mp4``, the frames with the propagated masks drawn
    on them beside their annotations (outside the sequence folders, which hold only what the DAVIS
    scorer reads); for every sequence of the run: a kept sequence without one gets it drawn from its
    result PNGs (`overlay_from_results`; UVC-track's boxes are not saved, so not drawn there).
    resolution: the frames and annotations read and scored, ``"480p"`` (the papers') or
    ``"Full-Resolution"`` (`DavisDataset`); the preset's input size is unchanged, the masks are
    written at the annotations' size (a native-size preset, crw, on frames above 480p logs a warning:
    its protocol is defined on 480p, which ``customised_preset(preset, size=480)`` runs).
    track: propagate with UVC-track (`vidcorr.track_uvc.UVCTracker`, UVC's "ours-track"), True
    or its options, instead of plain propagation.
    device: checked first (`vidcorr.runtime.checked_device`): an unknown one, or CUDA where there is
    none, is a ValueError before ``out_dir`` is created.
    ranks: this process's place under torchrun (`vidcorr.evaluate.ranks.join`; every rank calls
    run_davis alike): each rank propagates its share of the sequences on its own device, rank 0
    alone opens ``out_dir``, scores, writes results.json and returns the results; the other ranks
    return None. None or one rank: a single process.
    Returns the results dict (see `score_davis`, scored with ``per_frame=True``: each object's
    ``J_per_frame`` / ``F_per_frame`` are in it, not in results.json) with ``preset``, ``model``,
    ``timing`` (and ``track``) added.
    """
    ranks = ranks or Ranks()  # None: a single process, rank 0 of 1
    preset, out_dir, track = customised_preset(preset), Path(out_dir), track_options(track)
    # Every rank checks every input (the lowest rank that fails says why, once) before OUT is made.
    dataset, first_masks, propagator = ranks.agree(lambda: _prepare(
        encoder, preset, root, out_dir, year=year, split=split, sequences=sequences, resolution=resolution,
        device=device, batch_size=batch_size, resume=resume, track=track))
    stamp = run_stamp(model_info, preset, dataset, track)
    if ranks.is_main:
        _warn_if_beyond_protocol(preset, first_masks)

    def propagate(seq: str) -> dict:
        time = timed_sequence(propagator, lambda: _propagate_sequence(
            propagator, dataset, seq, first_masks[seq], out_dir, overlays, ranks))
        log.debug("%s: %d frames in %.1fs", seq, time["frames"], time["seconds"])
        return time

    record = run_items(ranks, out_dir, stamp, dataset.sequences, resume=resume,
                       done=lambda seq: (out_dir / seq).is_dir(), work=propagate,
                       desc=f"propagate ({preset.name}{' + track' if track else ''})",
                       sizes=[len(dataset.frames(seq)) for seq in dataset.sequences], folders=[out_dir / OVERLAYS],
                       before=(lambda kept: _overlays_of_kept(dataset, kept, out_dir, tracked=track is not None))
                       if overlays else None)
    if not ranks.is_main:
        return None
    results = score_davis(root, out_dir, dataset.year, split, dataset.sequences, resolution=resolution,
                          per_frame=True)
    results["preset"] = preset.name
    results["preset_knobs"] = preset_knobs(preset)
    results["model"] = model_info or {}
    if track is not None:
        results["track"] = stamp["track"]
    results["timing"] = run_timing(record, propagator.device)
    write_davis_results(results, out_dir / "results.json")
    return results


def _warn_if_beyond_protocol(preset: PropagationPreset, first_masks: dict[str, np.ndarray]) -> None:
    """A native-size preset (crw) on frames above 480p, e.g. ``--resolution Full-Resolution``: say
    that this is no longer its protocol, and how to run it.

    CRW's test.py (``--cropSize -1``) reads DAVIS 480p; at 1080p its radius of 12 cells covers a
    fifth of the share of the frame it covers at 480p and every frame holds 5x the cells: the
    scores are no longer the protocol's (nor cheap). Not refused: larger input is a legitimate choice.
    """
    large = {seq: mask.shape for seq, mask in first_masks.items() if min(mask.shape) > PROTOCOL_SHORT_SIDE}
    if preset.size.mode != "native" or not large:
        return
    seq, (height, width) = next(iter(large.items()))
    log.warning("preset '%s' propagates at the frames' own size and %d of %d sequences are larger than the "
                "480p its protocol was defined on (%s: %dx%d): these J&F are not the %s protocol's. --size %d "
                "propagates at 480p and still scores at the annotations' size.", preset.name, len(large),
                len(first_masks), seq, width, height, preset.name, PROTOCOL_SHORT_SIDE)


def _prepare(encoder: nn.Module, preset: PropagationPreset, root: str | Path, out_dir: Path, *, year: str | None,
             split: str, sequences: list[str] | None, resolution: str, device: str | torch.device, batch_size: int,
             resume: bool, track: TrackOptions | None) -> tuple[DavisDataset, dict[str, np.ndarray], Propagator]:
    """Everything `run_davis` checks and reads before ``out_dir`` is created -> the split, each
    sequence's first mask (H, W) and the propagator."""
    device = checked_device(device)  # an unknown or absent device: ValueError before anything is read
    check_output_folder(out_dir, resume, COMMAND)
    dataset = DavisDataset(root, year, split, resolution, sequences=sequences)
    # Check every sequence's files (headers) and read every first mask up front: a bad file fails
    # before hours of propagation, and before OUT is created, so nothing is left half-written.
    for seq in dataset.sequences:
        dataset.check_sequence(seq)
    first_masks = {seq: dataset.first_mask(seq) for seq in dataset.sequences}
    # Built before OUT too: a module that cannot go to the device or a bad batch_size leaves nothing.
    propagator = mask_propagator(encoder, preset, track, device=device, batch_size=batch_size)
    check_own_module(propagator.encoder, device)  # a module given from Python, checked as --encoder's is
    return dataset, first_masks, propagator


def run_stamp(model_info: dict | None, preset: PropagationPreset, dataset: DavisDataset,
              track: TrackOptions | None) -> dict:
    """What makes two `eval davis` runs' results interchangeable (their run record's stamp): model, protocol, data."""
    stamp = {"command": COMMAND, "model": model_info or {}, "preset": preset_knobs(preset), "year": dataset.year,
             "split": dataset.split}
    if track is not None:  # absent for plain propagation, so earlier runs' stamps still match
        stamp["track"] = asdict(track)
    if dataset.resolution != "480p":  # likewise
        stamp["resolution"] = dataset.resolution
    return stamp


def _propagate_sequence(propagator: Propagator, dataset: DavisDataset, seq: str, first_mask: np.ndarray,
                        out_dir: Path, overlays: bool, ranks: Ranks) -> int:
    """Write ``out_dir/<seq>/*.png`` (and ``out_dir/overlays/<seq>.mp4``); returns the frame count.

    The PNGs go to a hidden ``.<seq>.partial`` folder renamed when complete (`write_item_folder`):
    an interrupted sequence leaves nothing that `score_davis` or ``--resume`` would take for a result.
    Under torchrun (``ranks``, rank 0 of 1 for a single process) it stops within a frame of another
    rank's failure.
    """
    frame_paths = dataset.frames(seq)
    frames = open_frame_files(frame_paths)
    # Exactly the frames named: each prediction PNG is named after the frame it was made for.
    return write_item_folder(out_dir, seq, lambda folder: write_mask_sequence(
        propagator, ranks.checked(frames), first_mask, folder, [p.stem for p in frame_paths],
        overlay=overlay_path(out_dir, seq) if overlays else None, truth=dataset.masks(seq)))


def _overlays_of_kept(dataset: DavisDataset, kept: list[str], out_dir: Path, *, tracked: bool) -> None:
    """Write ``out_dir/overlays/<seq>.mp4`` from the result PNGs of each kept sequence that has none
    (its run was made without --overlays, or killed before): --overlays promises one per sequence."""
    missing = [seq for seq in kept if not overlay_path(out_dir, seq).is_file()]
    if missing:
        log.info("drawing the overlay videos of %d kept sequence(s) from their result PNGs%s", len(missing),
                 " (without UVC-track's boxes, which are not saved)" if tracked else "")
    for seq in missing:
        overlay_from_results(dataset.frames(seq), out_dir / seq, dataset.masks(seq), overlay_path(out_dir, seq))


def write_davis_results(results: dict, path: str | Path) -> Path | None:
    """Write `score_davis` results to ``path`` (JSON) and, when they hold per-frame J, a plot beside it.

    results: as `score_davis` returns them (not changed here). The JSON keeps the official tool's
    per-object measures; per-frame lists (``per_frame=True``) go into the plot, not the JSON. The
    plot is ``j_per_frame.png`` beside a ``results.json`` (else ``<name>.j_per_frame.png``): one line
    per object, J (region IoU) of every scored frame, where a person sees at a glance which object
    drifted and when. Returns the plot's path, or None when the results have no per-frame J (scored
    without ``per_frame=True``, or read back from a results.json): then only the JSON is written.
    """
    path = Path(path)
    per_object = results["per_object"]
    per_frame = {name: obj["J_per_frame"] for name, obj in per_object.items() if "J_per_frame" in obj}
    if per_frame and len(per_frame) != len(per_object):
        missing = sorted(set(per_object) - set(per_frame))
        raise ValueError(f"results hold per-frame J for some objects but not {', '.join(missing)}; score them "
                         "all with score_davis(..., per_frame=True)")
    # A copy without the per-frame lists: the caller's results stay as they were (popping them would
    # make a second write, or run_davis's returned results, fail with "needs per_frame=True").
    drop = ("J_per_frame", "F_per_frame")
    written = {**results, "per_object": {name: {k: v for k, v in obj.items() if k not in drop}
                                         for name, obj in per_object.items()}}
    plot = None
    if per_frame:
        plot = (path.with_name("j_per_frame.png") if path.name == "results.json"
                else path.with_suffix(".j_per_frame.png"))
        draw_j_per_frame(per_frame, written, plot)
    write_json_atomic(written, path)
    return plot


def draw_j_per_frame(per_frame: dict[str, list[float]], results: dict, path: str | Path) -> None:
    """per_frame: {"<seq>_<id>": J of frames 1..T-2}; legend: each object's J-Mean."""
    longest = max(len(j) for j in per_frame.values()) + 1
    step = next(s for s in (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000) if longest / s <= 10)
    ticks = [float(t) for t in range(0, -(-longest // step) * step + 1, step)]
    curves = [Curve(f"{name} [{results['per_object'][name]['J-Mean']:.3f}]", range(1, len(j) + 1), j,
                    PALETTE[i % len(PALETTE)])
              for i, (name, j) in enumerate(per_frame.items())]
    title = f"DAVIS J (region IoU) per frame, {len(curves)} object(s): J&F-Mean {results['J&F-Mean']:.3f}"
    line_plot(path, curves, title=title, x_label="frame", x_ticks=ticks, y_label="J (region IoU)")
