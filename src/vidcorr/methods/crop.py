"""Differentiable box crop: UVC's ``diff_crop`` (METHODS.md §1.5 item 6).

UVC localises a region in the target frame and then resamples the target's features, its colour
features and its Lab image inside that region with one bilinear ``affine_grid`` + ``grid_sample``,
so the colour loss back-propagates into the box centre (and from there into the affinity that
placed it). The official code relied on PyTorch 1.1's implicit ``align_corners=True``; we pin it.

Box convention (used by `region_box`, `crop_boxes` and `vidcorr.track_boxes`): ``(x1, y1, x2, y2)``
in *pixel-edge* coordinates of the map being cropped, i.e. pixel ``p`` covers ``[p, p + 1)`` and the
whole map is ``[0, W] x [0, H]``. Coordinates returned by `vidcorr.affinity.locate_in_target` are
pixel *centres* (pixel ``p`` at ``p``), hence the ``+ 0.5`` in `region_box`. With this convention
a box on a stride-8 feature map scales to the image by multiplying by 8, the whole-map box returns
the map unchanged, and an integer sub-box returns exactly the slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def region_box(centre: Tensor, half_extent: Tensor, hw: tuple[int, int]) -> Tensor:
    """Box around a localised region, clamped to the map as the official code does.

    centre: (B, 2) region centre (x, y) in pixel-centre coordinates (`locate_in_target` units);
    half_extent: (B, 2) half width / half height in pixels (UVC Eq. 4 gives 2 x MAD, the half
    extent of a uniform blob); hw: (H, W) of the map. -> (B, 4) ``(x1, y1, x2, y2)`` pixel edges.

    Near the border the clamped box shrinks and is later resampled to the patch size: the implicit
    scale change of the released ``center2bbox`` (METHODS.md §1.5 item 5). The half extent is kept
    at least half a pixel so the box never collapses.
    """
    h, w = hw
    mid = centre + 0.5
    half = half_extent.clamp_min(0.5)
    x1 = (mid[:, 0] - half[:, 0]).clamp(min=0.0)
    y1 = (mid[:, 1] - half[:, 1]).clamp(min=0.0)
    x2 = (mid[:, 0] + half[:, 0]).clamp(max=float(w))
    y2 = (mid[:, 1] + half[:, 1]).clamp(max=float(h))
    return torch.stack([x1, y1, x2, y2], dim=1)


def _axis_affine(lo: Tensor, hi: Tensor, size: int, out: int) -> tuple[Tensor, Tensor]:
    """Scale and offset mapping the output's normalised axis to the input's (align_corners=True).

    Output pixel k's centre is at ``lo + (k + 0.5) (hi - lo) / out`` (pixel edges), i.e. at pixel
    centre index ``lo + (k + 0.5) (hi - lo) / out - 0.5``; with align_corners=True the normalised
    value of pixel-centre index i is ``2 i / (size - 1) - 1``.
    """
    span = max(size - 1, 1)
    scale = (hi - lo) * (out - 1) / (out * span)
    offset = (lo + hi - 1.0) / span - 1.0
    return scale, offset


def crop_boxes(images: Tensor, boxes: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Bilinearly resample every image inside its box to ``out_hw`` (differentiable in the box).

    images: (B, C, H, W); boxes: (B, 4) ``(x1, y1, x2, y2)`` pixel edges (see module docstring);
    out_hw: (h, w) -> (B, C, h, w). Boxes should lie inside the image (`region_box` clamps);
    ``border`` padding only guards against rounding at the edge.
    """
    B, C, H, W = images.shape
    out_h, out_w = out_hw
    boxes = boxes.to(images.dtype)
    sx, ox = _axis_affine(boxes[:, 0], boxes[:, 2], W, out_w)
    sy, oy = _axis_affine(boxes[:, 1], boxes[:, 3], H, out_h)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, ox], 1), torch.stack([zero, sy, oy], 1)], 1)
    grid = F.affine_grid(theta, [B, C, out_h, out_w], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
