"""Overlay videos of DAVIS runs: every frame with its propagated masks drawn on it, beside its annotation.

One drawing (`overlay_frames`) for both ways a video is made: while a sequence is propagated
(`vidcorr.evaluate.davis.write_mask_sequence`), and afterwards from the result PNGs of a finished
sequence (`overlay_from_results`, for ``eval davis --resume --overlays`` on sequences an earlier run
finished without overlays), so that the two give the same video.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vidcorr.io.masks import read_mask
from vidcorr.io.video import open_frame_files, write_video
from vidcorr.labels import VOID
from vidcorr.masks import mask_overlay
from vidcorr.propagate import Propagator
from vidcorr.viz import caption, frame_caption, overlay_mask, side_by_side

DAVIS_FPS = 24.0  # the frame rate of DAVIS's 480p sequences (overlay videos)
OVERLAYS = "overlays"  # OUT's folder of overlay videos, beside the sequence folders the scorer reads


def overlay_path(out_dir: Path, seq: str) -> Path:
    """Where `vidcorr.evaluate.davis.run_davis` writes the overlay video of sequence ``seq``."""
    return out_dir / OVERLAYS / f"{seq}.mp4"


def overlay_frames(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], frame_names: Sequence[str], truth: Sequence[Path] = (),
    propagator: Propagator | None = None,
) -> Iterator[np.ndarray]:
    """Draw each ``(frame (H, W, 3) RGB uint8, labels (H, W) uint8 ids)`` of ``pairs``.

    frame_names: the frames' file stems, in order. truth: annotation PNGs; when given, each frame
    shows the propagated masks beside its annotation (matched by file stem; "no annotation" where a
    frame has none) -> (H, 2W + 8, 3), else the masks alone -> (H, W, 3); either way captioned with
    its 0-based frame number (`vidcorr.viz.frame_caption`, "propagated · frame 17"). propagator: the one
    producing ``pairs`` as they are drawn (`vidcorr.masks.mask_overlay`: a `UVCTracker`'s boxes are
    drawn too, so each pair must be drawn before the next frame is propagated, as here).
    """
    annotated = {path.stem: path for path in truth}
    for index, (name, (frame, labels)) in enumerate(zip(frame_names, pairs)):
        drawn = overlay_mask(frame, labels) if propagator is None else mask_overlay(frame, labels, propagator)
        if truth:
            yield _beside_truth(frame, drawn, annotated.get(name), index)
        else:
            yield caption(drawn, frame_caption("", index))


def overlay_from_results(frame_paths: Sequence[Path], results: Path, truth: Sequence[Path], overlay: Path) -> int:
    """Write the overlay video of a finished sequence from its result PNGs, without propagating again.

    frame_paths: the sequence's frames; results: the folder holding ``<frame stem>.png`` for each
    (`InputError` naming a missing or unreadable one). The video equals the one written while
    propagating (`overlay_frames`, same frames, masks and frame rate) except for UVC-track's boxes,
    which are not saved with the masks. Returns the number of frames written.
    """
    names = [path.stem for path in frame_paths]
    written = 0

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal written
        for name, frame in zip(names, open_frame_files(frame_paths)):
            written += 1
            yield frame, read_mask(results / f"{name}.png")

    write_video(overlay, overlay_frames(pairs(), names, truth), fps=DAVIS_FPS)
    return written


def _beside_truth(frame: np.ndarray, propagated: np.ndarray, truth: Path | None, index: int) -> np.ndarray:
    """The propagated overlay (left, captioned with frame number ``index``) beside the annotation
    drawn on the same frame (right) -> (H, 2W + 8, 3)."""
    shown = frame_caption("propagated", index)
    if truth is None:
        return side_by_side([propagated, frame], [shown, "no annotation"])
    annotation = read_mask(truth)
    annotation = np.where(annotation == VOID, 0, annotation)
    return side_by_side([propagated, overlay_mask(frame, annotation)], [shown, "annotation"])
