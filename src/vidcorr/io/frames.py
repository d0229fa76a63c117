"""Frames handed to the scripting API as arrays, made the RGB uint8 (H, W, 3) the engine expects.

Users pass what their tools give them: float images in [0, 1] (skimage, torchvision) or [0, 255],
16-bit frames, grayscale (H, W), RGBA, torch tensors, views with negative strides. Fed to the
engine as they are, a float frame in [0, 1] would be read as almost black and a uint16 frame as
almost white without any error, so each is converted here or refused with `InputError` naming the
frame. BGR (OpenCV's order) cannot be told from RGB: the API documents RGB.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from vidcorr.errors import InputError, shown_value
from vidcorr.io.images import sixteen_to_eight_bits


# The largest value a float frame in [0, 1] may hold: bicubic resizing (torch, PIL) overshoots 1
# a little at edges. A [0, 255] frame below it is black (every pixel under 0.6 % of the range).
UNIT_FLOAT_MAX = 1.5


def float_scale(frame: np.ndarray) -> float | None:
    """255 for a float frame whose values all lie within [0, `UNIT_FLOAT_MAX`] (taken as [0, 1]),
    1 for other float frames (taken as 0-255), None for integer frames (no scale applies).

    Decided once, on the first frame of a video, so that a dark later frame of a 0-255 video
    (a fade to black) is not suddenly stretched; a later frame beyond that range is refused
    (`as_rgb_frame`), not saturated.
    """
    if frame.dtype.kind != "f":
        return None
    finite = frame[np.isfinite(frame)]
    return 255.0 if finite.size and float(finite.max()) <= UNIT_FLOAT_MAX else 1.0


def as_rgb_frame(frame: Any, index: int = 0, scale: float | None = None) -> np.ndarray:
    """frame: (H, W, 3) RGB, (H, W) gray, (H, W, 1) or (H, W, 4) RGBA (alpha dropped); uint8, uint16
    (0-65535), other integers in 0-255 or floats (``scale``: 255 for [0, 1], 1 for [0, 255]; default
    `float_scale` of this frame); a numpy array, torch tensor or nested list.
    -> contiguous RGB uint8 (H, W, 3). `InputError` naming frame ``index`` otherwise."""
    array = to_numpy(frame)
    what = f"frame {index}"
    if array.ndim == 0:  # a file name or None among the frames: "has shape ()" said nothing
        value = array.item()
        raise InputError(None, f"{what} is {type(value).__name__} {shown_value(value)}, not an image array: give a "
                               "video file or frame folder as the video, or the frames as arrays (H, W, 3)")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        hint = (" (channels first? frames are (H, W, 3): use .permute(1, 2, 0) / .transpose(1, 2, 0))"
                if array.ndim == 3 and array.shape[0] in (1, 3, 4) else "")
        raise InputError(None, f"{what} has shape {array.shape}; expected RGB (H, W, 3), gray (H, W) "
                               f"or RGBA (H, W, 4){hint}")
    if min(array.shape[:2]) == 0:
        raise InputError(None, f"{what} is empty: shape {array.shape}")
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[..., :3]
    return np.ascontiguousarray(_to_uint8(array, what, scale))


def as_rgb_frames(frames: Iterable[Any]) -> Iterator[np.ndarray]:
    """`as_rgb_frame` of each frame, lazily; float scale taken from the first frame, and every
    frame checked to be the first one's size (`InputError` naming the frame)."""
    scale, size = None, None
    for index, frame in enumerate(frames):
        if index == 0:
            frame = to_numpy(frame)
            scale = float_scale(frame)
        rgb = as_rgb_frame(frame, index, scale)
        if index == 0:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise InputError(None, f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame "
                                   f"was {size[1]}x{size[0]}; every frame of a video must have one size")
        yield rgb


def to_numpy(frame: Any) -> np.ndarray:
    """A frame as a numpy array: a torch tensor (any device, bfloat16 too) copied to the CPU."""
    if type(frame).__module__.startswith("torch"):  # no torch import here: `import vidcorr` stays light
        frame = frame.detach().cpu()
        frame = (frame.float() if frame.dtype.is_floating_point else frame).numpy()  # numpy has no bfloat16
    return np.asarray(frame)


def _to_uint8(array: np.ndarray, what: str, scale: float | None) -> np.ndarray:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:  # a 16-bit image is full range, as `io.images` reads 16-bit PNGs
        return sixteen_to_eight_bits(array)
    if kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise InputError(None, f"{what} is {array.dtype} with values {array.min()}..{array.max()}; "
                                   f"expected 0..255 (or uint8 / uint16 / float frames)")
        return array.astype(np.uint8)
    if kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(None, f"{what} holds NaN or infinite values")
        scale = float_scale(array) if scale is None else scale
        if scale == 255.0 and (top := float(array.max())) > UNIT_FLOAT_MAX:
            # A 0-255 float video whose first frame is black was taken as [0, 1]: every frame so
            # far would be wrong and this one saturated white, silently.
            raise InputError(None, f"{what} holds values up to {top:.4g}, but the first "
                                   f"frame's all lay within [0, {UNIT_FLOAT_MAX}], so the video was taken "
                                   "as float in [0, 1]; a float video in [0, 255] that starts black cannot "
                                   "be told from one in [0, 1]: pass its frames as uint8")
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    raise InputError(None, f"{what} has dtype {array.dtype}; expected uint8 RGB (or uint16 / float)")
