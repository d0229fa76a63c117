"""UVC-track: label propagation restricted to localised object boxes (UVC Table 1 "ours-track").

UVC §4.2 and the official ``test_with_track.py`` (METHODS.md §1.9): per object, the region
localisation of training finds the object's box in the new frame, and its label is propagated only
from the object's box in each context frame to that box, so background pixels elsewhere cannot
vote for it. Per target frame:

1. Full-frame propagation with the preset's protocol, exactly as `vidcorr.propagate` does; it gives
   the background channel and the fallback for any object that cannot be tracked.
2. Localisation, per object: its foreground cells in the latest context frame are pushed into the
   target with a row-softmax (`vidcorr.affinity.locate_in_target`, UVC §3.2); the box is centred on
   the mean-shift mode of the landed points, half-size 2 x their mean absolute deviation (Eq. 4)
   enlarged by a margin, and its size smoothed over time.
3. Box-to-box propagation, per object: each context frame's affinity, normalised as the preset says
   over the whole context frame (or window), is restricted to the reference cells inside the
   object's box there and the target cells inside its new box; the top-k is then taken among the
   box's cells (``recoginition`` + ``transform_topk``: restrict first, then select). Outside the
   target box the object's channel is 0. An object whose box is lost (too few foreground cells, or
   a box under ``min_box`` cells) falls back to the full-frame result for that frame.

`UVCTracker` is a `Propagator` with these steps added, so memory is bounded the same way: the first
frame and a ring buffer of ``n_previous`` frames (features, soft labels, one box per object);
localisation is chunked over foreground cells.
Simplifications against the official code are listed in docs/uvc.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from vidcorr.affinity import (
    Candidates,
    SparseAffinity,
    affinity_logits,
    combine_candidates,
    frame_slots,
    locate_in_target,
    window_offsets,
    windowed_topk_frames,
)
from vidcorr.labels import minmax_per_channel
from vidcorr.methods.crop import region_box
from vidcorr.presets import PropagationPreset
from vidcorr.propagate import ContextFrame, Propagator

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) feature-cell edges: cells x1..x2-1, y1..y2-1


@dataclass(frozen=True)
class TrackOptions:
    """Knobs of UVC-track; defaults follow ``test_with_track.py`` (METHODS.md §1.9).

    first_margin: the first frame's (ground-truth) boxes are the mask's bounding box grown by this
        fraction of its size (``seg2bbox(margin=0.6)``).
    locate_margin: growth of a localised box (``bbox_in_tar_scale``: margin 1, i.e. doubled).
    mask_margin: growth of the box fitted to a predicted mask (``seg2bbox_v2``: 0.6).
    locate_bandwidth / mask_bandwidth: mean-shift radius in feature cells for localised points
        (official: 5 cells) and for predicted-mask cells (official: 20 px = 2.5 cells).
    size_smoothing: new box size = a x measured + (1 - a) x previous (``adjust_bbox``, a = 0.1);
        the centre is not smoothed.
    min_pixels: an object with fewer foreground cells in the latest frame is not localised.
    min_box: a box narrower or shorter than this many cells counts as lost (``disappear``).
    chunk: foreground cells localised per matmul (bounds memory for large objects).
    """

    first_margin: float = 0.6
    locate_margin: float = 1.0
    mask_margin: float = 0.6
    locate_bandwidth: float = 5.0
    mask_bandwidth: float = 2.5
    size_smoothing: float = 0.1
    min_pixels: int = 3
    min_box: int = 3
    chunk: int = 1024


@dataclass
class BoxedContextFrame(ContextFrame):
    """A context frame (features, soft labels) and one box per object (None where lost)."""

    boxes: dict[int, Box | None] = field(default_factory=dict)


def mean_shift_centre(points: Tensor, bandwidth: float, iters: int = 20) -> Tensor:
    """Mode of a point cloud: flat-kernel mean shift started at the point nearest the mean.

    points: (2, n) -> (2,). Stray points (pixels matched onto a look-alike elsewhere) pull the mean
    but not the mode (``mean_shift_center`` in the official ``track_utils.py``).
    """
    mean = points.mean(dim=1, keepdim=True)
    centre = points[:, (points - mean).norm(dim=0).argmin()]
    for _ in range(iters):
        near = ((points - centre[:, None]).norm(dim=0) <= bandwidth).to(points.dtype)
        moved = (points * near).sum(dim=1) / near.sum().clamp_min(1.0)
        if (moved - centre).abs().max() < 1e-3:
            return moved
        centre = moved
    return centre


def _smoothed_box(box: Tensor, previous: Box | None, alpha: float, hw: tuple[int, int]) -> Box:
    """Blend the size of ``box`` (4,) float edges with ``previous``, round outwards, clamp."""
    centre = (box[:2] + box[2:]) / 2
    size = box[2:] - box[:2]
    if previous is not None:
        size = alpha * size + (1 - alpha) * box.new_tensor(
            [previous[2] - previous[0], previous[3] - previous[1]])
    lo, hi = (centre - size / 2).tolist(), (centre + size / 2).tolist()
    h, w = hw
    return (max(0, math.floor(lo[0])), max(0, math.floor(lo[1])),
            min(w, math.ceil(hi[0])), min(h, math.ceil(hi[1])))


def fit_box(points: Tensor, bandwidth: float, margin: float, hw: tuple[int, int]) -> Tensor:
    """Box around a point cloud: mean-shift centre, half-size 2 x MAD about it (UVC Eq. 4), grown by
    ``margin``. points: (2, n) pixel-centre (x, y) on an (h, w) map -> (4,) float edges, clamped."""
    centre = mean_shift_centre(points, bandwidth)
    half = 2 * (points - centre[:, None]).abs().mean(dim=1) * (1 + margin)
    return region_box(centre[None], half[None], hw)[0]


def mask_bounding_box(
    mask: Tensor, margin: float, scale: tuple[float, float], hw: tuple[int, int]
) -> Box | None:
    """Bounding box of a full-resolution mask, grown by ``margin``, in feature cells.

    mask: (H, W) bool; scale: feature cells per pixel (x, y); hw: feature map (h, w).
    """
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if xs.numel() == 0:
        return None
    x1, x2, y1, y2 = xs.min().item(), xs.max().item() + 1, ys.min().item(), ys.max().item() + 1
    gx, gy = (x2 - x1) * margin / 2, (y2 - y1) * margin / 2
    h, w = hw
    return (max(0, math.floor((x1 - gx) * scale[0])), max(0, math.floor((y1 - gy) * scale[1])),
            min(w, math.ceil((x2 + gx) * scale[0])), min(h, math.ceil((y2 + gy) * scale[1])))


class UVCTracker(Propagator):
    """Streaming UVC-track propagation: a `Propagator` whose objects are carried box to box.

    encoder, preset, device, batch_size, autocast: as for `Propagator` (UVC's own preset is
    ``"uvc"``); options: the tracking knobs. ``run``, ``start`` and ``step`` work as there; after
    each propagated frame, ``boxes`` holds the boxes localised in it (after ``start``, the first
    frame's): {object id: Box or None}.
    """

    def __init__(
        self,
        encoder: nn.Module,
        preset: PropagationPreset,
        options: TrackOptions = TrackOptions(),
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        autocast: bool = False,
    ):
        super().__init__(encoder, preset, device=device, batch_size=batch_size, autocast=autocast)
        self.options = options
        self.boxes: dict[int, Box | None] = {}

    def pixel_boxes(self) -> dict[int, tuple[float, float, float, float] | None]:
        """``boxes`` in the original frame's pixels: {object id: (x, y, w, h) or None where lost}."""
        (h, w), (height, width) = self.feature_hw, self.original_hw
        sx, sy = width / w, height / h
        return {k: None if box is None else (box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy)
                for k, box in self.boxes.items()}

    def _first_memory(self, frame: np.ndarray, labels: Tensor) -> BoxedContextFrame:
        memory = super()._first_memory(frame, labels)
        h, w = self.feature_hw
        scale = (w / frame.shape[1], h / frame.shape[0])
        boxes = {k: mask_bounding_box(labels[k] > 0.5, self.options.first_margin, scale, (h, w))
                 for k in range(1, labels.shape[0])}
        self.boxes = dict(boxes)
        return BoxedContextFrame(memory.feats, memory.labels, boxes)

    def _transport(self, query: Tensor, memories: list[BoxedContextFrame], aff: SparseAffinity) -> Tensor:
        """Full-frame transport, then each object localised in the query frame and carried box to box."""
        soft = super()._transport(query, memories, aff)  # background and fallback
        latest = memories[-1]
        # The official code localises from the argmax of the stored (not min-max normalised) labels.
        latest_hard = latest.labels.argmax(dim=1)
        self.boxes = {k: self._locate(latest, latest_hard, query, k) for k in self._first.boxes}
        for k, box in self.boxes.items():
            if box is None:  # lost: keep the full-frame result
                continue
            target = self._inside(box).nonzero().squeeze(1)
            soft[:, k] = 0.0
            soft[target, k] = self._carry_box_to_box(query, memories, aff, k, target)
        return soft

    def _carry_box_to_box(
        self, query: Tensor, memories: list[BoxedContextFrame], aff: SparseAffinity, k: int, target: Tensor
    ) -> Tensor:
        """Object k's label at the target cells ``target`` (Nt,) of its box -> (Nt,).

        Per context frame, the preset's affinity restricted to the object's box there (the whole
        frame where the object has no box) and to ``target``, top-k among the box's cells, the
        scores normalised as the preset normalises the whole frame (`recoginition` + `transform_topk`
        in test_with_track.py); then combined over context frames as the preset says.
        """
        cfg = self.preset.topk
        n_cells = query.shape[1] * query.shape[2]
        normalisers = aff.log_normalisers if cfg.normalisation == "softmax_topk" else None
        slots = frame_slots([m.feats for m in memories], self._windowed(memories), cfg)
        found: dict[tuple[int, bool], Candidates] = {}
        per_frame = []
        for f, (memory, slot) in enumerate(zip(memories, slots)):
            if slot not in found:
                found[slot] = self._box_candidates(
                    query, target, memory, k, slot[1], None if normalisers is None else normalisers[target, f])
            per_frame.append(Candidates(found[slot].scores, found[slot].index + f * n_cells))
        restricted = combine_candidates(per_frame, cfg)
        weights = restricted.weights.nan_to_num(nan=0.0)  # a target cell with no admissible reference
        bank = torch.cat([memory.labels[:, k] for memory in memories])
        return (weights * bank[restricted.index]).sum(dim=1)

    def _box_candidates(
        self, query: Tensor, target: Tensor, memory: BoxedContextFrame, k: int, use_window: bool,
        log_normaliser: Tensor | None,
    ) -> Candidates:
        """Top-k reference cells inside object k's box in ``memory`` for the target cells ``target``
        (Nt,) of the query frame (C, h, w) -> Candidates (Nt, k).

        log_normaliser: (Nt,) the whole frame's (or window's) softmax log-sum-exp when the preset
        normalises before selecting; the scores are then the whole frame's log-probabilities.
        """
        box = memory.boxes.get(k)
        inside = self._inside(box) if box is not None else torch.ones_like(memory.labels[:, 0], dtype=torch.bool)
        if use_window:
            found = self._windowed_box_candidates(query, target, memory.feats, inside)
        else:
            found = self._dense_box_candidates(query, target, memory.feats, inside.nonzero().squeeze(1))
        if log_normaliser is None:
            return found
        return Candidates(found.scores - log_normaliser[:, None], found.index)

    def _dense_box_candidates(self, query: Tensor, target: Tensor, key: Tensor, ref: Tensor) -> Candidates:
        """Logit top-k over the reference cells ``ref`` of ``key`` (C, h, w), chunked over ``target``."""
        cfg = self.preset.topk
        q = query.flatten(1)[:, target] / cfg.temperature
        key = key.flatten(1)[:, ref]
        scores, index = [], []
        for part in q.split(cfg.chunk, dim=1):
            s, i = (part.T @ key).topk(min(cfg.k, ref.numel()), dim=1)
            scores.append(s)
            index.append(ref[i])
        return Candidates(torch.cat(scores), torch.cat(index))

    def _windowed_box_candidates(self, query: Tensor, target: Tensor, key: Tensor, inside: Tensor) -> Candidates:
        """Logit top-k over the reference cells ``inside`` (h * w,) bool of ``key`` that lie in each
        target cell's window: the tiled windowed top-k on the crop that the target box's windows
        reach, so the cost follows the box and the window, not box x box."""
        cfg, (h, w) = self.preset.topk, self.feature_hw
        reach = int(window_offsets(cfg.radius, cfg.shape).abs().max())
        ty, tx = target // w, target % w
        y0, x0 = max(0, int(ty.min()) - reach), max(0, int(tx.min()) - reach)
        y1, x1 = min(h, int(ty.max()) + 1 + reach), min(w, int(tx.max()) + 1 + reach)
        crop_w = x1 - x0
        found = windowed_topk_frames(
            query[:, y0:y1, x0:x1], [key[:, y0:y1, x0:x1]], cfg.k, radius=cfg.radius, shape=cfg.shape,
            temperature=cfg.temperature, softmax_first=False, tile=cfg.tile,
            key_masks=[inside.view(h, w)[y0:y1, x0:x1]],
        )[0]
        local = (ty - y0) * crop_w + (tx - x0)
        index = found.index[local]
        return Candidates(found.scores[local], (index // crop_w + y0) * w + index % crop_w + x0)

    def _context_memory(self, feats: Tensor, labels: Tensor) -> BoxedContextFrame:
        """A propagated frame keeps boxes fitted to its predicted mask (sizes smoothed against the
        latest context frame's)."""
        latest = self._context[-1] if self._context else self._first
        return BoxedContextFrame(feats, labels, self._mask_boxes(labels, latest))

    def _locate(self, ref: BoxedContextFrame, hard: Tensor, query: Tensor, k: int) -> Box | None:
        """Localise object k of ``ref`` (hard labels (N,)) in the target (UVC §3.2), its size
        smoothed against ref's box."""
        opts, previous = self.options, ref.boxes.get(k)
        cells = (hard == k).nonzero().squeeze(1)
        if previous is None or cells.numel() < opts.min_pixels:
            return None
        f_ref, f_tgt = ref.feats.flatten(1), query.flatten(1)[None]
        landed = torch.cat([  # where each foreground cell goes: row-softmax expectation
            locate_in_target(affinity_logits(f_ref[:, part][None], f_tgt, self.preset.topk.temperature),
                             self.feature_hw)[0]
            for part in cells.split(opts.chunk)], dim=1)
        box = fit_box(landed, opts.locate_bandwidth, opts.locate_margin, self.feature_hw)
        return self._checked(_smoothed_box(box, previous, opts.size_smoothing, self.feature_hw))

    def _mask_boxes(self, labels: Tensor, previous: BoxedContextFrame) -> dict[int, Box | None]:
        """Boxes of the objects in a propagated frame, fitted to its predicted mask (``seg2bbox_v2``)."""
        if self.preset.output_minmax:  # the boxes are fitted to what is decoded (``seg2bbox_v2``)
            labels = minmax_per_channel(labels.T.reshape(-1, *self.feature_hw)).flatten(1).T
        hard = labels.argmax(dim=1).view(self.feature_hw)
        opts, boxes = self.options, {}
        for k in previous.boxes:
            ys, xs = torch.nonzero(hard == k, as_tuple=True)
            if xs.numel() < opts.min_pixels:
                boxes[k] = None
                continue
            box = fit_box(torch.stack([xs, ys]).float(), opts.mask_bandwidth, opts.mask_margin,
                          self.feature_hw)
            boxes[k] = self._checked(_smoothed_box(box, previous.boxes.get(k), opts.size_smoothing,
                                                   self.feature_hw))
        return boxes

    def _checked(self, box: Box) -> Box | None:
        small = min(box[2] - box[0], box[3] - box[1]) < self.options.min_box
        return None if small else box

    def _inside(self, box: Box) -> Tensor:
        """(h * w,) bool: the cells of ``box`` on the feature map."""
        mask = torch.zeros(self.feature_hw, dtype=torch.bool, device=self.device)
        mask[box[1]:box[3], box[0]:box[2]] = True
        return mask.flatten()


def track_options(track: bool | TrackOptions | None) -> TrackOptions | None:
    """What a ``--track`` flag or ``track=`` argument asks for: None (plain propagation), or the
    options (True: the official defaults)."""
    if track is True:
        return TrackOptions()
    return track or None


def mask_propagator(
    encoder: nn.Module,
    preset: PropagationPreset,
    track: bool | TrackOptions | None = None,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
) -> Propagator:
    """The propagator that carries masks: a plain `Propagator`, or with ``track`` (True or options,
    `track_options`) a `UVCTracker` (the same interface; `vidcorr.masks.propagate_mask` runs either)."""
    options = track_options(track)
    if options is None:
        return Propagator(encoder, preset, device=device, batch_size=batch_size)
    return UVCTracker(encoder, preset, options, device=device, batch_size=batch_size)
