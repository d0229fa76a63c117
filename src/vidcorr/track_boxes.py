"""Box geometry of UVC-track (`vidcorr.track_uvc`), as the official ``libs/track_utils.py`` does it.

Boxes are ``(x1, y1, x2, y2)`` edges on a map (feature cells or pixels, `Box`): the Gaussian
mean-shift mode of a point cloud (`mean_shift_centre`), the box fitted around it (`fit_box`, UVC
Eq. 4), the first frame's box from its mask (`mask_bounding_box`), a propagated frame's box from its
decoded mask (`predicted_mask_box`), the pixels -> cells scaling (`scale_box`) and the size
smoothing against the previous box (`smoothed_box`); docs/uvc.md lists the official oddities kept.

Separate from the tracker because these are pure functions of points, masks and boxes, with no
encoder, features or propagation state: they are tested on their own against the official code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) edges: cells (pixels) x1..x2-1, y1..y2-1

# ``mean_shift_center`` stops once a step, summed over x and y *with its sign*, is under this.
SHIFT_STOP = 0.1


def mean_shift_centre(points: Tensor, bandwidth: float, sigma: float) -> Tensor:
    """Mode of a point cloud by the official ``mean_shift_center``: (2, n) (x, y) -> (2,) float64.

    Starts at the point nearest the mean (the first in ``points``' order on a tie); each step moves
    to the mean of the points within ``bandwidth``, weighted by a Gaussian of std ``sigma``. It stops
    when a step's x + y, *signed*, is under 0.1: the official test sums the step without taking
    its size, so a step up or to the left ends the search at once (kept: it places the official
    boxes). Stray points (pixels matched onto a look-alike elsewhere) pull the mean, not the mode.
    """
    pts = points.double()
    centre = pts[:, (pts - pts.mean(dim=1, keepdim=True)).norm(dim=0).argmin()]
    # Every step that does not stop raises x + y by 0.1 or more, and the centre stays in the
    # points' hull: the official unbounded loop ends within this many steps.
    steps = int((pts.amax(dim=1) - pts.amin(dim=1)).sum().item() / SHIFT_STOP) + 2
    for _ in range(steps):
        dist = (pts - centre[:, None]).norm(dim=0)
        weight = torch.exp(-0.5 * (dist / sigma) ** 2) * (dist <= bandwidth)
        moved = (pts * weight).sum(dim=1) / weight.sum()
        if (moved - centre).sum() < SHIFT_STOP:
            return moved
        centre = moved
    return centre


def official_box(x1: float, y1: float, x2: float, y2: float, margin: float, hw: tuple[int, int]) -> Box:
    """The official ``BBox``: edges grown by ``margin`` x the box's size / 2 on each side, rounded
    outwards, clamped to an (h, w) map."""
    gx, gy = (x2 - x1) * margin / 2, (y2 - y1) * margin / 2
    h, w = hw
    return (max(math.floor(x1 - gx), 0), max(math.floor(y1 - gy), 0),
            min(math.ceil(x2 + gx), w), min(math.ceil(y2 + gy), h))


def fit_box(points: Tensor, bandwidth: float, sigma: float, margin: float, hw: tuple[int, int]) -> Box:
    """Box around a point cloud (official ``coords2bbox_scale``): mean-shift centre, half-size 2 x the
    mean absolute deviation about it (UVC Eq. 4), clamped to the (h, w) map, then grown by
    ``margin`` (clamped again). points: (2, n) (x, y) in the map's units."""
    centre = mean_shift_centre(points, bandwidth, sigma)
    half = 2 * (points.double() - centre[:, None]).abs().mean(dim=1)
    (x1, y1), (x2, y2) = (centre - half).tolist(), (centre + half).tolist()
    h, w = hw
    return official_box(max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h), margin, hw)


def mask_bounding_box(mask: Tensor, margin: float) -> Box | None:
    """The first frame's box (official ``seg2bbox``) in the pixels of the (H, W) bool mask: from its
    first to its *last* foreground row and column (not one past it), grown by ``margin``; None if
    the mask is empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if xs.numel() == 0:
        return None
    return official_box(xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item(), margin,
                        tuple(mask.shape))


def predicted_mask_box(
    index: Tensor, k: int, bandwidth: float, sigma: float, margin: float
) -> Box | None:
    """Object k's box on a decoded (H, W) index map, in its pixels (official ``seg2bbox_v2``): `fit_box`
    on its pixels, taken last pixel first as the official code flips its list; None if it has none."""
    ys, xs = torch.nonzero(index == k, as_tuple=True)
    if xs.numel() == 0:
        return None
    return fit_box(torch.stack([xs, ys]).flip(1), bandwidth, sigma, margin, tuple(index.shape))


def scale_box(box: Box, scale: tuple[float, float]) -> Box:
    """The official ``BBox.upscale``: every edge times (x, y) ``scale``, floored (pixels -> cells)."""
    return (math.floor(box[0] * scale[0]), math.floor(box[1] * scale[1]),
            math.floor(box[2] * scale[0]), math.floor(box[3] * scale[1]))


def smoothed_box(box: Box, previous: Box | None, alpha: float, limit_hw: tuple[int, int]) -> Box:
    """The official ``adjust_bbox``: ``box``'s centre with its size blended with ``previous``'s
    (a x new + (1 - a) x old), rounded outwards, clamped to [0, w] x [0, h] of ``limit_hw``."""
    if previous is None:
        return box
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw = alpha * (box[2] - box[0]) + (1 - alpha) * (previous[2] - previous[0])
    bh = alpha * (box[3] - box[1]) + (1 - alpha) * (previous[3] - previous[1])
    h, w = limit_hw
    return (max(0, math.floor(cx - bw / 2)), max(0, math.floor(cy - bh / 2)),
            min(w, math.ceil(cx + bw / 2)), min(h, math.ceil(cy + bh / 2)))
