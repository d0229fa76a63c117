"""Dense affinity: scores, softmax over either axis, and transport of values and coordinates.

The notation and the UVC equations are in the package docstring (`vidcorr.affinity`). Everything
here works on whole (B, N1, N2) matrices: training losses, tracking and correspondence, and the
naive references the sparse paths are tested against.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from vidcorr.strict_dict import POSITIVE_NUMBER, refuse_argument

NormaliseOver = Literal["ref", "target"]


# --------------------------------------------------------------------------- argument checks
# Python-level checks of shapes and numbers, microseconds a call: without them a wrong argument
# would give torch's "Expected size for first two dimensions of batch2 tensor", NaN affinities
# (temperature 0), or a silently wrong answer (a typo in `normalise_over`).


def check_temperature(function: str, temperature: float | Tensor) -> None:
    """ValueError unless ``temperature`` is a positive finite number. A tensor (a learned
    temperature) is taken as it is: reading its value would synchronise a GPU at every step."""
    if not isinstance(temperature, Tensor):
        refuse_argument(function, "temperature", temperature, POSITIVE_NUMBER)


def _check_features(f1: Tensor, f2: Tensor) -> None:
    if f1.dim() != 3 or f2.dim() != 3 or f1.shape[:2] != f2.shape[:2]:
        raise ValueError(f"f1 and f2 must be (B, C, N1) and (B, C, N2) with the same B and C, "
                         f"got {tuple(f1.shape)} and {tuple(f2.shape)}")


def _check_pixels(name: str, hw: tuple[int, int], pixels: int, axis: str) -> None:
    if hw[0] * hw[1] != pixels:
        raise ValueError(f"{name} = {tuple(hw)} is {hw[0] * hw[1]} pixels, but the affinity has {pixels} "
                         f"{axis} pixels")


# --------------------------------------------------------------------------- dense affinity


def affinity_logits(f1: Tensor, f2: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Raw scores ``f1^T f2 / tau`` (UVC Eq. 1 with a dot-product kernel).

    f1: (B, C, N1), f2: (B, C, N2) -> (B, N1, N2). A ValueError for features of different B or C,
    and for a temperature that is not a positive finite number (a tensor, a learned one, is not read).
    """
    _check_features(f1, f2)
    check_temperature("affinity_logits", temperature)
    return torch.bmm(f1.transpose(1, 2), f2) / temperature


def softmax_affinity(
    f1: Tensor,
    f2: Tensor,
    temperature: float | Tensor = 1.0,
    normalise_over: NormaliseOver = "ref",
) -> Tensor:
    """Affinity normalised over reference pixels (UVC Eq. 2) or over target pixels (UVC §3.2).

    f1: (B, C, N1), f2: (B, C, N2) -> A: (B, N1, N2). With ``"ref"`` every column sums to 1 (use with
    `transport`); with ``"target"`` every row sums to 1 (use with `locate_in_target`).
    """
    if normalise_over not in ("ref", "target"):
        raise ValueError(f"softmax_affinity normalise_over: expected 'ref' or 'target', got {normalise_over!r}")
    logits = affinity_logits(f1, f2, temperature)
    return logits.softmax(dim=1 if normalise_over == "ref" else 2)


def transport(values: Tensor, aff: Tensor) -> Tensor:
    """``c2 = c1 A`` (UVC §3.1, below Eq. 2): carry per-pixel values of the reference frame into the target frame.

    values: (B, K, N1) labels / colours / features, aff: (B, N1, N2) normalised over the reference
    axis -> (B, K, N2), in the wider of their two dtypes.
    """
    if values.dim() != 3 or aff.dim() != 3 or values.shape[0] != aff.shape[0] or values.shape[2] != aff.shape[1]:
        raise ValueError(f"values and aff must be (B, K, N1) and (B, N1, N2) with the same B and N1, "
                         f"got {tuple(values.shape)} and {tuple(aff.shape)}")
    dtype = torch.promote_types(values.dtype, aff.dtype)  # float64 labels with a float32 affinity: bmm refused
    return torch.bmm(values.to(dtype), aff.to(dtype))


def coordinate_grid(
    h: int, w: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Pixel-centre coordinates of an h x w map in feature units, flattened row-major.

    -> (2, h * w) with row 0 = x in [0, w-1] and row 1 = y in [0, h-1].
    """
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)])


def _coordinate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or float64 for float64 input. Coordinates are not exact in half precision: bfloat16
    holds 8 significant bits, so cells 257, 259, ... of a wide map are rounded to their neighbours."""
    return torch.promote_types(dtype, torch.float32)


def transport_coordinates(aff: Tensor, ref_hw: tuple[int, int]) -> Tensor:
    """``l12 = l11 A`` (UVC Eq. 3): for every target pixel, where it came from in the reference.

    aff: (B, N1, N2) normalised over the reference axis, ref_hw: (h, w) of the reference's feature map
    with h * w = N1 -> (B, 2, N2) reference (x, y) in feature units, float32 (float64 for float64 aff)
    also for a bfloat16 / float16 aff and under autocast, whose matmul would round the grid to bf16.
    """
    _check_pixels("ref_hw", ref_hw, aff.shape[1], "reference")
    with torch.autocast(aff.device.type, enabled=False):
        aff = aff.to(_coordinate_dtype(aff.dtype))
        grid = coordinate_grid(*ref_hw, device=aff.device, dtype=aff.dtype)
        return transport(grid.expand(aff.shape[0], -1, -1), aff)


def locate_in_target(scores: Tensor, target_hw: tuple[int, int]) -> Tensor:
    """Expected target coordinate of every reference pixel (UVC §3.2, Eq. 3 on the transposed map).

    scores: (B, N1, N2) logits (``affinity_logits``); softmax is taken over target pixels. target_hw: (h, w)
    of the target's feature map with h * w = N2. -> (B, 2, N1) target (x, y) in feature units, in
    float32 (float64 for float64 scores) whatever the scores' dtype or autocast, as `transport_coordinates`.
    """
    _check_pixels("target_hw", target_hw, scores.shape[2], "target")
    with torch.autocast(scores.device.type, enabled=False):
        prob = scores.to(_coordinate_dtype(scores.dtype)).softmax(dim=2)
        grid = coordinate_grid(*target_hw, device=prob.device, dtype=prob.dtype)
        return torch.bmm(grid.expand(prob.shape[0], -1, -1), prob.transpose(1, 2))


def region_from_coordinates(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Region centre and half-size from transported coordinates (UVC Eq. 3-4).

    coords: (B, 2, N) -> centre (B, 2) = mean coordinate, half_size (B, 2) = 2 x mean absolute
    deviation from the centre (Eq. 4; Eq. 5: for points spread uniformly over [-w, w] the mean |x| is w/2).
    """
    centre = coords.mean(dim=2)
    half_size = 2.0 * (coords - centre.unsqueeze(2)).abs().mean(dim=2)
    return centre, half_size
