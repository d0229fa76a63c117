"""Mask propagation: a first-frame index map (object ids, 255 = void) carried through a video.

`propagate_mask` is the one loop shared by `vidcorr propagate`, `vidcorr demo` and the DAVIS
benchmark: it pairs each frame with its predicted index map as `Propagator.follow` releases them
(at most one encoder batch of frames held), so memory stays bounded. `MaskTracker` gives the same
index maps one frame at a time, for frames that arrive one by one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from vidcorr.errors import InputError, NotStarted
from vidcorr.io.frames import as_rgb_frame, float_scale, to_numpy
from vidcorr.io.masks import DAVIS_PALETTE, check_mask_format, mask_ids, read_mask
from vidcorr.labels import VOID, channel_map, decode_label_map, one_hot_labels, same_shape_resized
from vidcorr.propagate import Propagator, first_and_rest
from vidcorr.track import draw_box
from vidcorr.track_uvc import UVCTracker
from vidcorr.viz import full_brightness, overlay_mask, palette_index


def read_first_mask(mask: Any) -> tuple[Any, Path | None]:
    """A first-frame mask as the API takes it -> (its ids, or the array-like given, for
    `check_first_mask`; its file or None). A path is read with `vidcorr.io.masks.read_mask`, and a
    PIL image by the same rules, by its mode: a palette image's indices are the ids, a 0/255
    grayscale one's 255 is object 1 (``np.asarray`` of it gives 255, void in an id mask), and an
    RGB or JPEG one is refused with read_mask's reason."""
    if isinstance(mask, (str, os.PathLike)):  # any os.PathLike, not only pathlib's (it was read as an array)
        return read_mask(Path(mask)), Path(mask)
    if not isinstance(mask, Image.Image):
        return mask, None
    path = Path(mask.filename) if getattr(mask, "filename", "") else None  # opened from a file, unchanged
    try:
        check_mask_format(mask, path)
        return mask_ids(np.asarray(mask), mask.mode, path), path
    except InputError as err:
        if path is not None:
            raise
        raise InputError(None, f"the first-frame mask (a PIL image) {err.problem}") from None


def check_first_mask(mask: Any, frame_hw: tuple[int, int], path: str | Path | None = None) -> np.ndarray:
    """The first-frame mask as (H, W) uint8 ids, checked against frames of size frame_hw: the same
    size and at least one object. mask: (H, W) ids 0..254 (255 = void) as a numpy array of any
    integer, bool or whole-number float dtype, a torch tensor or a nested list. `InputError` naming
    path (the mask's file, when it has one)."""
    name = "mask" if path is not None else "the first-frame mask"  # the error names the file itself
    mask = _id_array(mask, name, path)
    if mask.ndim != 2:
        raise InputError(path, f"{name} has shape {mask.shape}; expected (H, W) object ids")
    if mask.shape != tuple(frame_hw):
        hint = _size_hint(mask.shape, frame_hw, path)
        raise InputError(path, f"{name} is {mask.shape[1]}x{mask.shape[0]} "
                               f"but frames are {frame_hw[1]}x{frame_hw[0]}{hint}")
    if not np.any((mask != 0) & (mask != VOID)):
        hint = ""
        if np.any(mask == VOID) and path is not None:
            # Read from its file by read_mask, so not a 0/255 grayscale mask: a palette PNG whose
            # drawing tool gave the object index 255. Pointing at read_mask told a CLI user nothing.
            hint = (" (its object is palette index 255, which means void: give each object an index 1..254, "
                    "e.g. Image.open(path).point(lambda v: 1 if v == 255 else v).save(path))")
        elif np.any(mask == VOID):  # np.array(Image.open(...)) of a DAVIS-2016 0/255 mask: all void
            hint = (" (a 0/255 binary mask read as raw values? 255 means void in an id mask: read it with "
                    "vidcorr.io.masks.read_mask, which maps a binary mask's 255 to object 1)")
        raise InputError(path, f"{name} is empty: it holds no object id (only 0 / void){hint}")
    return mask


def _size_hint(mask_hw: tuple[int, ...], frame_hw: tuple[int, int], path: str | Path | None) -> str:
    """What a mask of another size than the frames most likely is, and what to do about it."""
    (mh, mw), (fh, fw) = mask_hw, frame_hw
    if (mh, mw) == (fw, fh):
        return ("; it is the frames' size turned by 90 degrees: frames are read upright, as a player "
                "shows them (video rotation metadata and JPEG EXIF orientation applied), so draw the "
                "mask on that view")
    if same_shape_resized(mask_hw, frame_hw):
        # drawn on the full-resolution original of a downscaled video, or on a screenshot of it
        how = (f"Image.open(path).resize(({fw}, {fh}), Image.NEAREST).save(path)" if path is not None
               else "nearest-neighbour resizing")
        return f"; it has the frames' shape at {mw / fw:.3g}x their size: resize it without blending ids, {how}"
    return ""


def _id_array(mask: Any, name: str, path: str | Path | None) -> np.ndarray:
    """mask as uint8 ids. Checked before the cast: ids above 255 would wrap (256 -> background,
    300 -> 44) and negative ones crash one-hot encoding deep inside torch."""
    mask = to_numpy(mask)
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype.kind not in "biuf" or (mask.dtype.kind == "f" and not np.all(np.mod(mask, 1) == 0)):
        raise InputError(path, f"{name} has dtype {mask.dtype} with values that are not object ids; "
                               f"expected whole numbers 0..254 (255 = void)")
    if mask.size and (mask.min() < 0 or mask.max() > VOID):
        raise InputError(path, f"{name} holds ids {mask.min():g}..{mask.max():g}; object ids must lie in "
                               f"0..254 (255 = void): renumber the objects 1..N")
    return mask.astype(np.uint8)


