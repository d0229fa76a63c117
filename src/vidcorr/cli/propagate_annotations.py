"""What `vidcorr propagate` carries through a video, one kind each (`Annotation`): a mask (indexed
PNGs), soft labels (.npy), keypoints (keypoints.json) or a box (boxes.json), each checked before the
model is loaded, written frame by frame, and drawn on the overlay video (`vidcorr.cli.propagate_cmd`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcorr.errors import InputError

DEFAULT_TRACKER = "localise"  # of --box
log = logging.getLogger("vidcorr.cli.propagate_cmd")  # the command's warnings, under the command's name


@dataclass(frozen=True)
class Annotation:
    """A checked first-frame annotation of one kind.

    write(propagator, source, out_dir, draw) propagates it, writes each frame's results under out_dir
    once it is propagated and yields (the frame's number t, its overlay, None without ``draw``); a
    resumed run yields frame 0, then the frames after the stop (``propagator.frames_taken``).
    ``outputs`` names what it writes. redraw(out_dir, t, frame, propagator) draws frame t's overlay
    again from its results, as write drew it: a resumed run writes its video so, in one pass at the
    end (None: not resumable). ``records``: per-frame results held until the end (keypoints,
    UVC-track's boxes), which a stopped run's state keeps. frame_file(out_dir, t): frame t's result
    file, one a frame (masks, soft labels; None: the results are written at the end from ``records``).
    """

    write: Callable[..., Iterator[tuple[int, np.ndarray | None]]]
    outputs: str
    redraw: Callable[..., np.ndarray] | None = None
    records: list = field(default_factory=list)
    frame_file: Callable[[Path, int], Path] | None = None


def annotation_for(args: argparse.Namespace, source, names: list[str] | None) -> Annotation:
    """The checked first-frame annotation `vidcorr propagate` was given (--mask, --keypoints, --box or
    --labels) for ``source``'s frames; ``names``: each frame's output name (None: frame numbers)."""
    if args.keypoints is not None:
        return _keypoints_annotation(args.keypoints, source.size, names)
    if args.box is not None:
        return _box_annotation(args.box, args.tracker or DEFAULT_TRACKER, source.size, names)
    if args.labels is not None:
        return _labels_annotation(args.labels, source.size, names, np.dtype(args.labels_dtype))
    return _mask_annotation(args.mask, source.size, names)


def annotation_files(args: argparse.Namespace) -> list[Path]:
    """The first-frame files given: none of them is a frame, even when kept in the frames folder."""
    return [path for path in (args.mask, args.keypoints, args.labels) if path is not None]


def _name(names: list[str] | None, t: int) -> str:
    return names[t] if names else f"{t:05d}"


# --------------------------------------------------------------------------- masks


def _mask_annotation(path: Path, frame_hw: tuple[int, int], names: list[str] | None) -> Annotation:
    from vidcorr.io.masks import read_mask_and_palette
    from vidcorr.masks import check_first_mask

    # The user's colours, not DAVIS's: a mask drawn in a tool's palette came back recoloured
    # (ids are indices either way). A grayscale mask has none (None): the DAVIS palette.
    ids, palette = read_mask_and_palette(path)
    first_mask = check_first_mask(ids, frame_hw, path)

    boxes: list = []  # with --track, each frame's boxes (`UVCTracker.boxes`), which its overlay draws

    def write(propagator, source, out_dir: Path, draw: bool = True) -> Iterator[tuple[int, np.ndarray | None]]:
        from vidcorr.io.masks import write_indexed_png
        from vidcorr.masks import mask_overlay, propagate_mask
        from vidcorr.track_uvc import UVCTracker, boxes_state

        (out_dir / "masks").mkdir(exist_ok=True)  # there already in a resumed run's folder
        for frame, labels in propagate_mask(propagator, source, first_mask):
            t = propagator.frames_taken
            write_indexed_png(out_dir / "masks" / f"{_name(names, t)}.png", labels, palette)
            if isinstance(propagator, UVCTracker):
                _record(boxes, t, boxes_state(propagator.boxes))
            yield t, mask_overlay(frame, labels, propagator, palette) if draw else None

    def redraw(out_dir: Path, t: int, frame: np.ndarray, propagator) -> np.ndarray:
        from PIL import Image

        from vidcorr.masks import mask_overlay
        from vidcorr.track_uvc import UVCTracker, boxes_from_state

        with Image.open(out_dir / "masks" / f"{_name(names, t)}.png") as image:
            labels = np.asarray(image)  # the palette indices: the ids as written
        if isinstance(propagator, UVCTracker):  # frame t's boxes, which mask_overlay draws
            propagator.boxes = boxes_from_state(boxes[t])
        return mask_overlay(frame, labels, propagator, palette)

    return Annotation(write, "masks/*.png", redraw, boxes,
                      frame_file=lambda out_dir, t: out_dir / "masks" / f"{_name(names, t)}.png")


def _record(records: list, t: int, value) -> None:
    """Frame t's record: a resumed run yields frame 0 again (the same record) before the frames after the stop."""
    if t < len(records):
        records[t] = value
    else:
        records.append(value)


# --------------------------------------------------------------------------- soft labels


def _labels_annotation(path: Path, frame_hw: tuple[int, int], names: list[str] | None,
                       dtype: np.dtype) -> Annotation:
    from vidcorr.soft_labels import check_first_labels, read_labels_file

    first = check_first_labels(read_labels_file(path), frame_hw, path)
    # propagated labels stay within the first frame's range, widened to 0 (uvc) or [0, 1]
    # (timecycle): none overflows when the first frame's do not (docs/propagation.md). Decided by
    # the cast, as `models.weights.beyond_range`: float16 rounds values below 65520 to its 65504.
    with np.errstate(over="ignore"):
        overflow = np.isfinite(first) & ~np.isfinite(first.astype(dtype))
    if overflow.any():
        raise InputError(path, f"holds values up to {float(np.abs(first[overflow]).max()):g}, beyond "
                               f"{dtype}'s range (largest {float(np.finfo(dtype).max):g}); keep --labels-dtype float32")

    value_range = (float(first.min()), float(first.max()))

    def write(propagator, source, out_dir: Path, draw: bool = True) -> Iterator[tuple[int, np.ndarray | None]]:
        from vidcorr.soft_labels import labels_overlay, propagate_soft_labels

        (out_dir / "labels").mkdir(exist_ok=True)  # there already in a resumed run's folder
        for frame, labels in propagate_soft_labels(propagator, source, first):
            written, t = labels.astype(dtype, copy=False), propagator.frames_taken
            np.save(out_dir / "labels" / f"{_name(names, t)}.npy", written)
            # drawn from the values written (float16's rounding included), as `redraw` draws them
            yield t, labels_overlay(frame, written.astype(np.float32, copy=False), value_range) if draw else None

    def redraw(out_dir: Path, t: int, frame: np.ndarray, propagator) -> np.ndarray:
        from vidcorr.soft_labels import labels_overlay

        labels = np.load(out_dir / "labels" / f"{_name(names, t)}.npy")
        return labels_overlay(frame, labels.astype(np.float32, copy=False), value_range)

    return Annotation(write, "labels/*.npy", redraw,
                      frame_file=lambda out_dir, t: out_dir / "labels" / f"{_name(names, t)}.npy")


# --------------------------------------------------------------------------- keypoints


def _keypoints_annotation(path: Path, frame_hw: tuple[int, int], names: list[str] | None) -> Annotation:
    from vidcorr.keypoints import check_first_keypoints, read_keypoints_json

    kps = check_first_keypoints(read_keypoints_json(path), frame_hw, path)

    # per frame: its keypoints.json entry, and the coordinates and visibility the overlay draws
    # (unrounded: a resumed run draws the frames before the stop from these)
    frames: list[dict] = []

    def write(propagator, source, out_dir: Path, draw: bool = True) -> Iterator[tuple[int, np.ndarray | None]]:
        from vidcorr.keypoints import codec_for, propagate_keypoints
        from vidcorr.io.atomic import write_json_atomic

        codec = codec_for(propagator.preset.name)
        stream = propagate_keypoints(propagator, source, kps.points, codec, kps.visible)
        for frame, coords, visible in stream:
            t = propagator.frames_taken
            _record(frames, t, {"frame": _name(names, t), "keypoints": [
                [round(float(cx), 3), round(float(cy), 3)] if v else None for (cx, cy), v in zip(coords, visible)],
                "coords": np.asarray(coords, np.float64).tolist(), "visible": np.asarray(visible, bool).tolist()})
            yield t, redraw(out_dir, t, frame, propagator) if draw else None
        write_json_atomic({"names": kps.names, "edges": [list(e) for e in kps.edges],
                           "frames": [{"frame": f["frame"], "keypoints": f["keypoints"]} for f in frames],
                           "preset": propagator.preset.name, "codec": codec.as_dict()},
                          out_dir / "keypoints.json")

    def redraw(out_dir: Path, t: int, frame: np.ndarray, propagator) -> np.ndarray:
        from vidcorr.viz_keypoints import draw_skeleton

        return draw_skeleton(frame, np.array(frames[t]["coords"]), np.array(frames[t]["visible"]), kps.edges)

    return Annotation(write, "keypoints.json", redraw, frames)


# --------------------------------------------------------------------------- boxes


def _box_annotation(box, tracker: str, frame_hw: tuple[int, int], names: list[str] | None) -> Annotation:
    from vidcorr.track import check_first_box, corner_box_warning

    try:
        check_first_box(box, frame_hw)
    except ValueError as err:
        raise InputError(None, f"--box: {err}") from None
    if (warning := corner_box_warning(box, frame_hw, flag="--box")) is not None:
        log.warning(warning)

    def write(propagator, source, out_dir: Path, draw: bool = True) -> Iterator[tuple[int, np.ndarray | None]]:
        from vidcorr.io.atomic import write_json_atomic
        from vidcorr.track import draw_box, track_frames

        boxes = []
        for t, (frame, b) in enumerate(track_frames(propagator.encoder, source, box, tracker,
                                                    device=propagator.device)):
            boxes.append({"frame": _name(names, t), "box": [round(float(v), 2) for v in b]})
            yield t, draw_box(frame, b) if draw else None
        write_json_atomic({"tracker": tracker, "preset": propagator.preset.name,
                           "convention": "0-based pixels, x, y, w, h", "frames": boxes}, out_dir / "boxes.json")

    return Annotation(write, "boxes.json")
