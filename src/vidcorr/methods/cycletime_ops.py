"""CycleTime's losses and matching as pure functions (Wang, Jabri & Efros, CVPR 2019; METHODS.md
§2.4-2.5), on the patch transforms of `vidcorr.patches` (``theta`` (N, 2, 3), unit coordinates).

Convention for affinities between a patch (h x w cells) and a frame (H x W cells):
(N, H*W, h, w), a softmax over the frame's cells (row-major, index y * W + x) for each patch cell,
so a convolution over the patch grid can read it with the frame's cells as channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidcorr.patches import scale_translation

# The official feature-space warps (`GeometricTnfAffine`, `WeakInlierCountPool`) divide the
# sampling grid by 227/210 and multiply the warped grid back, which nets out to the translation
# scaled by 227/210 (a constant inherited from weakalign). The ground-truth patch in pixel space
# is sampled without it.
OFFICIAL_TRANSLATION_SCALE = 227.0 / 210.0


def grid_loss(theta: Tensor, theta_gt: Tensor, points: int = 20) -> Tensor:
    """``TransformedGridLoss`` (METHODS.md §2.5): mean over a points x points grid on [-1, 1]^2 of the
    squared distance between where the two transforms send each point. (N, 2, 3) x 2 -> (N,)."""
    axis = torch.linspace(-1, 1, points, dtype=theta.dtype, device=theta.device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # (3, P)
    moved = (theta - theta_gt) @ grid  # (N, 2, P): the difference of the two images of each point
    return moved.pow(2).sum(dim=1).mean(dim=1)


def patch_affinity(patch: Tensor, frame: Tensor, temperature: float) -> Tensor:
    """Softmax over the frame's cells of ``patch^T frame / temperature`` (``compute_corr_softmax``,
    METHODS.md §2.4).

    patch: (N, C, h, w), frame: (N, C, H, W), both L2-normalised over C -> (N, H*W, h, w).
    """
    n, c, h, w = patch.shape
    scores = torch.einsum("ncf,ncp->nfp", frame.flatten(2), patch.flatten(2)) / temperature
    return scores.softmax(dim=1).view(n, -1, h, w)


def soft_inlier_score(affinity: Tensor, theta: Tensor, frame_hw: tuple[int, int],
                      translation_scale: float = OFFICIAL_TRANSLATION_SCALE) -> Tensor:
    """``WeakInlierCountPool`` with normalisation (METHODS.md §2.5, the paper's l_sim): how much
    affinity mass each patch cell puts on the frame cell that ``theta`` maps it to, summed over the
    patch. (N,)

    affinity: (N, H*W, h, w) from `patch_affinity`; theta: (N, 2, 3) the patch's transform in the
    frame. The official code warps a one-hot "identity mask" of the H*W frame cells with theta
    (bilinear, zeros outside), normalises the warped mask to sum 1 and takes its dot product with
    the affinity. That equals bilinearly reading each patch cell's affinity map at the cell's warped
    position, divided by the total in-frame weight. The denominator keeps the official epsilon,
    added to every one of the mask's H*W*h*w entries.
    """
    n, hw, h, w = affinity.shape
    frame_h, frame_w = frame_hw
    if hw != frame_h * frame_w:
        raise ValueError(f"affinity has {hw} frame cells, frame_hw {frame_hw} gives {frame_h * frame_w}")
    theta = scale_translation(theta, translation_scale).to(affinity.dtype)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=True)  # (N, h, w, 2)
    points = grid.reshape(n * h * w, 1, 1, 2)
    maps = affinity.permute(0, 2, 3, 1).reshape(n * h * w, 1, frame_h, frame_w)
    read = F.grid_sample(maps, points, mode="bilinear", padding_mode="zeros", align_corners=True)
    ones = maps.new_ones(1, 1, frame_h, frame_w).expand(n * h * w, 1, frame_h, frame_w)
    inside = F.grid_sample(ones, points, mode="bilinear", padding_mode="zeros", align_corners=True)
    mass = inside.view(n, -1).sum(dim=1) + 1e-5 * hw * h * w
    return read.view(n, -1).sum(dim=1) / mass
