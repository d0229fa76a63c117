"""UVC-track: label propagation restricted to localised object boxes (UVC Table 1 "ours-track").

UVC §4.2 and the official ``test_with_track.py`` with ``libs/track_utils.py`` (METHODS.md §1.9),
followed step by step. Per target frame:

1. Full-frame propagation with the preset's protocol, exactly as `vidcorr.propagate` does: the
   background channel (the official background "box" is the whole frame, the same thing) and the
   result of every context frame that falls back (step 3).
2. Localisation, per object (``bbox_next_frame``): its foreground cells (argmax) in the latest
   context frame are pushed into the target with a row-softmax (`vidcorr.affinity.locate_in_target`,
   UVC §3.2) and placed on the official coordinate grid; the box is centred on the Gaussian
   mean-shift mode of the landed points (`mean_shift_centre`), half-size 2 x their mean absolute
   deviation (Eq. 4), grown by a margin, and its size smoothed against the latest frame's box.
3. Per context frame (``disappear``): a preceding frame in which any channel's soft labels sum to
   less than ``min_mass``, or any object has no box or one under ``min_box`` cells, there or in the
   target, contributes its full-frame propagation to every channel. Otherwise, and always for the
   first frame (the official code never checks it), each object is carried from its box there to
   its box in the target (``recoginition`` + ``transform_topk``: the preset's normalisation over
   the whole frame, restricted to the two boxes, then the top-k); an object without a box there
   or in the target (in the first frame: the others fall back) gets nothing from that frame.
4. Each propagated frame keeps one box per object fitted, as in step 2, to its mask decoded at
   the encoder's input size (``seg2bbox_v2``: UVC's x8 upsampling, min-max, argmax).

`UVCTracker` is a `Propagator` with these steps added, so memory is bounded the same way: the first
frame and a ring buffer of ``n_previous`` frames (features, soft labels, one box per object);
localisation is chunked over foreground cells, and the mask a box is fitted to is the size of the
mask the decoder makes of every frame anyway. docs/uvc.md lists the official code's oddities kept.
The box geometry (`mean_shift_centre`, box fitting, scaling, smoothing) is in `vidcorr.track_boxes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

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
    transport_sparse,
    window_offsets,
    windowed_topk_frames,
)
from vidcorr.labels import decode_label_map, downsample_labels
from vidcorr.presets import PropagationPreset
from vidcorr.propagate import ContextFrame, Propagator
from vidcorr.strict_dict import check_settings, python_numbers, refuse_non_finite
from vidcorr.track_boxes import (
    Box,
    fit_box,
    mask_bounding_box,
    predicted_mask_box,
    scale_box,
    smoothed_box,
)


@dataclass(frozen=True)
class TrackOptions:
    """Knobs of UVC-track; defaults are the constants of ``test_with_track.py`` (METHODS.md §1.9).

    first_margin: the first frame's (ground-truth) boxes are the mask's extent grown by this
        fraction of its size (``seg2bbox(margin=0.6)``).
    locate_margin: growth of a localised box (``bbox_in_tar_scale``: margin 1, i.e. doubled).
    mask_margin: growth of the box fitted to a predicted mask (``seg2bbox_v2``: 0.6).
    locate_bandwidth: mean-shift radius for localised points, in feature cells (official: 5).
    mask_bandwidth_px: mean-shift radius for the pixels of a predicted mask, in pixels of the mask
        decoded at the encoder's input size (official: 20).
    kernel_sigma: standard deviation of the mean shift's Gaussian weights, in the units of the
        points (official: 4 for both, i.e. 4 cells when localising, 4 pixels on masks).
    size_smoothing: new box size = a x measured + (1 - a) x previous (``adjust_bbox``, a = 0.1);
        the centre is not smoothed.
    min_pixels: an object with fewer foreground cells in the latest frame is not localised (2).
    min_mass: a preceding frame with a channel whose soft labels sum to less than this falls back
        to full-frame propagation (``disappear``: 3).
    min_box: so does one where an object's box, there or in the target, is narrower or shorter
        than this many cells (3).
    chunk: foreground cells localised per matmul (bounds memory for large objects).
    """

    first_margin: float = 0.6
    locate_margin: float = 1.0
    mask_margin: float = 0.6
    locate_bandwidth: float = 5.0
    mask_bandwidth_px: float = 20.0
    kernel_sigma: float = 4.0
    size_smoothing: float = 0.1
    min_pixels: int = 2
    min_mass: float = 3.0
    min_box: int = 3
    chunk: int = 1024

    def __post_init__(self) -> None:
        # A NaN margin, bandwidth, sigma or smoothing ended the first frame in "cannot convert float
        # NaN to integer"; a NaN min_mass silently never fell back.
        # NumPy scalars first: an np.float32 NaN passed the check below and a results.json record
        # (eval davis --track's "track") failed at the start with "float32 is not JSON serializable"
        python_numbers(self)
        refuse_non_finite(self)
        check_settings("UVC-track", self, {
            # Growths of a box by this fraction of its size: -1 or less turns a box inside out.
            "first_margin": ("0 or more", self.first_margin >= 0),
            "locate_margin": ("0 or more", self.locate_margin >= 0),
            "mask_margin": ("0 or more", self.mask_margin >= 0),
            # Mean shift (`track_boxes.mean_shift_centre`): a negative bandwidth keeps no point and a
            # sigma of 0 divides by zero (a NaN centre: "cannot convert float NaN to integer").
            "locate_bandwidth": ("positive", self.locate_bandwidth > 0),
            "mask_bandwidth_px": ("positive", self.mask_bandwidth_px > 0),
            "kernel_sigma": ("positive", self.kernel_sigma > 0),
            # A blend weight: outside [0, 1] a box size can turn negative.
            "size_smoothing": ("in [0, 1]", 0.0 <= self.size_smoothing <= 1.0),
            # 0 would localise an object with no cell left (the mean shift of no points).
            "min_pixels": ("at least 1", self.min_pixels >= 1),
            "min_mass": ("0 or more", self.min_mass >= 0),
            "min_box": ("0 or more", self.min_box >= 0),
            "chunk": ("at least 1", self.chunk >= 1),
        })


@dataclass
class BoxedContextFrame(ContextFrame):
    """A context frame (features, soft labels) and one box per object (None where lost)."""

    boxes: dict[int, Box | None] = field(default_factory=dict)


def context_falls_back(
    labels: Tensor, boxes: dict[int, Box | None], target_boxes: dict[int, Box | None],
    hw: tuple[int, int], min_mass: float, min_box: int,
) -> bool:
    """Whether a preceding context frame is propagated over the whole frame, for every channel,
    instead of box to box (official ``disappear``).

    labels: its soft labels (h * w, K); boxes / target_boxes: per object (1..K-1), its box there and
    in the target frame. True if some channel (background included) sums to less than ``min_mass``
    or some object has no box, or one narrower or shorter than ``min_box``, in either frame. The
    background's box is the whole (h, w) map in both.
    """
    def lost(box: Box | None) -> bool:
        return box is None or box[2] - box[0] < min_box or box[3] - box[1] < min_box

    h, w = hw
    if bool((labels.sum(dim=0) < min_mass).any()) or lost((0, 0, w, h)):
        return True
    return any(lost(boxes.get(k)) or lost(target_boxes.get(k)) for k in range(1, labels.shape[1]))


class UVCTracker(Propagator):
    """Streaming UVC-track propagation: a `Propagator` whose objects are carried box to box.

    encoder, preset, device, batch_size, autocast: as for `Propagator` (UVC's own preset is
    ``"uvc"``); options: the tracking knobs. ``run``, ``start`` and ``step`` work as there; after
    each propagated frame, ``boxes`` holds the boxes localised in it (after ``start``, the first
    frame's): {label channel k >= 1: Box or None}. Channel k is object id k in labels given to
    ``start``; for a mask (`vidcorr.masks`: one channel per id present) its id is ``channel_ids[k]``.
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
        """``boxes`` in the original frame's pixels: {label channel: (x, y, w, h) or None where lost}
        (a mask's object id: ``channel_ids[channel]``)."""
        (h, w), (height, width) = self.feature_hw, self.original_hw
        sx, sy = width / w, height / h
        return {k: None if box is None else (box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy)
                for k, box in self.boxes.items()}

    def _cells_per_pixel(self) -> tuple[float, float]:
        """Feature cells per pixel of the encoder input, (x, y): UVC's ``upscale(0.125)``."""
        (h, w), (height, width) = self.feature_hw, self.input_hw
        return w / width, h / height

    def _first_memory(self, feats: Tensor, labels: Tensor) -> BoxedContextFrame:
        """The first frame's boxes come from its mask at the encoder's input size (``read_seg``'s
        nearest-resized ``large_seg``), then scaled to cells."""
        memory = super()._first_memory(feats, labels)
        large = downsample_labels(labels.float(), self.input_hw, "nearest")
        scale = self._cells_per_pixel()
        boxes = {}
        for k in range(1, labels.shape[0]):
            box = mask_bounding_box(large[k] > 0.5, self.options.first_margin)
            boxes[k] = None if box is None else scale_box(box, scale)
        self.boxes = dict(boxes)
        return BoxedContextFrame(memory.feats, memory.labels, boxes=boxes)

    def _transport(self, query: Tensor, memories: list[BoxedContextFrame], aff: SparseAffinity) -> Tensor:
        """Full-frame transport, then each object localised in the query frame and carried box to box
        from the context frames that do not fall back."""
        soft = super()._transport(query, memories, aff)  # background, and frames that fall back
        latest = memories[-1]
        # The official code localises from the argmax of the stored (not min-max normalised) labels.
        latest_hard = latest.labels.argmax(dim=1)
        self.boxes = {k: self._locate(latest, latest_hard, query, k) for k in self._first.boxes}
        opts = self.options
        falls_back = [False] + [  # the first frame is always carried box to box
            context_falls_back(m.labels, m.boxes, self.boxes, self.feature_hw, opts.min_mass, opts.min_box)
            for m in memories[1:]]
        whole: dict[tuple[int, bool], Candidates] = {}  # full-frame candidates, shared by the objects
        for k in self.boxes:
            soft[:, k] = self._object_channel(query, memories, aff, k, falls_back, whole)
        return soft

    def _object_channel(
        self, query: Tensor, memories: list[BoxedContextFrame], aff: SparseAffinity, k: int,
        falls_back: list[bool], whole: dict[tuple[int, bool], Candidates],
    ) -> Tensor:
        """Object k's label in every cell of the query frame (C, h, w) -> (h * w,).

        Per context frame, its full-frame candidates where it falls back, else the preset's affinity
        restricted to the object's box there and its box in the target, top-k among the box's cells,
        scored as the preset normalises the whole frame (``recoginition`` + ``transform_topk``);
        then combined over context frames as the preset says. Per-frame protocols (UVC) add up
        the frames' results, so a frame that falls back brings its share of ``aff``; a joint top-k
        pools its full-frame candidates with the boxes' (computed once, in ``whole``).
        """
        cfg = self.preset.topk
        n_cells = query.shape[1] * query.shape[2]
        separable = cfg.scope == "per_frame"
        normalisers = aff.log_normalisers if cfg.normalisation == "softmax_topk" else None
        slots = frame_slots([m.feats for m in memories], self._windowed(memories), cfg)
        target = self._cells(self.boxes[k])
        boxed: dict[tuple[int, bool], Candidates] = {}
        per_frame = []
        for f, (memory, slot, fallback) in enumerate(zip(memories, slots, falls_back)):
            lse = None if normalisers is None else normalisers[:, f]
            if fallback and separable:
                found = self._no_candidates(n_cells)  # its share comes from ``aff`` below
            elif fallback:
                if slot not in whole:
                    everything = torch.arange(n_cells, device=self.device)
                    whole[slot] = self._restricted_candidates(query, everything, memory.feats, everything,
                                                              slot[1], lse)
                found = whole[slot]
            else:
                if slot not in boxed:
                    boxed[slot] = self._box_candidates(query, target, memory, k, slot[1], lse)
                found = boxed[slot]
            per_frame.append(Candidates(found.scores, found.index + f * n_cells))
        combined = combine_candidates(per_frame, cfg)
        # nan: a target cell with no admissible reference
        combined = replace(combined, weights=combined.weights.nan_to_num(nan=0.0))
        # through transport_sparse, which refuses a bank of other rows than the affinity's keys
        bank = torch.cat([memory.labels[:, k] for memory in memories])[:, None]  # (F * N1, 1)
        channel = transport_sparse(bank, combined)[:, 0]
        if separable and any(falls_back):
            # only the frames that fall back bring their share of the full-frame affinity
            from_fallback = torch.tensor(falls_back, device=self.device).repeat_interleave(n_cells)
            channel += transport_sparse(bank * from_fallback[:, None], aff)[:, 0]
        return channel

    def _no_candidates(self, n_cells: int) -> Candidates:
        """No reference for any of the query's ``n_cells`` cells (score -inf, weight 0)."""
        return Candidates(torch.full((n_cells, 1), float("-inf"), device=self.device),
                          torch.zeros((n_cells, 1), dtype=torch.long, device=self.device))

    def _box_candidates(
        self, query: Tensor, target: Tensor, memory: BoxedContextFrame, k: int, use_window: bool,
        log_normaliser: Tensor | None,
    ) -> Candidates:
        """Candidates (h * w, k) of every query cell from object k's box in ``memory``: the top-k of
        its cells for the target cells ``target`` (Nt,), none (score -inf) elsewhere or when either
        box is missing or empty (``recoginition`` skips the object then).

        log_normaliser: (h * w,) the whole frame's (or window's) softmax log-sum-exp when the
        preset normalises before selecting; the scores are then the whole frame's log-probabilities.
        """
        n_cells = query.shape[1] * query.shape[2]
        ref = self._cells(memory.boxes.get(k))
        if target.numel() == 0 or ref.numel() == 0:
            return self._no_candidates(n_cells)
        found = self._restricted_candidates(query, target, memory.feats, ref, use_window,
                                            None if log_normaliser is None else log_normaliser[target])
        scores = query.new_full((n_cells, found.scores.shape[1]), float("-inf"))
        index = torch.zeros((n_cells, found.index.shape[1]), dtype=torch.long, device=self.device)
        scores[target], index[target] = found.scores, found.index
        return Candidates(scores, index)

    def _restricted_candidates(
        self, query: Tensor, target: Tensor, key: Tensor, ref: Tensor, use_window: bool,
        log_normaliser: Tensor | None,
    ) -> Candidates:
        """Top-k reference cells among ``ref`` (Nr,) of ``key`` (C, h, w) for the target cells
        ``target`` (Nt,) of the query frame (C, h, w) -> Candidates (Nt, k), within the preset's
        window where it applies; log_normaliser: (Nt,) as in `_box_candidates`."""
        if use_window:
            inside = torch.zeros(key.shape[1] * key.shape[2], dtype=torch.bool, device=self.device)
            inside[ref] = True
            found = self._windowed_box_candidates(query, target, key, inside)
        else:
            found = self._dense_box_candidates(query, target, key, ref)
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
        return BoxedContextFrame(feats, labels, boxes=self._mask_boxes(labels, latest.boxes))

    def state(self) -> dict[str, Any]:
        """`Propagator.state` with the boxes: those of each ring buffer entry and the last frame's."""
        return {**super().state(), "boxes": boxes_state(self.boxes)}

    def _slot_state(self, memory: BoxedContextFrame) -> dict[str, Any]:
        return {**super()._slot_state(memory), "boxes": boxes_state(memory.boxes)}

    def _restored_memory(self, slot: dict[str, Any], feats: Tensor) -> BoxedContextFrame:
        memory = super()._restored_memory(slot, feats)
        return BoxedContextFrame(memory.feats, memory.labels, memory.frame, boxes=boxes_from_state(slot["boxes"]))

    def _restore(self, state: dict[str, Any], frames) -> None:
        super()._restore(state, frames)
        self.boxes = boxes_from_state(state["boxes"])

    def _locate(self, ref: BoxedContextFrame, hard: Tensor, query: Tensor, k: int) -> Box | None:
        """Localise object k of ``ref`` (hard labels (N,)) in the target (UVC §3.2, official
        ``bbox_next_frame``), its size smoothed against ref's box."""
        opts, previous = self.options, ref.boxes.get(k)
        cells = (hard == k).nonzero().squeeze(1)
        if previous is None or cells.numel() < opts.min_pixels:
            return None
        f_ref, f_tgt = ref.feats.flatten(1), query.flatten(1)[None]
        landed = torch.cat([  # where each foreground cell goes: row-softmax expectation
            locate_in_target(affinity_logits(f_ref[:, part][None], f_tgt, self.preset.topk.temperature),
                             self.feature_hw)[0]
            for part in cells.split(opts.chunk)], dim=1)
        # The official grid (``create_grid``: affine_grid under PyTorch 1.1, i.e. align_corners=True,
        # mapped to [0, w]) puts cell i at i * w / (w - 1), not at i.
        h, w = self.feature_hw
        landed = landed * landed.new_tensor([[w / max(w - 1, 1)], [h / max(h - 1, 1)]])
        box = fit_box(landed, opts.locate_bandwidth, opts.kernel_sigma, opts.locate_margin, self.feature_hw)
        return smoothed_box(box, previous, opts.size_smoothing, self.feature_hw)

    def _mask_boxes(self, labels: Tensor, previous: dict[int, Box | None]) -> dict[int, Box | None]:
        """Boxes of the objects of a propagated frame (soft labels (h * w, K)), fitted to its mask
        decoded at the encoder's input size (official ``seg2bbox_v2`` on the x8-upsampled, min-max
        normalised prediction), scaled to cells and smoothed against ``previous``. An object whose
        previous box is None stays None, as there."""
        index = decode_label_map(labels.T.reshape(-1, *self.feature_hw), self.preset, self.input_hw,
                                 self.input_hw)
        opts, scale, boxes = self.options, self._cells_per_pixel(), {}
        for k, before in previous.items():
            box = None if before is None else predicted_mask_box(
                index, k, opts.mask_bandwidth_px, opts.kernel_sigma, opts.mask_margin)
            # Clamped to the input image's size, not the map's, as the official test does (its
            # ``adjust_bbox`` gets the frame's h, w there): a box may reach past the map's
            # right or bottom edge; the cells it covers are clipped to the map where it is used.
            boxes[k] = None if box is None else smoothed_box(scale_box(box, scale), before,
                                                             opts.size_smoothing, self.input_hw)
        return boxes

    def _cells(self, box: Box | None) -> Tensor:
        """Flat indices of the cells of ``box`` on the feature map (none for None)."""
        mask = torch.zeros(self.feature_hw, dtype=torch.bool, device=self.device)
        if box is not None:
            mask[box[1]:box[3], box[0]:box[2]] = True
        return mask.flatten().nonzero().squeeze(1)


def boxes_state(boxes: dict[int, Box | None]) -> list[list[int] | None]:
    """Boxes per label channel 1..K-1 as a state holds them: a list (channel k at k - 1)."""
    return [None if boxes[k] is None else [int(v) for v in boxes[k]] for k in sorted(boxes)]


def boxes_from_state(saved: list[list[int] | None]) -> dict[int, Box | None]:
    """Inverse of `boxes_state`."""
    return {k: None if box is None else tuple(box) for k, box in enumerate(saved, start=1)}


def track_options(track: bool | TrackOptions | None) -> TrackOptions | None:
    """What a ``--track`` flag or ``track=`` argument asks for: None (plain propagation), or the
    options (True: the official defaults). Anything else is a ValueError: ``track="yes"`` was
    passed on as the options and failed inside the first frame."""
    if track is None or isinstance(track, TrackOptions):
        return track
    if isinstance(track, (bool, np.bool_)):
        return TrackOptions() if track else None
    raise ValueError(f"track must be True, False or a vidcorr.track_uvc.TrackOptions, got {track!r}")


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
