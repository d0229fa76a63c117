"""UVC's losses as pure functions on affinities and coordinates (METHODS.md §1.6, UVC §3).

Every affinity, transport and localisation goes through `vidcorr.affinity`; this file only adds
what UVC measures on top of them. Conventions:

* ``scores``: (B, N1, N2) logits ``f1^T f2 / tau`` (`affinity_logits`), reference rows, target
  columns. Softmax over dim 1 (reference pixels) gives UVC Eq. 2's A; over dim 2 (target pixels)
  the row-normalised affinity of UVC §3.2.
* Coordinate losses work in *unit* coordinates: x and y of a map mapped linearly to [-1, 1]
  (pixel-centre 0 -> -1, last pixel centre -> +1), the grid the official code uses
  (``affine_grid`` with align_corners=True), so their size does not depend on the map's resolution.
* Every loss returns one value per sample, shape (B,), so the caller can truncate or weight samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vidcorr.affinity import coordinate_grid, locate_in_target, transport, transport_coordinates


def unit_scale(hw: Sequence[int], like: Tensor) -> Tensor:
    """(2, 1) factors taking pixel-centre (x, y) of an (h, w) map to the [-1, 1] span."""
    h, w = hw
    return torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=like.dtype,
                        device=like.device).view(2, 1)


def to_unit(coords: Tensor, hw: Sequence[int]) -> Tensor:
    """coords: (B, 2, N) or (2, N) pixel-centre (x, y) of an (h, w) map -> same shape in [-1, 1]."""
    return coords * unit_scale(hw, coords) - 1.0


# --------------------------------------------------------------------------- colour


def weighted_l1(pred: Tensor, target: Tensor, weights: Sequence[float]) -> Tensor:
    """Per-sample weighted L1 on Lab (``weightsingle_L1``, METHODS.md §1.6).

    pred, target: (B, 3, H, W) UVC-normalised Lab in [-1, 1]; weights: (w_L, w_a, w_b), UVC uses
    (1, 10, 10) so that the chroma, which the grey encoder cannot see, drives the matching.
    -> (B,) ``sum_c w_c mean|pred_c - target_c|``.
    """
    w = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    per_channel = (pred - target).abs().flatten(2).mean(dim=2)  # (B, 3)
    return per_channel @ w


def kept_after_truncation(per_sample: Tensor, threshold: float | None) -> Tensor:
    """UVC's outlier rejection: per-sample losses above ``threshold`` count as 0 (METHODS.md §1.6).

    per_sample: (B,) -> (B,) float mask of the samples that are kept (all ones when threshold is
    None). Pairs whose colours cannot be reconstructed at all (scene cuts, new content) would
    otherwise dominate the batch.
    """
    if threshold is None:
        return torch.ones_like(per_sample)
    return (per_sample <= threshold).to(per_sample.dtype)


def decode_transported(
    colour_feats: Tensor, aff: Tensor, out_hw: Sequence[int], decode: Callable[[Tensor], Tensor]
) -> Tensor:
    """``D(E(I) A)``: carry colour features with the affinity and decode them (UVC §3.3).

    colour_feats: (B, D, h1, w1) auto-encoder features of the source; aff: (B, h1*w1, h2*w2)
    normalised over the source axis (Eq. 2), or its transpose for the "switch" term (Eq. 8 with
    ``A^T`` in place of ``A_{2->1}``, not renormalised); out_hw: (h2, w2).
    -> decoded Lab (B, 3, 8 h2, 8 w2), float32.
    """
    B, D = colour_feats.shape[:2]
    moved = transport(colour_feats.flatten(2).float(), aff).view(B, D, *out_hw)
    return decode(moved).float()


# --------------------------------------------------------------------------- coordinates


def _window_spread(coords: Tensor, layout_hw: Sequence[int], window: int) -> Tensor:
    """Mean squared deviation of coordinates from their mean in non-overlapping windows.

    coords: (B, 2, h*w) laid out on an (h, w) map. The window is shrunk to the map on maps smaller
    than it (tiny test inputs); a remainder that does not fill a window is ignored, as ``unfold``
    does in the official code. -> (B,)
    """
    B = coords.shape[0]
    h, w = layout_hw
    win = min(window, h, w)
    cols = F.unfold(coords.reshape(B, 2, h, w), win, stride=win).view(B, 2, win * win, -1)
    dev = cols - cols.mean(dim=2, keepdim=True)
    # mean over x/y, pixels and windows: the official sum / numel
    return dev.pow(2).mean(dim=(1, 2, 3))


def local_concentration(
    scores: Tensor, ref_hw: Sequence[int], tgt_hw: Sequence[int], window: int = 8
) -> Tensor:
    """Local concentration in both directions (``ConcentrationSwitchLoss``, METHODS.md §1.6).

    UVC §3.3: Eq. 6 without truncation, in non-overlapping ``window x window`` grids, so that
    neighbouring pixels move as one entity while the grids may deform freely. Forward: where every
    target pixel came from in the reference (Eq. 3, softmax over reference pixels), windows laid
    on the target map; backward: where every reference pixel goes in the target (softmax over
    target pixels), windows on the reference map. Unit coordinates of the map pointed into.

    scores: (B, N1, N2) logits -> (B,)
    """
    came_from = transport_coordinates(scores.softmax(dim=1), tuple(ref_hw))  # (B, 2, N2)
    goes_to = locate_in_target(scores, tuple(tgt_hw))  # (B, 2, N1)
    return (_window_spread(to_unit(came_from, ref_hw), tgt_hw, window)
            + _window_spread(to_unit(goes_to, tgt_hw), ref_hw, window))


def global_concentration(coords: Tensor, centre: Tensor, bound: Tensor) -> Tensor:
    """Truncated global concentration (UVC Eq. 6), on the patch's transported coordinates.

    coords: (B, 2, N) where each patch pixel lands in the target; centre: (B, 2) their mean
    (Eq. 3, differentiable); bound: (B, 2) the half width / height of the localised box (Eq. 4,
    detached). A point inside ``|x - C_x| <= w and |y - C_y| <= h`` costs nothing; a point outside
    costs its Euclidean distance to the centre, averaged over all N points. Read per point: it
    penalises exactly the strays that would make the box (2 x MAD) grow, and is 0 for a patch
    that moved as one unit. -> (B,)
    """
    dev = coords - centre.unsqueeze(2)
    outside = (dev.abs() > bound.unsqueeze(2)).any(dim=1)  # (B, N)
    # eps: sqrt has an infinite gradient at 0, and 0 * inf would poison masked-out points
    dist = (dev.pow(2).sum(dim=1) + 1e-12).sqrt()
    return (dist * outside.to(dist.dtype)).mean(dim=1)


def coordinate_cycle(scores: Tensor, ref_hw: Sequence[int], tgt_hw: Sequence[int]) -> Tensor:
    """Orthogonal regularisation on coordinates, ``l11 -> l12 -> l11`` (UVC Eq. 7), L1 in unit coords.

    ``l12 = l11 A_{1->2}`` (Eq. 3, softmax over reference pixels), then back with ``A_{2->1}`` =
    the softmax of the same scores over target pixels (the official ``coord_switch``; the paper
    says MSE, the official code L1; it was disabled in the released run, METHODS.md §1.6).
    A one-to-one (permutation) affinity returns every pixel to itself: loss 0.

    scores: (B, N1, N2) -> (B,)
    """
    l12 = transport_coordinates(scores.softmax(dim=1), tuple(ref_hw))  # (B, 2, N2)
    l11 = transport(l12, scores.softmax(dim=2).transpose(1, 2))  # (B, 2, N1)
    grid = coordinate_grid(*ref_hw, device=scores.device, dtype=scores.dtype)
    return (to_unit(l11, ref_hw) - to_unit(grid, ref_hw)).abs().mean(dim=(1, 2))
