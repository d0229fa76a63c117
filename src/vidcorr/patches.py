"""Rigid patches of a frame as affine sampling transforms, shared by CycleTime's model
(`vidcorr.methods.cycletime`) and its training samples (`vidcorr.data.augment`).

A patch is an affine sampling transform ``theta`` (N, 2, 3) in the unit coordinates of
``F.affine_grid`` with align_corners=True: (-1, -1) is the centre of the top-left pixel (or
feature cell) and (1, 1) that of the bottom-right one, the grid the official code builds with
``linspace(-1, 1, n)``. Output grid point (u, v) of the patch samples the map at
``theta @ (u, v, 1)``. CycleTime's transforms are rigid at a fixed scale of 1/3: three numbers,
a translation (tx, ty) and an angle, as its regressor predicts them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PATCH_SCALE = 1.0 / 3.0  # a patch spans a third of the frame's side (CycleTime's 80 of 240 px)


def rigid_theta(params: Tensor, scale: float = PATCH_SCALE) -> Tensor:
    """params: (N, 3) = (tx, ty, angle in radians) -> theta (N, 2, 3) = scale * rotation | t."""
    tx, ty, angle = params.unbind(dim=1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([cos, -sin, tx], dim=1),
                        torch.stack([sin, cos, ty], dim=1)], dim=1)


def scale_translation(theta: Tensor, factor: float) -> Tensor:
    """theta (N, 2, 3) with its translation column multiplied by ``factor``."""
    if factor == 1.0:
        return theta
    return torch.cat([theta[:, :, :2], theta[:, :, 2:] * factor], dim=2)


def sample_patch(image: Tensor, theta: Tensor, size: tuple[int, int],
                 translation_scale: float = 1.0) -> Tensor:
    """Bilinear patch of ``size`` (h, w) from image (N, C, H, W) at theta (N, 2, 3) -> (N, C, h, w).

    Points outside the map read zeros, as the official ``grid_sample`` did.
    """
    theta = scale_translation(theta, translation_scale).to(image.dtype)
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], *size], align_corners=True)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
