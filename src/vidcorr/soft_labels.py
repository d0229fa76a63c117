"""Any per-pixel labels carried through a video: (K, H, W) real-valued channels, not only object ids.

Class probabilities, a soft matte, a heat map, a depth or motion channel: the propagation engine
carries each channel as it carries a mask's one-hot channels (at every pixel a weighted sum of
the context frames' values under the preset's affinity: weights summing to 1 under crw and stt,
to less than 1 under uvc and timecycle, whose top-k probabilities are not renormalised), and here
the result is upsampled bilinearly to the frame's size with no argmax. `vidcorr.propagate_labels` and
``vidcorr propagate --labels FIRST.npy`` share `check_first_labels` and `propagate_soft_labels`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidcorr.errors import InputError
from vidcorr.io.frames import to_numpy
from vidcorr.labels import same_shape_resized
from vidcorr.presets import PropagationPreset
from vidcorr.propagate import Propagator, first_and_rest
from vidcorr.viz import overlay_mask

log = logging.getLogger(__name__)


def check_first_labels(labels: Any, frame_hw: tuple[int, int], path: str | Path | None = None) -> np.ndarray:
    """The first frame's labels, (K, H, W) or (H, W) numbers (numpy, torch, nested lists), as
    (K, H, W) float32: finite and of the frames' size (H, W); `InputError` naming path otherwise."""
    name = "labels" if path is not None else "first-frame labels"  # the error names the file itself
    array = to_numpy(labels)
    if array.dtype.kind not in "biuf":
        raise InputError(path, f"{name} have dtype {array.dtype}; expected numbers")
    one_map = array.ndim == 2
    if one_map:
        array = array[None]
    if array.ndim != 3 or array.shape[0] == 0:
        raise InputError(path, f"{name} have shape {array.shape}; expected (K, H, W) or (H, W)")
    if array.shape[1:] != tuple(frame_hw):
        raise InputError(path, f"{name} are {array.shape[2]}x{array.shape[1]} but frames are "
                               f"{frame_hw[1]}x{frame_hw[0]}{_size_hint(array.shape, frame_hw, path, one_map)}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(path, f"{name} hold NaN or infinite values")
    return array


def _size_hint(shape: tuple[int, ...], frame_hw: tuple[int, int], path: str | Path | None, one_map: bool) -> str:
    """What labels of ``shape`` (K, H, W) but not the frames' (H, W) most likely are, and what to do
    about it; one_map: they were given as one (H, W) map."""
    (height, width), (fh, fw) = shape[1:], frame_hw
    if shape[:2] == tuple(frame_hw):
        # (H, W, K), channels last as images are stored, is the usual slip: read as (K, H, W) it is H maps of W x K
        return (f"; this looks like channels-last (H, W, K) = {shape}: labels are channels-first "
                f"(K, H, W), e.g. np.moveaxis(labels, -1, 0)")
    if (height, width) == (fw, fh):
        return ("; they are the frames' size turned by 90 degrees: frames are read upright, as a player "
                "shows them (video rotation metadata and JPEG EXIF orientation applied), so make the "
                "labels on that view")
    if not same_shape_resized((height, width), frame_hw):
        return ""
    # made on the full-resolution original of a downscaled video: values blend, so bilinear fits
    # (a mask's ids must not blend: `vidcorr.masks` advises nearest); antialias when shrinking
    if path is None:
        how = (f"bilinearly to ({fh}, {fw}), e.g. torch.nn.functional.interpolate on them as a (1, K, H, W) "
               f'float tensor, size=({fh}, {fw}), mode="bilinear", antialias=True')
    else:
        add, take = ("[None, None]", "[0, 0]") if one_map else ("[None]", "[0]")
        how = (f"np.save(path, torch.nn.functional.interpolate(torch.from_numpy(np.load(path)).float(){add}, "
               f'size=({fh}, {fw}), mode="bilinear", antialias=True){take}.numpy())')
    return f"; they have the frames' shape at {width / fw:.3g}x their size: resize them, {how}"


def read_labels_file(path: str | Path) -> np.ndarray:
    """A ``.npy`` file of first-frame labels (no pickles); `InputError` naming it when unreadable."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            magic = file.read(6)
        # np.load takes any other file for a pickle and says so: its hint to allow pickles misleads
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # PK: an .npz (zip) archive
            raise InputError(path, "is not a .npy file (no NumPy header); save the labels with np.save"
                             + _image_hint(magic))
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "labels file not found") from None
    except (OSError, ValueError, EOFError) as error:  # not a .npy file, an object array, truncated, empty
        raise InputError(path, f"cannot read labels as a .npy array ({error})") from None
    if not isinstance(loaded, np.ndarray):  # np.load opens an .npz archive as a lazy dict of arrays
        loaded.close()
        raise InputError(path, "is an .npz archive of arrays, not one .npy array; save the labels with np.save")
    return loaded


# The first bytes of the image files a probability map or a matte is usually saved as.
IMAGE_MAGIC = {b"\x89PNG": "a PNG", b"\xff\xd8\xff": "a JPEG", b"II*\x00": "a TIFF", b"MM\x00*": "a TIFF"}


def _image_hint(magic: bytes) -> str:
    """For an image file given as labels (a matte or a probability map saved as a grayscale PNG),
    what it is and the line that makes it labels; "" for any other file. It was only "not a .npy
    file", with no word on the mask option or on the scale an 8-bit image's values stand for."""
    kind = next((name for head, name in IMAGE_MAGIC.items() if magic.startswith(head)), None)
    if kind is None:
        return ""
    return (f"; it is {kind} image: object ids go to --mask, and a grayscale map of values in [0, 1] "
            "becomes labels with np.save('first.npy', np.asarray(PIL.Image.open(path), np.float32) / 255) "
            "(/ 65535 for a 16-bit image)")


def propagate_soft_labels(propagator: Propagator, frames: Iterable[np.ndarray],
                          labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, labels (K, H, W) float32)`` for every frame, the first with ``labels`` as
    given (`check_first_labels`' output), each before the next frame is propagated."""
    preset = propagator.preset
    if preset.normalise_context_labels and (labels.min() < 0 or labels.max() > 1):
        log.warning("preset '%s' min-max normalises each propagated frame's labels per channel before they "
                    "serve as context (TimeCycle's test): labels in %.3g..%.3g lose their scale after the first "
                    "frame; crw and stt keep it", preset.name, labels.min(), labels.max())
    low, high = value_bounds(preset, labels)
    first_frame, stream = first_and_rest(frames)
    propagator.start(first_frame, torch.from_numpy(labels))
    yield first_frame, labels
    for frame, soft in propagator.follow(stream):
        # decode_label_map's upsampling to the frame (crw, stt), without its argmax
        up = F.interpolate(soft[None], size=frame.shape[:2], mode="bilinear", align_corners=False)[0]
        # Float rounding only (weights summing to 1 +- 1e-7): probabilities came out at 1.0000002,
        # NaN in a log(1 - p), and a constant channel was not constant.
        yield frame, np.clip(up.to("cpu", torch.float32).numpy(), low, high)


def value_bounds(preset: PropagationPreset, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (K, 1, 1), the range every propagated value of ``labels`` (K, H, W) lies in: each
    is a weighted sum of context values, the weights >= 0 and summing to 1 (``topk_softmax``: crw,
    stt; the first frame's range), or to less (``softmax_topk``: uvc, timecycle; 0 joins the range),
    and bilinear resizing stays within what it resizes; context frames min-max normalised
    (timecycle) bring [0, 1] in. A joint top-k of each frame's own softmax probabilities (the knobs
    ``scope="joint", normalisation="softmax_topk"``, no preset's protocol) has weights summing to up
    to the number of context frames: only the values' sign is bounded there."""
    low, high = labels.min(axis=(1, 2), keepdims=True), labels.max(axis=(1, 2), keepdims=True)
    if preset.topk.normalisation != "topk_softmax":
        low, high = np.minimum(low, 0), np.maximum(high, 0)
    if preset.normalise_context_labels:
        low, high = np.minimum(low, 0), np.maximum(high, 1)
    if preset.topk.normalisation == "softmax_topk" and preset.topk.scope == "joint":
        # crw with normalisation="softmax_topk": a constant 1 grew to 17.8 by frame 3 of car-shadow,
        # and clipping it to 1 changed the propagation itself, not its rounding
        low, high = np.where(low < 0, -np.inf, 0).astype(low.dtype), np.where(high > 0, np.inf, 0).astype(high.dtype)
    return low, high


def labels_overlay(frame: np.ndarray, labels: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """What a person looks at: one channel as a red tint, its strength the value's place in
    value_range (the first frame's min, max); several channels as the argmax, channel k in the
    DAVIS palette's colour k (channel 0 untinted, as a background). The palette has 255 object
    colours: beyond them (K > 256) channel k takes colour 1 + (k - 1) % 255, so channels k and
    k + 255 share a tint, but each is tinted and outlined apart from its neighbours.

    frame: (H, W, 3) uint8 RGB; labels: (K, H, W) -> (H, W, 3) uint8."""
    if len(labels) > 1:
        # int64 argmax, not uint8: channel 256 would wrap to 0 and be drawn as the background
        return overlay_mask(frame, labels.argmax(axis=0))
    low, high = value_range
    strength = np.clip((labels[0] - low) / (high - low), 0.0, 1.0) if high > low else np.zeros(labels.shape[1:])
    out = frame.astype(np.float32)
    out[..., 0] = out[..., 0] * (1 - 0.6 * strength) + 255 * 0.6 * strength
    out[..., 1:] *= (1 - 0.6 * strength)[..., None]
    return out.clip(0, 255).astype(np.uint8)
