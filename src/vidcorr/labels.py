"""Label codecs for propagation: index maps (masks, part maps) <-> soft per-class maps.

A mask with ids 0..K (0 = background, 255 = void) becomes K+1 soft channels. Void pixels get an
all-zero vector: they carry no label at all, so they neither vote for background nor for an object
when propagated. Decoding follows the preset's output knobs (METHODS.md §5, last row).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidcorr.presets import PropagationPreset

VOID = 255


def same_shape_resized(size_hw: tuple[int, ...], frame_hw: tuple[int, int]) -> bool:
    """Whether a first-frame annotation of (h, w) pixels is the frame's (H, W) picture at another
    size, within a pixel's rounding: drawn on the full-resolution original of a downscaled video, or
    on a screenshot of it (`vidcorr.masks.check_first_mask`, `vidcorr.soft_labels.check_first_labels`)."""
    (h, w), (fh, fw) = size_hw, frame_hw
    return abs(h * fw - w * fh) <= max(h, w, fh, fw)


def one_hot_labels(index_map: np.ndarray, num_classes: int | None = None) -> Tensor:
    """(H, W) uint8 ids with 255 = void -> (K+1, H, W) float one-hot; void pixels are all zero.

    num_classes defaults to max id + 1 (ids need not be contiguous: DAVIS objects are 1..max id).
    """
    ids = torch.from_numpy(np.asarray(index_map).astype(np.int64))
    void = ids == VOID
    known = ids[~void]
    k = num_classes if num_classes is not None else int(known.max()) + 1 if known.numel() else 1
    if known.numel() and int(known.max()) >= k:
        raise ValueError(f"label id {int(known.max())} does not fit in {k} classes")
    onehot = F.one_hot(ids.masked_fill(void, 0), k).permute(2, 0, 1).float()
    onehot[:, void] = 0.0
    return onehot


def channel_map(index: np.ndarray, values: np.ndarray, ignored: int | None = VOID) -> np.ndarray:
    """Ids (H, W) -> uint8 channel numbers, each id's position in ``values`` (sorted ids), and `VOID`
    (no channel in `one_hot_labels`) where the id is ``ignored`` or not in ``values``; ``ignored=None``
    for ids without an ignore value. One channel per id present, not per id up to the largest: a
    mask of ids 0 and 200 needs 2 channels, not 201."""
    channels = np.searchsorted(values, index)
    known = channels < len(values)
    if ignored is not None:
        known &= index != ignored
    known[known] = values[channels[known]] == index[known]
    return np.where(known, channels, VOID).astype(np.uint8)


def downsample_labels(labels: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """(K, H, W) soft labels -> (K, h, w) at feature resolution.

    ``nearest`` samples pixel centres (PIL / scipy ``imresize`` nearest, as UVC and STT do);
    ``bilinear`` is OpenCV-style bilinear without antialiasing (CRW and TimeCycle use cv2.resize).
    """
    if mode == "nearest":
        return F.interpolate(labels[None], size=size, mode="nearest-exact")[0]
    if mode == "bilinear":
        return F.interpolate(labels[None], size=size, mode="bilinear", align_corners=False)[0]
    raise ValueError(f"unknown label downsampling {mode!r}")


def minmax_per_channel(soft: Tensor, positive_only: bool = True) -> Tensor:
    """Per-channel min-max normalisation of (K, H, W) to [0, 1].

    positive_only: only channels whose maximum is positive are rescaled (UVC's ``norm_mask``; an
    all-negative channel stays as it is); False rescales every channel (TimeCycle's test_davis.py).
    Channels whose range is zero are left as they are either way (UVC and TimeCycle divide by zero
    there, STT turns a constant positive channel into 0: docs/propagation.md).
    """
    flat = soft.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    scale = span > 0
    if positive_only:
        scale &= hi > 0
    out = torch.where(scale, (flat - lo) / span.clamp_min(1e-12), flat)
    return out.view_as(soft)


def decode_label_map(
    soft: Tensor,
    preset: PropagationPreset,
    input_hw: tuple[int, int],
    original_hw: tuple[int, int],
) -> Tensor:
    """Soft labels at feature resolution -> (H, W) long index map at the original frame size.

    soft: (K, h, w). The preset says whether to upsample to the original size directly (CRW, STT)
    or to the encoder input size, take the argmax there and nearest-resize (UVC, TimeCycle), and
    whether to min-max normalise each channel before the argmax. UVC upsamples by 8 instead of to
    the input size: the same map at every size its code runs at (multiples of 8; at others its
    labels and features disagree in size and it fails), docs/propagation.md.
    """
    target = original_hw if preset.output_resize == "original" else input_hw
    up = F.interpolate(soft[None], size=target, mode="bilinear", align_corners=False)[0]
    if preset.output_minmax:
        up = minmax_per_channel(up)
    index = up.argmax(dim=0)
    if tuple(index.shape) != tuple(original_hw):
        index = F.interpolate(index[None, None].float(), size=original_hw, mode="nearest-exact")[0, 0].long()
    return index
