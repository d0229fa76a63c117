"""Sparse affinity: combine the top-k candidates of several context frames the way a protocol says
(METHODS.md §5) and transport labels with the result.

`sparse_affinity` scores one target frame against its context frames with the candidate searches of
`vidcorr.affinity.window`; `transport_sparse` applies the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from vidcorr.affinity.window import (
    Candidates,
    WindowShape,
    check_same_shapes,
    dense_topk,
    unfold_budget,
    window_mask,
    window_offsets,
    windowed_topk_frames,
)
from vidcorr.strict_dict import (
    POSITIVE_INTEGER,
    POSITIVE_NUMBER,
    one_of,
    or_none,
    refuse_argument,
    refuse_non_finite,
    refuse_out_of_range,
)

TopKScope = Literal["joint", "per_frame"]
Normalisation = Literal["topk_softmax", "softmax_topk"]


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

    def __post_init__(self) -> None:
        # The preset knobs from Python (`customised_preset(temperature=...)`, `propagate_masks(radius=...)`):
        # a NaN temperature gave empty masks after the first frame without a word, an infinite one
        # uniform weights, a NaN or infinite radius a ValueError / OverflowError from deep inside.
        refuse_non_finite(self)
        # The command line's rules for --topk, --temperature and --radius (`vidcorr.cli.common`).
        # From Python, temperature=0 or k=0 gave empty masks after the first frame without a word,
        # a negative temperature masks from the least similar pixels, k < 0, radius <= 0 and an
        # unknown shape an error from inside the first target frame.
        refuse_out_of_range(self, {
            "k": POSITIVE_INTEGER,
            "temperature": POSITIVE_NUMBER,
            "scope": one_of(get_args(TopKScope)),
            "normalisation": one_of(get_args(Normalisation)),
            "radius": or_none(POSITIVE_NUMBER),
            "shape": one_of(get_args(WindowShape)),
            "tile": POSITIVE_INTEGER,
            "chunk": POSITIVE_INTEGER,
        })


@dataclass(frozen=True)
class SparseAffinity:
    """Propagation weights for one target frame. weights, index: (N2, M); index is flat into the
    concatenation of the context frames (frame * N1 + pixel). keys: F * N1, the rows of that
    concatenation (what `transport_sparse` takes as the label bank). log_normalisers: (N2, F) each
    context frame's softmax log-sum-exp when the protocol normalises before selecting, else None."""

    weights: Tensor
    index: Tensor
    keys: int
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
    check_same_shapes(query, keys)
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
    the protocol's scope and normalisation. Context frames have the target's size (`check_same_shapes`):
    N1 = N2, the candidates' rows."""
    keys = len(per_frame) * per_frame[0].scores.shape[0]
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
        return SparseAffinity(weights, index, keys, log_normalisers)
    n_frames = len(per_frame)
    weights = []
    for c in per_frame:
        w = c.scores.softmax(dim=1) if cfg.normalisation == "topk_softmax" else c.scores.exp()
        weights.append(w / n_frames)  # the frames' results are averaged
    return SparseAffinity(torch.cat(weights, dim=1), torch.cat([c.index for c in per_frame], dim=1), keys,
                          log_normalisers)


def transport_sparse(bank: Tensor, aff: SparseAffinity) -> Tensor:
    """Carry context labels into the target frame with a sparse affinity.

    bank: (F * N1, K) labels of the context frames, concatenated in the order the keys were given
    -> (N2, K). A ValueError for a bank of another row count than ``aff.keys``: one context frame more
    (labels kept for a frame the affinity was not built from) was read as its first rows, without a
    word. Compares Python ints only: no tensor value is read, nothing waits for a GPU.
    """
    refuse_argument("transport_sparse", "bank rows", bank.shape[0],
                    (f"{aff.keys} (F * N1, the key pixels the affinity indexes)", lambda rows: rows == aff.keys))
    gathered = bank[aff.index]  # (N2, M, K)
    return torch.einsum("nm,nmk->nk", aff.weights.to(bank.dtype), gathered)
