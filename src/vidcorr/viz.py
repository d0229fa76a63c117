"""Pictures a person would rather look at than read: label overlays on frames.

Task-specific drawings (skeletons, boxes) live beside their tasks; this module holds the shared
mask overlay used by `vidcorr propagate` and the demo.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vidcorr.io.masks import DAVIS_PALETTE


def overlay_mask(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend object colours (DAVIS palette) into an RGB frame and outline each object.

    frame: (H, W, 3) uint8 RGB; labels: (H, W) integer ids, 0 = background -> (H, W, 3) uint8.
    """
    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but labels are "
                         f"{labels.shape[1]}x{labels.shape[0]}")
    out = frame.astype(np.float32)
    objects = labels > 0
    colours = DAVIS_PALETTE[np.clip(labels, 0, 255)].astype(np.float32)
    out[objects] = (1 - alpha) * out[objects] + alpha * colours[objects]
    # a 1-px outline keeps the frame readable under the tint
    edges = labels != ndimage.grey_erosion(labels, size=3)
    out[edges & objects] = colours[edges & objects]
    return out.clip(0, 255).astype(np.uint8)
