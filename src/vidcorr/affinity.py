"""The affinity core: one inter-frame affinity that transports labels, features and coordinates.

Every method and every propagation protocol in vidcorr is built on the functions here
(DESIGN.md, "The one idea everything shares"). Notation follows UVC (Li et al., NeurIPS 2019):

* ``f1: (B, C, N1)`` reference features, ``f2: (B, C, N2)`` target features (N = h * w).
* Affinity ``A = softmax(f1^T f2 / tau)`` normalised over the *reference* axis (UVC Eq. 2): column j is a
  distribution over reference pixels for target pixel j. ``c2 = c1 A`` transports anything attached
  to the reference frame (labels, colours, features); ``l12 = l11 A`` transports coordinates (Eq. 3).
* Normalised over the *target* axis instead, row i is a distribution over target pixels for reference
  pixel i; the expected target coordinate of every reference pixel then localises a region
  (UVC §3.2, Eq. 3-4: centre = mean, half-size = 2 x mean absolute deviation).

For propagation the affinity is kept sparse: per target pixel, the top-k reference candidates drawn
from several context frames, either from the whole frame (`dense_topk`, streamed in chunks of target
pixels so memory stays bounded) or from a local window around the pixel (`windowed_topk`, tiled so the
cost grows with the window, not with the frame; `windowed_topk_frames` does several context frames per
matmul where memory allows, as on a GPU). `sparse_affinity` combines the candidates of all
context frames the way a protocol says (METHODS.md §5) and `transport_sparse` applies the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

WindowShape = Literal["circle", "square"]
TopKScope = Literal["joint", "per_frame"]
Normalisation = Literal["topk_softmax", "softmax_topk"]


# --------------------------------------------------------------------------- dense affinity


def affinity_logits(f1: Tensor, f2: Tensor, temperature: float = 1.0) -> Tensor:
    """Raw scores ``f1^T f2 / tau`` (UVC Eq. 1 with a dot-product kernel).

    f1: (B, C, N1), f2: (B, C, N2) -> (B, N1, N2).
    """
    return torch.bmm(f1.transpose(1, 2), f2) / temperature


def softmax_affinity(
    f1: Tensor,
    f2: Tensor,
    temperature: float = 1.0,
    normalise_over: Literal["ref", "target"] = "ref",
) -> Tensor:
    """Affinity normalised over reference pixels (UVC Eq. 2) or over target pixels (UVC §3.2).

    f1: (B, C, N1), f2: (B, C, N2) -> A: (B, N1, N2). With ``"ref"`` every column sums to 1 (use with
    `transport`); with ``"target"`` every row sums to 1 (use with `locate_in_target`).
    """
    logits = affinity_logits(f1, f2, temperature)
    return logits.softmax(dim=1 if normalise_over == "ref" else 2)


def transport(values: Tensor, aff: Tensor) -> Tensor:
    """``c2 = c1 A``: carry per-pixel values of the reference frame into the target frame.

    values: (B, K, N1) labels / colours / features, aff: (B, N1, N2) normalised over the reference
    axis -> (B, K, N2).
    """
    return torch.bmm(values, aff)


def coordinate_grid(h: int, w: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Pixel-centre coordinates of an h x w map in feature units, flattened row-major.

    -> (2, h * w) with row 0 = x in [0, w-1] and row 1 = y in [0, h-1].
    """
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)])


def transport_coordinates(aff: Tensor, ref_hw: tuple[int, int]) -> Tensor:
    """``l12 = l11 A`` (UVC Eq. 3): for every target pixel, where it came from in the reference.

    aff: (B, N1, N2) normalised over the reference axis -> (B, 2, N2) reference (x, y) in feature units.
    """
    grid = coordinate_grid(*ref_hw, device=aff.device, dtype=aff.dtype)
    return transport(grid.expand(aff.shape[0], -1, -1), aff)


