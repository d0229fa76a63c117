"""Local windows and per-frame top-k candidates: the sparse half of the affinity core.

`dense_topk` takes the top-k over the whole reference frame, streamed in chunks of target pixels so
memory stays bounded; `windowed_topk` takes it over a local window around each target pixel, tiled so
the cost grows with the window, not with the frame; `windowed_topk_frames` does several context
frames per matmul where memory allows (as on a GPU). `vidcorr.affinity.sparse` combines the results.
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

from vidcorr.affinity.dense import check_temperature, coordinate_grid
from vidcorr.strict_dict import POSITIVE_INTEGER, refuse_argument

WindowShape = Literal["circle", "square"]


# --------------------------------------------------------------------------- local windows


def window_offsets(radius: float, shape: WindowShape) -> Tensor:
    """Integer (dy, dx) offsets inside a local window. -> (M, 2) long.

    ``circle``: Euclidean distance strictly below ``radius`` (CRW's ``D < radius``).
    ``square``: Chebyshev distance at most ``radius`` (STT/VFS: window side 2r+1 around the pixel).
    """
    _check_window(radius, shape)
    reach = math.ceil(radius)
    d = torch.arange(-reach, reach + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    if shape == "circle":
        inside = (dy * dy + dx * dx).double() < radius * radius
    else:
        inside = (dy.abs() <= radius) & (dx.abs() <= radius)
    return torch.stack([dy[inside], dx[inside]], dim=1)


def _check_window(radius: float, shape: WindowShape) -> None:
    """ValueError unless ``shape`` is a `WindowShape` and ``radius`` gives it at least one cell."""
    if shape == "circle" and radius <= 0:
        raise ValueError(f"a circular window needs radius > 0, got {radius}")
    if radius < 0:
        raise ValueError(f"window radius must be >= 0, got {radius}")
    if shape not in ("circle", "square"):
        raise ValueError(f"unknown window shape {shape!r}")


def window_mask(h: int, w: int, radius: float, shape: WindowShape, device: torch.device | str | None = None) -> Tensor:
    """Dense boolean mask (N1, N2) of the local window: True where reference i is near target j.

    For training losses on small maps (and as the naive reference in tests); propagation uses the
    tiled `windowed_topk`, which never builds this N x N matrix. The window as `window_offsets`'s, whose
    ValueErrors it shares: an unknown ``shape`` is not taken for a square.
    """
    _check_window(radius, shape)
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
    bool mask of admissible pairs. -> Candidates (N2, k): logits, or with ``softmax_first`` the
    log-probabilities of the softmax over all N1 (METHODS.md §5: UVC / TimeCycle's "full softmax, then
    top-k"). Peak extra memory is ``chunk x N1`` scores, independent of how many frames are
    propagated. k larger than N1 keeps all N1.
    """
    if query.dim() != 2 or key.dim() != 2 or query.shape[0] != key.shape[0]:
        raise ValueError(f"dense_topk: query and key must be (C, N2) and (C, N1) with the same C, "
                         f"got {tuple(query.shape)} and {tuple(key.shape)}")
    refuse_argument("dense_topk", "k", k, POSITIVE_INTEGER)
    check_temperature("dense_topk", temperature)
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
    if key.shape != query.shape:
        raise ValueError(f"windowed_topk: key must have the query's shape (C, h, w) = {tuple(query.shape)}, "
                         f"got {tuple(key.shape)}")
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

    query: (C, h, w); keys: F context frames, each (C, h, w) -> F Candidates, each (N2, k), k at most
    the window's number of cells. Where fewer than k cells of a window lie in the frame (its borders)
    the missing candidates score -inf (weight 0) and their index is some pixel of the window.
    key_masks: optional, F (h, w) bool maps of the reference cells that may be selected (the others
    score -inf, as outside the window; UVC-track's object boxes).

    The target is cut into ``tile x tile`` blocks; each block is matched (one batched matmul) against
    the ``(tile + 2 reach)^2`` reference block around it and the scores outside the window are
    masked. Cost per target pixel is ``(tile + 2 reach)^2 x C``: it grows with the window, not with
    the frame. The unfolded reference blocks are bounded by ``max_unfold_elements`` (default
    `unfold_budget`; `_unfold_plan`).
    """
    check_same_shapes(query, keys)
    refuse_argument("windowed_topk_frames", "k", k, POSITIVE_INTEGER)
    check_temperature("windowed_topk_frames", temperature)
    C, h, w = query.shape
    n_frames = len(keys)
    offsets = window_offsets(radius, shape)
    reach = int(offsets.abs().max())
    span = tile + 2 * reach
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    blocked = _tile_blocked_mask(h, w, float(radius), shape, tile, query.device)  # (n, tile^2, span^2)
    flat_index = _window_flat_index(h, w, tile, reach, query.device)  # (rows * cols, span^2)
    budget = unfold_budget(query.device) if max_unfold_elements is None else max_unfold_elements
    band_rows, group = _unfold_plan(budget, C * span * span * cols, rows)

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
    return [_stitched(s_f, i_f, n_f, h, w) for s_f, i_f, n_f in zip(scores, index, normalisers)]


def check_same_shapes(query: Tensor, keys: Sequence[Tensor]) -> None:
    """ValueError unless query is (C, h, w) and every key has its shape: without it, a key of another
    size would give candidates indexed into a frame of the query's size, without a word."""
    if query.dim() != 3:
        raise ValueError(f"query must be (C, h, w) features, got shape {tuple(query.shape)}")
    for i, key in enumerate(keys):
        if key.shape != query.shape:
            raise ValueError(f"keys[{i}] must have the query's shape (C, h, w) = {tuple(query.shape)}, "
                             f"got {tuple(key.shape)}")


def _unfold_plan(budget: int, row_elements: int, rows: int) -> tuple[int, int]:
    """(tile rows per band, whole frames per matmul) for a frame of ``rows`` tile rows whose
    unfolded reference blocks take ``row_elements`` floats a tile row, within ``budget`` floats.

    On a CPU that is a band of tile rows of one frame at a time (32 MB, cache-sized, flat peak
    memory); on a GPU it is several whole frames per matmul, so a target frame costs a handful of
    kernel launches instead of a few per tile-row band of every context frame.
    """
    row_units = max(1, budget // row_elements)  # tile rows (of any frame) per matmul
    band_rows = min(rows, row_units)
    group = max(1, row_units // rows) if band_rows == rows else 1  # whole frames per matmul
    return band_rows, group


def _stitched(scores: list[Tensor], index: list[Tensor], normalisers: list[Tensor], h: int, w: int) -> Candidates:
    """One frame's row bands, each (band rows * tile, cols * tile, k) ((., ., 1) normalisers, or
    none), cropped to the (h, w) frame -> Candidates (N2, k)."""
    k = scores[0].shape[-1]
    return Candidates(torch.cat(scores)[:h, :w].reshape(h * w, k), torch.cat(index)[:h, :w].reshape(h * w, k),
                      torch.cat(normalisers)[:h, :w].reshape(h * w) if normalisers else None)


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
