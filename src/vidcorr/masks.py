"""Mask propagation: a first-frame index map (object ids, 255 = void) carried through a video.

`propagate_mask` is the one loop shared by `vidcorr propagate`, `vidcorr demo` and the DAVIS
benchmark: it pairs each frame with its predicted index map as `Propagator.follow` releases them
(at most one encoder batch of frames held), so memory stays bounded. `MaskTracker` gives the same
index maps one frame at a time, for frames that arrive one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from torch import Tensor

from vidcorr.errors import InputError
from vidcorr.io.masks import DAVIS_PALETTE
from vidcorr.labels import VOID, decode_label_map, one_hot_labels
from vidcorr.propagate import Propagator, first_and_rest
from vidcorr.track import draw_box
from vidcorr.track_uvc import UVCTracker
from vidcorr.viz import overlay_mask


def check_first_mask(mask: np.ndarray, frame_hw: tuple[int, int], path: str | Path | None = None) -> np.ndarray:
    """The first-frame mask (H, W) uint8 ids, checked against frames of size frame_hw: the same
    size and at least one object. `InputError` naming path (the mask's file, when it has one)."""
    name = Path(path).name if path is not None else "the first-frame mask"
    if mask.ndim != 2:
        raise InputError(path, f"{name} has shape {mask.shape}; expected (H, W) object ids")
    if mask.shape != tuple(frame_hw):
        turned = ("; it is the frames' size turned by 90 degrees: frames are read upright, as a player "
                  "shows them (video rotation metadata and JPEG EXIF orientation applied), so draw the "
                  "mask on that view" if mask.shape == tuple(frame_hw)[::-1] else "")
        raise InputError(path, f"mask {name} is {mask.shape[1]}x{mask.shape[0]} "
                               f"but frames are {frame_hw[1]}x{frame_hw[0]}{turned}")
    if not np.any((mask != 0) & (mask != VOID)):
        hint = ""
        if np.any(mask == VOID):  # np.array(Image.open(...)) of a DAVIS-2016 0/255 mask: all void
            hint = (" (a 0/255 binary mask read as raw values? 255 means void in an id mask: read it with "
                    "vidcorr.io.masks.read_mask, which maps a binary mask's 255 to object 1)")
        raise InputError(path, f"{name} is empty: it holds no object id (only 0 / void){hint}")
    return mask


def propagate_mask(
    propagator: Propagator, frames: Iterable[np.ndarray], first_mask: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, labels)`` for every frame, the first included.

    frames: RGB uint8 (H, W, 3); first_mask: (H, W) uint8 ids, 255 = void. labels: (H, W) uint8
    ids; frame 0 gets the given mask with void turned into background. Each pair is yielded before
    the next frame is propagated, so the propagator's state (a `UVCTracker`'s boxes) is that frame's.
    """
    first, first_labels = _first_labels(first_mask)
    first_frame, stream = first_and_rest(frames)
    propagator.start(first_frame, first_labels)
    yield first_frame, first
    for frame, soft in propagator.follow(stream):
        yield frame, _index_map(propagator, soft)


class MaskTracker:
    """Index maps one frame at a time: ``step(frame0, mask0)``, then ``step(frame)`` per frame.

    The same predictions as `propagate_mask` on the same frames (one encoder call per frame instead
    of a batch, so a little slower on a whole video). A mask given to `step` starts a new video.
    """

    def __init__(self, propagator: Propagator):
        self.propagator = propagator
        self.started = False

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """frame: RGB uint8 (H, W, 3); mask: (H, W) uint8 ids (255 = void) to start from this frame.
        -> (H, W) uint8 ids: the mask itself (void as background) or the propagated one."""
        if mask is not None:
            check_first_mask(mask, frame.shape[:2])
            first, first_labels = _first_labels(mask)
            self.propagator.start(frame, first_labels)
            self.started = True
            return first
        if not self.started:
            raise RuntimeError("MaskTracker.step needs the first frame's mask: step(frame, mask) first")
        return _index_map(self.propagator, self.propagator.step(frame))


def mask_overlay(frame: np.ndarray, labels: np.ndarray, propagator: Propagator) -> np.ndarray:
    """The frame (H, W, 3) with its masks (H, W) drawn on it (`vidcorr.viz.overlay_mask`) and, when
    the propagator is a `UVCTracker`, each object's current box in the object's colour."""
    image = overlay_mask(frame, labels)
    if isinstance(propagator, UVCTracker):
        for k, box in propagator.pixel_boxes().items():
            if box is not None:
                image = draw_box(image, box, tuple(int(c) for c in DAVIS_PALETTE[k]), thickness=2)
    return image


def _first_labels(first_mask: np.ndarray) -> tuple[np.ndarray, Tensor]:
    """-> (the first frame's ids with void as background, its one-hot labels (K, H, W))."""
    first = np.where(first_mask == VOID, 0, first_mask).astype(np.uint8)
    return first, one_hot_labels(first_mask, int(first.max()) + 1)


def _index_map(propagator: Propagator, soft: Tensor) -> np.ndarray:
    """Soft labels (K, h, w) -> (H, W) uint8 ids at the frame's size, as the preset decodes them."""
    index = decode_label_map(soft, propagator.preset, propagator.input_hw, propagator.original_hw)
    return index.to("cpu").numpy().astype(np.uint8)