def locate_in_target(scores: Tensor, target_hw: tuple[int, int]) -> Tensor:
    """Expected target coordinate of every reference pixel (UVC §3.2, Eq. 3 on the transposed map).

    scores: (B, N1, N2) logits (``affinity_logits``); softmax is taken over target pixels.
    -> (B, 2, N1) target (x, y) in feature units.
    """
    grid = coordinate_grid(*target_hw, device=scores.device, dtype=scores.dtype)
    prob = scores.softmax(dim=2)
    return torch.bmm(grid.expand(scores.shape[0], -1, -1), prob.transpose(1, 2))


def region_from_coordinates(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Region centre and half-size from transported coordinates (UVC Eq. 3-4).

    coords: (B, 2, N) -> centre (B, 2) = mean coordinate, half_size (B, 2) = 2 x mean absolute
    deviation from the centre (Eq. 4: for points spread uniformly over [-w, w] the mean |x| is w/2).
    """
    centre = coords.mean(dim=2)
    half_size = 2.0 * (coords - centre.unsqueeze(2)).abs().mean(dim=2)
    return centre, half_size


# --------------------------------------------------------------------------- local windows


def window_offsets(radius: float, shape: WindowShape) -> Tensor:
    """Integer (dy, dx) offsets inside a local window. -> (M, 2) long.

    ``circle``: Euclidean distance strictly below ``radius`` (CRW's ``D < radius``).
    ``square``: Chebyshev distance at most ``radius`` (STT/VFS: window side 2r+1 around the pixel).
    """
    if shape == "circle" and radius <= 0:
        raise ValueError(f"a circular window needs radius > 0, got {radius}")
    if radius < 0:
        raise ValueError(f"window radius must be >= 0, got {radius}")
    reach = math.ceil(radius)
    d = torch.arange(-reach, reach + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    if shape == "circle":
        inside = (dy * dy + dx * dx).double() < radius * radius
    elif shape == "square":
        inside = (dy.abs() <= radius) & (dx.abs() <= radius)
    else:
        raise ValueError(f"unknown window shape {shape!r}")
    return torch.stack([dy[inside], dx[inside]], dim=1)


def window_mask(h: int, w: int, radius: float, shape: WindowShape, device=None) -> Tensor:
    """Dense boolean mask (N1, N2) of the local window: True where reference i is near target j.

    For training losses on small maps (and as the naive reference in tests); propagation uses the
    tiled `windowed_topk`, which never builds this N x N matrix.
    """
    grid = coordinate_grid(h, w, device=device, dtype=torch.float64)
    dx = grid[0][:, None] - grid[0][None, :]
    dy = grid[1][:, None] - grid[1][None, :]
    if shape == "circle":
        return dx * dx + dy * dy < radius * radius
    return (dx.abs() <= radius) & (dy.abs() <= radius)


# --------------------------------------------------------------------------- top-k candidates


@dataclass(frozen=True)
class Candidates:
    """Top-k reference candidates for every target pixel of one context frame.

    scores: (N2, k) logits (``f1.f2 / tau``) or, when the protocol normalises before selecting,
    log-probabilities of the softmax over the whole frame / window. index: (N2, k) flat reference
    pixel index (y * w + x) within that frame. log_normaliser: (N2,) with log-probabilities, the
    softmax's log-sum-exp (scores = logits - log_normaliser), so that any other reference pixel's
    probability can be had from its logit (UVC-track's box-restricted top-k); else None.
    """

    scores: Tensor
    index: Tensor
    log_normaliser: Tensor | None = None


def dense_topk(
    query: Tensor,
    key: Tensor,
    k: int,
    *,
    temperature: float,
    softmax_first: bool,
    chunk: int = 1024,
    allowed: Tensor | None = None,
) -> Candidates:
    """Top-k over all reference pixels, streamed over chunks of target pixels.

    query: (C, N2) target features, key: (C, N1) reference features; allowed: optional (N2, N1)
    bool mask of admissible pairs. Peak extra memory is ``chunk x N1`` scores, independent of how
    many frames are propagated.
    """
    k = min(k, key.shape[1])
    query = query / temperature  # C x N2 divisions, not N2 x N1 (an eighth of a dense frame's time at 480p)
    scores, index, normalisers = [], [], []
    for start in range(0, query.shape[1], chunk):
        logits = query[:, start : start + chunk].T @ key
        if allowed is not None:
            logits.masked_fill_(~allowed[start : start + chunk], float("-inf"))
        if softmax_first:
            s, i, lse = topk_log_softmax_(logits, k)
            normalisers.append(lse)
        else:
            s, i = logits.topk(k, dim=1)
        scores.append(s)
        index.append(i)
    return Candidates(torch.cat(scores), torch.cat(index), torch.cat(normalisers) if softmax_first else None)


def topk_log_softmax_(logits: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top-k of ``logits.log_softmax(-1)`` without materialising it; ``logits`` is consumed.

    logits: (..., N) -> (log-probabilities (..., k), their index (..., k), log-sum-exp (...,)).
    log_softmax keeps each row's order, so the top-k of the logits are the top-k log-probabilities,
    and the best of them is the row's maximum; the log-sum-exp then needs one in-place exp pass.
    Differences from the maximum are clamped at -80 first: UVC's raw features at temperature 1 give
    logits hundreds apart, and exp() of most of them lands among the subnormal floats, which x86
    computes many times slower (log_softmax itself slows down 3x there). exp(-80) = 1.8e-35 per
    entry cannot move a sum that is at least 1 (the maximum's own term) in float32.
    """
    scores, index = logits.topk(k, dim=-1)
    top = scores[..., :1]
    log_sum = logits.sub_(top).clamp_(min=-80.0).exp_().sum(-1, keepdim=True).log_()
    return (scores - top) - log_sum, index, (top + log_sum).squeeze(-1)


def windowed_topk(
    query: Tensor,
    key: Tensor,
    k: int,
    *,
    radius: float,
    shape: WindowShape,
    temperature: float,
    softmax_first: bool,
    tile: int = 12,
    max_unfold_elements: int | None = None,
) -> Candidates:
    """Top-k over the reference pixels inside a local window around each target pixel.

    query, key: (C, h, w) target and reference features of the same size -> Candidates (N2, k).
    One context frame of `windowed_topk_frames`, which says how it is computed.
    """
    return windowed_topk_frames(
        query, [key], k, radius=radius, shape=shape, temperature=temperature, softmax_first=softmax_first,
        tile=tile, max_unfold_elements=max_unfold_elements,
    )[0]


def windowed_topk_frames(
    query: Tensor,
    keys: Sequence[Tensor],
    k: int,
    *,
    radius: float,
    shape: WindowShape,
    temperature: float,
    softmax_first: bool,
    tile: int = 12,
    max_unfold_elements: int | None = None,
    key_masks: Sequence[Tensor] | None = None,
) -> list[Candidates]:
    """Windowed top-k of one target frame against several context frames.

    query: (C, h, w); keys: F context frames, each (C, h, w) -> F Candidates, each (N2, k).
    key_masks: optional, F (h, w) bool maps of the reference cells that may be selected (the others
    score -inf, as outside the window; UVC-track's object boxes).

    The target is cut into ``tile x tile`` blocks; each block is matched (one batched matmul) against
    the ``(tile + 2 reach)^2`` reference block around it and the scores outside the window are
    masked. Cost per target pixel is ``(tile + 2 reach)^2 x C``: it grows with the window, not with
    the frame. The unfolded reference blocks are bounded by ``max_unfold_elements`` (default
    `unfold_budget`): on a CPU that is a band of tile rows of one frame at a time (32 MB, cache-sized,
    flat peak memory); on a GPU it is several whole frames per matmul, so a target frame costs a
    handful of kernel launches instead of a few per tile-row band of every context frame.
    """
    C, h, w = query.shape
    n_frames = len(keys)
    offsets = window_offsets(radius, shape)
    reach = int(offsets.abs().max())
    span = tile + 2 * reach
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    blocked = _tile_blocked_mask(h, w, float(radius), shape, tile, query.device)  # (n, tile^2, span^2)
    flat_index = _window_flat_index(h, w, tile, reach, query.device)  # (rows * cols, span^2)
    budget = unfold_budget(query.device) if max_unfold_elements is None else max_unfold_elements
    row_units = max(1, budget // (C * span * span * cols))  # tile rows (of any frame) per matmul
    band_rows = min(rows, row_units)
    group = max(1, row_units // rows) if band_rows == rows else 1  # whole frames per matmul

    pad = (reach, reach + cols * tile - w, reach, reach + rows * tile - h)
    k = min(k, offsets.shape[0])
    q_bands = _query_bands(query / temperature, tile, band_rows)
    scores: list[list[Tensor]] = [[] for _ in range(n_frames)]  # per frame, row bands of (rows, cols, k)
    index: list[list[Tensor]] = [[] for _ in range(n_frames)]
    normalisers: list[list[Tensor]] = [[] for _ in range(n_frames)]  # softmax first: (rows, cols, 1)
    for f0 in range(0, n_frames, group):
        frames = keys[f0 : f0 + group]
        kp = F.pad(frames[0][None] if len(frames) == 1 else torch.stack(list(frames)), pad)  # (G, C, H', W')
        g = kp.shape[0]
        km = None if key_masks is None else F.pad(torch.stack(list(key_masks[f0 : f0 + group])).byte(), pad)
        for r0, r1, q_tiles in q_bands:
            rows_in_reach = slice(r0 * tile, r1 * tile + 2 * reach)  # the band's reference rows
            s, flat, lse = _band_topk(
                q_tiles, kp[:, :, rows_in_reach], None if km is None else km[:, rows_in_reach],
                blocked[r0 * cols : r1 * cols], flat_index[r0 * cols : r1 * cols], tile, k, softmax_first,
            )
            for j in range(g):
                scores[f0 + j].append(_tiles_to_image(s[j], r1 - r0, cols, tile))
                index[f0 + j].append(_tiles_to_image(flat[j], r1 - r0, cols, tile))
                if lse is not None:
                    normalisers[f0 + j].append(_tiles_to_image(lse[j], r1 - r0, cols, tile))
    return [
        Candidates(torch.cat(s_f)[:h, :w].reshape(h * w, k), torch.cat(i_f)[:h, :w].reshape(h * w, k),
                   torch.cat(n_f)[:h, :w].reshape(h * w) if n_f else None)
        for s_f, i_f, n_f in zip(scores, index, normalisers)
    ]


def _band_topk(
    q_tiles: Tensor, k_rows: Tensor, km_rows: Tensor | None, blocked: Tensor, flat_index: Tensor,
    tile: int, k: int, softmax_first: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Top-k of one band of n target tiles against G context frames, one batched matmul.

    q_tiles: (n, tile^2, C) from `_query_bands`; k_rows: (G, C, band rows + 2 reach, W') the padded
    reference rows the band's windows reach; km_rows: the same rows of the key masks (G, ., W') or
    None; blocked: (n, tile^2, span^2) scores to mask; flat_index: (n, span^2) reference index of
    each window position. -> scores and flat reference index (G, n, tile^2, k) and, softmax first,
    the log-sum-exp (G, n, tile^2, 1), else None.
    """
    g, C = k_rows.shape[:2]
    n = q_tiles.shape[0]
    span = int(math.isqrt(flat_index.shape[1]))
    k_tiles = k_rows.unfold(2, span, tile).unfold(3, span, tile)  # (G, C, r, cols, span, span)
    k_tiles = k_tiles.permute(0, 2, 3, 1, 4, 5).reshape(g, n, C, span * span)
    logits = torch.matmul(q_tiles, k_tiles)  # (G, n, tile^2, span^2)
    logits.masked_fill_(blocked, float("-inf"))
    if km_rows is not None:
        ok = km_rows.unfold(1, span, tile).unfold(2, span, tile)
        logits.masked_fill_(ok.reshape(g, n, 1, span * span) == 0, float("-inf"))
    lse = None
    if softmax_first:
        s, i, lse = topk_log_softmax_(logits, k)  # (G, n, tile^2, k) x 2, (G, n, tile^2)
        lse = lse[..., None]
    else:
        s, i = logits.topk(k, dim=-1)
    flat = flat_index.expand(g, -1, -1).gather(2, i.view(g, n, -1)).view_as(i)
    return s, flat, lse


def _query_bands(query: Tensor, tile: int, band_rows: int) -> list[tuple[int, int, Tensor]]:
    """The target's ``tile x tile`` blocks, cut once per band of tile rows and shared by every context
    frame: query (C, h, w) -> [(first tile row, end tile row, (band rows * cols, tile^2, C))].

    The frame is zero-padded to whole tiles (their scores are cut off at the end). Tensor.unfold
    gives strided views; one reshape copies each block once (F.unfold is ~4x slower).
    """
    C, h, w = query.shape
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    q = F.pad(query, (0, cols * tile - w, 0, rows * tile - h))
    bands = []
    for r0 in range(0, rows, band_rows):
        r1 = min(rows, r0 + band_rows)
        q_tiles = q[:, r0 * tile : r1 * tile].unfold(1, tile, tile).unfold(2, tile, tile)  # (C, r, cols, t, t)
        bands.append((r0, r1, q_tiles.permute(1, 2, 3, 4, 0).reshape((r1 - r0) * cols, tile * tile, C)))
    return bands


def unfold_budget(device: torch.device) -> int:
    """Floats of unfolded reference blocks per matmul in `windowed_topk_frames`.

    CPU: 8 M (32 MB): larger bands are no faster there and would raise the peak memory. CUDA: a
    quarter of the free device memory, at most 512 M (2 GB): at 480p that holds all 20 windowed
    context frames of the crw preset (~300 M), with the scores (~0.56x as many) beside them.
    """
    if device.type != "cuda":
        return 8_000_000
    free, _ = torch.cuda.mem_get_info(device)
    return max(8_000_000, min(512_000_000, free // (4 * 4)))


@lru_cache(maxsize=16)
def _tile_window_mask(radius: float, shape: WindowShape, tile: int) -> Tensor:
    """(tile^2, span^2) bool on CPU: window position (wy, wx) is inside the window of query (qy, qx)."""
    offsets = window_offsets(radius, shape)
    reach = int(offsets.abs().max())
    span = tile + 2 * reach
    allowed = torch.zeros(2 * reach + 1, 2 * reach + 1, dtype=torch.bool)
    allowed[offsets[:, 0] + reach, offsets[:, 1] + reach] = True
    q = torch.arange(tile)
    wpos = torch.arange(span)
    # offset of window position from query position, shifted to index `allowed`
    d = wpos[None, :] - q[:, None]  # (tile, span), in [-tile+1, span-1]; inside iff 0 <= d <= 2*reach
    inside = (d >= 0) & (d <= 2 * reach)
    d = d.clamp(0, 2 * reach)
    m = allowed[d[:, None, :, None], d[None, :, None, :]]  # (qy, qx, wy, wx)
    m &= inside[:, None, :, None] & inside[None, :, None, :]
    return m.reshape(tile * tile, span * span)


@lru_cache(maxsize=4)
def _tile_blocked_mask(
    h: int, w: int, radius: float, shape: WindowShape, tile: int, device: torch.device
) -> Tensor:
    """(rows * cols, tile^2, span^2) bool on ``device``: True where a score must be masked — outside
    the window or outside the frame. Cached per device: every frame of a video has the same geometry,
    and a GPU run should not copy the mask (~8 MB at 480p) for every context frame."""
    offsets = window_offsets(radius, shape)
    reach = int(offsets.abs().max())
    span = tile + 2 * reach
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    pad = (reach, reach + cols * tile - w, reach, reach + rows * tile - h)
    valid = F.pad(torch.ones(h, w, dtype=torch.bool), pad)
    valid = valid.unfold(0, span, tile).unfold(1, span, tile).reshape(rows * cols, 1, span * span)
    return (~(_tile_window_mask(radius, shape, tile).unsqueeze(0) & valid)).to(device)


@lru_cache(maxsize=8)
def _window_flat_index(h: int, w: int, tile: int, reach: int, device: torch.device) -> Tensor:
    """(rows * cols, span^2) long on ``device``: flat reference index y * w + x of every window position of
    every tile (positions outside the frame clamped; their scores are masked anyway)."""
    span = tile + 2 * reach
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    offs = torch.arange(span) - reach
    ys = (torch.arange(rows)[:, None] * tile + offs[None]).clamp(0, h - 1)  # (rows, span)
    xs = (torch.arange(cols)[:, None] * tile + offs[None]).clamp(0, w - 1)  # (cols, span)
    flat = ys[:, None, :, None] * w + xs[None, :, None, :]  # (rows, cols, span, span)
    return flat.reshape(rows * cols, span * span).to(device)


def _tiles_to_image(t: Tensor, rows: int, cols: int, tile: int) -> Tensor:
    """(rows*cols, tile^2, k) -> (rows*tile, cols*tile, k)."""
    k = t.shape[-1]
    return t.view(rows, cols, tile, tile, k).permute(0, 2, 1, 3, 4).reshape(rows * tile, cols * tile, k)


# --------------------------------------------------------------------------- sparse affinity


@dataclass(frozen=True)
class TopKConfig:
    """How a protocol turns context-frame scores into propagation weights (METHODS.md §5).

    k: candidates kept per target pixel (per frame or jointly). scope: ``"joint"`` takes one top-k over
    the candidates of all context frames (CRW, STT); ``"per_frame"`` keeps k per frame and averages the
    frames' results (UVC, TimeCycle). normalisation: ``"topk_softmax"`` = softmax over the kept scores;
    ``"softmax_topk"`` = softmax over the whole frame (or window), keep the top-k probabilities, no
    renormalisation (UVC, TimeCycle). radius/shape: local window (radius None = whole frame).
    """

    k: int
    temperature: float
    scope: TopKScope = "joint"
    normalisation: Normalisation = "topk_softmax"
    radius: float | None = None
    shape: WindowShape = "circle"
    tile: int = 12
    chunk: int = 1024


@dataclass(frozen=True)
class SparseAffinity:
    """Propagation weights for one target frame. weights, index: (N2, M); index is flat into the
    concatenation of the context frames (frame * N1 + pixel). log_normalisers: (N2, F) each context
    frame's softmax log-sum-exp when the protocol normalises before selecting, else None."""

    weights: Tensor
    index: Tensor
    log_normalisers: Tensor | None = None


def sparse_affinity(
    query: Tensor,
    keys: Sequence[Tensor],
    windowed: Sequence[bool],
    cfg: TopKConfig,
) -> SparseAffinity:
    """Top-k affinity of one target frame against several context frames.

    query: (C, h, w) target features; keys: context features, each (C, h, w); windowed[i] says
    whether the local window applies to keys[i] (CRW leaves the first frame unrestricted).
    """
    if len(keys) != len(windowed) or not keys:
        raise ValueError("need one `windowed` flag per context frame, and at least one frame")
    h, w = query.shape[1:]
    n1 = h * w
    slots = frame_slots(keys, windowed, cfg)
    unique = {slot: key for slot, key in zip(slots, keys)}
    reach = int(window_offsets(cfg.radius, cfg.shape).abs().max()) if cfg.radius is not None else 0
    tiled = [slot for slot in unique if slot[1] and (cfg.tile + 2 * reach) ** 2 < n1]
    seen: dict[tuple[int, bool], Candidates] = {}
    if tiled:  # all tiled frames together: on a GPU, few large matmuls
        found = windowed_topk_frames(
            query, [unique[slot] for slot in tiled], cfg.k, radius=cfg.radius, shape=cfg.shape,
            temperature=cfg.temperature, softmax_first=cfg.normalisation == "softmax_topk", tile=cfg.tile,
        )
        seen.update(zip(tiled, found))
    for slot, key in unique.items():
        if slot not in seen:
            seen[slot] = _dense_candidates(query, key, slot[1], cfg)
    per_frame = [Candidates(seen[slot].scores, seen[slot].index + f * n1, seen[slot].log_normaliser)
                 for f, slot in enumerate(slots)]
    return combine_candidates(per_frame, cfg)


def frame_slots(keys: Sequence[Tensor], windowed: Sequence[bool], cfg: TopKConfig) -> list[tuple[int, bool]]:
    """One (tensor identity, window applies) slot per context frame. Protocols that pad the context
    with copies of frame 0 pass the same tensor many times: frames sharing a slot are scored once."""
    return [(id(key), use_window and cfg.radius is not None) for key, use_window in zip(keys, windowed)]


def _dense_candidates(query: Tensor, key: Tensor, use_window: bool, cfg: TopKConfig) -> Candidates:
    """Whole-frame top-k; with ``use_window``, a window as large as the frame (one masked dense
    matmul is cheaper than tiles then)."""
    h, w = query.shape[1:]
    allowed = _dense_window_mask(h, w, float(cfg.radius), cfg.shape, query.device) if use_window else None
    # A GPU takes as many target rows per matmul as the unfold budget allows (the whole frame at 480p).
    chunk = cfg.chunk if query.device.type != "cuda" else max(cfg.chunk, unfold_budget(query.device) // (h * w))
    return dense_topk(
        query.flatten(1), key.flatten(1), cfg.k, temperature=cfg.temperature,
        softmax_first=cfg.normalisation == "softmax_topk", chunk=chunk, allowed=allowed,
    )


@lru_cache(maxsize=4)
def _dense_window_mask(h: int, w: int, radius: float, shape: WindowShape, device: torch.device) -> Tensor:
    """(N2, N1) window mask for small maps on ``device`` (cached: every frame of a video has the
    same size)."""
    return window_mask(h, w, radius, shape, device=device).T.contiguous()


def combine_candidates(per_frame: list[Candidates], cfg: TopKConfig) -> SparseAffinity:
    """Turn per-frame candidates (each index already offset by frame * N1) into weights according to
    the protocol's scope and normalisation."""
    normalisers = [c.log_normaliser for c in per_frame]
    log_normalisers = torch.stack(normalisers, dim=1) if all(n is not None for n in normalisers) else None
    if cfg.scope == "joint":
        scores = torch.cat([c.scores for c in per_frame], dim=1)
        index = torch.cat([c.index for c in per_frame], dim=1)
        k = min(cfg.k, scores.shape[1])
        scores, pick = scores.topk(k, dim=1)
        index = index.gather(1, pick)
        if cfg.normalisation == "topk_softmax":
            weights = scores.softmax(dim=1)
        else:  # softmax_topk: probabilities of each frame's own softmax, no renormalisation
            weights = scores.exp()
        return SparseAffinity(weights, index, log_normalisers)
    if cfg.scope != "per_frame":
        raise ValueError(f"unknown top-k scope {cfg.scope!r}")
    n_frames = len(per_frame)
    weights = []
    for c in per_frame:
        w = c.scores.softmax(dim=1) if cfg.normalisation == "topk_softmax" else c.scores.exp()
        weights.append(w / n_frames)  # the frames' results are averaged
    return SparseAffinity(torch.cat(weights, dim=1), torch.cat([c.index for c in per_frame], dim=1),
                          log_normalisers)


def transport_sparse(bank: Tensor, aff: SparseAffinity) -> Tensor:
    """Carry context labels into the target frame with a sparse affinity.

    bank: (F * N1, K) labels of the context frames, concatenated in the order the keys were given
    -> (N2, K).
    """
    gathered = bank[aff.index]  # (N2, M, K)
    return torch.einsum("nm,nmk->nk", aff.weights.to(bank.dtype), gathered)