def propagate_mask(
    propagator: Propagator, frames: Iterable[np.ndarray], first_mask: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, labels)`` for every frame, the first included.

    frames: RGB uint8 (H, W, 3); first_mask: (H, W) uint8 ids, 255 = void. labels: (H, W) uint8
    ids; frame 0 gets the given mask with void turned into background. Each pair is yielded before
    the next frame is propagated, so the propagator's state (a `UVCTracker`'s boxes) is that frame's.
    """
    first, first_labels, ids = _first_labels(first_mask)
    first_frame, stream = first_and_rest(frames)
    propagator.start(first_frame, first_labels, channel_ids=ids)
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
        self._scale: float | None = None  # float frames: 255 for [0, 1], 1 for [0, 255]
        self._index = 0  # of the last frame, for error messages

    def step(self, frame: np.ndarray, mask: np.ndarray | str | Path | Image.Image | None = None) -> np.ndarray:
        """frame: RGB uint8 (H, W, 3) (or any form `vidcorr.io.frames.as_rgb_frame` takes); mask: (H, W)
        ids (255 = void), a mask PNG's path or a PIL image (`read_first_mask`), to start from this frame.
        -> (H, W) uint8 ids: the mask itself (void as background) or the propagated one.
        `InputError` naming the frame's index (0 = the mask's frame) for a frame of another size."""
        if mask is not None:
            mask, path = read_first_mask(mask)
            array = to_numpy(frame)
            # A float video's range ([0, 1] or [0, 255]) is decided on its first frame, kept after.
            scale = float_scale(array)
            rgb = as_rgb_frame(array, 0, scale)
            mask = check_first_mask(mask, rgb.shape[:2], path)
            first, first_labels, ids = _first_labels(mask)
            self.started = False  # until the new video has started: a start that raises holds no video
            self.propagator.start(rgb, first_labels, channel_ids=ids)
            self.started, self._scale, self._index = True, scale, 0
            return first
        if not self.started:
            raise NotStarted("MaskTracker.step needs the first frame's mask: step(frame, mask) first")
        index = self._index + 1  # frames stepped so far, the mask's frame 0 included
        rgb = as_rgb_frame(frame, index, self._scale)
        first_hw = self.propagator.original_hw
        if rgb.shape[:2] != first_hw:  # the propagator's own check cannot say which frame it was
            raise InputError(None, f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame was "
                                   f"{first_hw[1]}x{first_hw[0]}; every frame of a video must have one size "
                                   f"(a new size starts a new video: step(frame, mask))")
        soft = self.propagator.step(rgb)
        self._index += 1
        return _index_map(self.propagator, soft)


def mask_overlay(frame: np.ndarray, labels: np.ndarray, propagator: Propagator,
                 palette: np.ndarray | None = None) -> np.ndarray:
    """The frame (H, W, 3) with its masks (H, W) drawn on it (`vidcorr.viz.overlay_mask`) and, when
    the propagator is a `UVCTracker`, each object's current box in the object's colour at full
    brightness, as its outline (palette: (256, 3) colours of the ids, default the DAVIS palette; ids
    past it reuse its object colours, `vidcorr.viz.palette_index`, box and mask alike)."""
    colours = DAVIS_PALETTE if palette is None else palette
    image = overlay_mask(frame, labels, palette=colours)
    if isinstance(propagator, UVCTracker):
        ids = propagator.channel_ids
        for k, box in propagator.pixel_boxes().items():
            if box is not None:
                k = int(ids[k]) if ids is not None else k  # the object's id, as the mask is coloured by
                row = int(palette_index(k, len(colours)))  # ids past the palette: overlay_mask's colour rule
                bright = full_brightness(colours[row : row + 1].astype(np.float32))[0]
                image = draw_box(image, box, tuple(int(c) for c in bright), thickness=2)
    return image


def _first_labels(first_mask: np.ndarray) -> tuple[np.ndarray, Tensor, np.ndarray]:
    """-> (the first frame's ids with void as background, its one-hot labels (K, H, W), the id of
    each channel (K,) uint8: 0, then the object ids it holds, ascending).

    One channel per id present, not per id up to the largest: a mask of ids 0 and 200 (class ids,
    a tool's own numbering) was carried as 201 channels, 200 of them empty, at several times the
    time and memory, and an empty channel made UVC-track fall back on every frame. Each channel
    travels on its own and argmax ties keep their order, so the masks are the same."""
    first = np.where(first_mask == VOID, 0, first_mask).astype(np.uint8)
    ids = np.union1d([0], first).astype(np.uint8)
    return first, one_hot_labels(channel_map(first_mask, ids), len(ids)), ids  # void stays void: no channel


def _index_map(propagator: Propagator, soft: Tensor) -> np.ndarray:
    """Soft labels (K, h, w) -> (H, W) uint8 ids at the frame's size, as the preset decodes them."""
    index = decode_label_map(soft, propagator.preset, propagator.input_hw, propagator.original_hw)
    index = index.to("cpu").numpy().astype(np.uint8)
    ids = propagator.channel_ids
    return ids[index] if ids is not None else index
