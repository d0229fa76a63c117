"""The tensor operations of STT's temporal stage (METHODS.md §4.4), as pure functions.

Layouts: a correlation ``corr`` is (B, N_target, N_ref) with positions listed row-major
(y * W + x); its rows are distributions over reference positions. Feature maps are (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ENTROPY_THRESHOLDS = ("release", "global")


def window_mask(height: int, width: int, radius: int, device: torch.device | str = "cpu") -> Tensor:
    """(H*W, H*W) bool: reference position j lies in the square window of ``radius`` cells around
    target position i (|dy| <= radius and |dx| <= radius; the release's ``make_mask``)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                            indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)


def raw_correlation(target: Tensor, ref: Tensor) -> Tensor:
    """target, ref: (B, C, H, W) -> dot products (B, H*W target, H*W ref), no scaling."""
    return torch.einsum("bci,bcj->bij", target.flatten(2), ref.flatten(2))


def local_correlation(raw: Tensor, channels: int, mask: Tensor | None) -> Tensor:
    """STT's ``non_local_correlation(tar, ref, mask, scaling=True)``: softmax over the reference
    positions in the window (``mask`` (N_t, N_r), None = all) of raw / sqrt(C).
    raw: (B, N_t, N_r) from `raw_correlation` -> (B, N_t, N_r), rows summing to 1."""
    logits = raw / channels**0.5
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(dim=-1)


def transport(corr: Tensor, values: Tensor) -> Tensor:
    """Carry per-pixel reference values to the target: corr (B, N_t, N_r), values (B, K, h, w)
    with h * w = N_r -> (B, K, N_t)."""
    return torch.einsum("bij,bkj->bki", corr, values.flatten(2))


def reconstruction_loss(corr: Tensor, ref_channel: Tensor, target_channel: Tensor, rate: int,
                        grid: tuple[int, int], scale: float) -> Tensor:
    """``stage{l}_l1_loss``: the reference frame's dropped Lab channel, sampled every ``rate``
    pixels (``[::rate, ::rate]``), transported by ``corr``, bilinearly upsampled to full size and
    compared with the target's by smooth-L1 on values times ``scale`` (release 20).

    corr: (B, h*w, h*w) with (h, w) = ``grid``; ref_channel, target_channel: (B, 1, H, W)
    normalised Lab. -> scalar."""
    sampled = ref_channel[:, :, ::rate, ::rate]
    if tuple(sampled.shape[-2:]) != grid:
        raise ValueError(f"the reference channel sampled every {rate} px is {tuple(sampled.shape[-2:])}, "
                         f"not the {grid} feature grid: the frame size must be a multiple of 32")
    carried = transport(corr, sampled).view(-1, 1, *grid)
    carried = F.interpolate(carried, size=target_channel.shape[-2:], mode="bilinear", align_corners=False)
    return F.smooth_l1_loss(carried * scale, target_channel * scale)


def pooled_correlation(corr: Tensor, grid: tuple[int, int], normalise: bool = False) -> Tensor:
    """The local distillation's target: the fine correlation (B, h*w, h*w), (h, w) = ``grid``,
    2x2-average-pooled over reference and over target positions -> (B, h*w/4, h*w/4).

    As released, rows then sum to 1/4 (average, not sum, over the four reference cells) while the
    coarse correlation it is compared with sums to 1; ``normalise=True`` multiplies by 4."""
    b = corr.shape[0]
    h, w = grid
    x = corr.reshape(b * h * w, 1, h, w)  # each target position's map over the reference grid
    x = F.avg_pool2d(x, 2).view(b, h, w, -1).permute(0, 3, 1, 2)  # (B, N_r', h, w) over targets
    n_ref = x.shape[1]
    x = F.avg_pool2d(x.reshape(b * n_ref, 1, h, w), 2).view(b, n_ref, -1).transpose(1, 2)
    return x * 4 if normalise else x


def displacement_cost(raw: Tensor, grid: tuple[int, int], radius: int) -> Tensor:
    """mmcv ``Correlation(max_displacement=radius)`` between target and reference from their
    full dot products: for each target position, the (2r+1)^2 dot products with the reference at
    every displacement, 0 where the displacement leaves the frame (zero padding).
    raw: (B, N, N) from `raw_correlation` -> (B, (2r+1)^2, N)."""
    h, w = grid
    device = raw.device
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    dy, dx = torch.meshgrid(torch.arange(-radius, radius + 1, device=device),
                            torch.arange(-radius, radius + 1, device=device), indexing="ij")
    ry = ys.flatten()[None] + dy.flatten()[:, None]  # (D, N)
    rx = xs.flatten()[None] + dx.flatten()[:, None]
    inside = (ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)
    index = (ry.clamp(0, h - 1) * w + rx.clamp(0, w - 1))  # (D, N) reference position
    target = torch.arange(h * w, device=device).expand_as(index)
    cost = raw[:, target, index]  # (B, D, N)
    return cost * inside


def uncertainty_weights(raw: Tensor, grid: tuple[int, int], radius: int, keep: float,
                        threshold: str = "release") -> Tensor:
    """Which target positions the local distillation trains on: those whose local matching is
    uncertain. e = sum over displacements of -log softmax(`displacement_cost`); positions with
    e above a threshold get weight 1, the others 0. -> (B, N) float.

    threshold "release": the code's quirk. The (h, w) map of e is sorted along x (descending) and
    row ``int(w * keep) - 1`` of the sorted map is the threshold, column by column: position
    (y, x) is kept if e[y, x] exceeds the x-th largest value of row ``int(w * keep) - 1``.
    "global": e above its ``int(N * keep) - 1``-th largest value over the whole map (the
    percentile the paper describes: the ~``keep`` most uncertain positions)."""
    if threshold not in ENTROPY_THRESHOLDS:
        raise ValueError(f"threshold must be one of {ENTROPY_THRESHOLDS}, got {threshold!r}")
    h, w = grid
    probability = displacement_cost(raw, grid, radius).softmax(dim=1)
    entropy = (-torch.log(probability + 1e-12)).sum(dim=1)  # (B, N)
    if threshold == "release":
        per_row = entropy.view(-1, h, w).sort(dim=-1, descending=True).values
        row = int(w * keep) - 1
        kept = entropy.view(-1, h, w) > per_row[:, row : row + 1]
    else:
        position = int(h * w * keep) - 1
        bar = entropy.sort(dim=-1, descending=True).values[:, position : position + 1]
        kept = entropy > bar
    return kept.flatten(1).float()


def weighted_mse(prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """sum(w * (p - t)^2) / max(sum(w), 1) with per-target-row weights (B, N_t) broadcast over
    the reference axis of (B, N_t, N_r). For the 0/1 weights of `uncertainty_weights` (or all
    ones) this is the release's sum(w * err) / sum(w), and 0 when nothing is weighted; the floor
    of 1 would differ only for fractional weights summing below 1, which nothing passes."""
    w = weights[..., None].expand_as(prediction)
    return (w * (prediction - target) ** 2).sum() / w.sum().clamp(min=1.0)


def global_correlation(target: Tensor, ref: Tensor, temperature: float | None = None,
                       normalise: bool = False) -> Tensor:
    """Full correlation for the global distillation: softmax over reference positions of
    target . ref / temperature (None: / sqrt(C), the student's). ``normalise``: L2-normalise the
    features first (the release does not for its teacher). (B, C, H, W) x2 -> (B, N, N)."""
    if normalise:
        target, ref = F.normalize(target, dim=1), F.normalize(ref, dim=1)
    raw = raw_correlation(target, ref)
    scale = target.shape[1] ** 0.5 if temperature is None else temperature
    return (raw / scale).softmax(dim=-1)
