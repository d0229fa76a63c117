"""UVC-track: localised boxes follow the object, box-restricted propagation, fallback, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidcorr.affinity import window_mask
from vidcorr.io.masks import DAVIS_PALETTE
from vidcorr.labels import decode_label_map, one_hot_labels
from vidcorr.masks import MaskTracker, mask_overlay, propagate_mask
from vidcorr.presets import SizePolicy, get_preset
from vidcorr.propagate import Propagator
from vidcorr.track_uvc import (
    TrackOptions,
    UVCTracker,
    fit_box,
    mask_bounding_box,
    mask_propagator,
    mean_shift_centre,
)
from vidcorr.viz import overlay_mask

CELL = 8
PRESET = get_preset("uvc").with_overrides(size=SizePolicy("native"))


class CellEncoder(nn.Module):
    """A fixed random embedding of each 8x8 cell, L2-normalised and scaled so that the raw dot
    product of the `uvc` preset (no L2 norm, tau 1) peaks sharply at the identical cell."""

    def __init__(self, channels: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Conv2d(3, channels, CELL, stride=CELL, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g) * 0.2)

    def forward(self, x):
        return 8.0 * F.normalize(self.proj(x - 0.5), dim=1)


def _blocks(rng, rows, cols, sub=2):
    """Random colour texture of rows x cols cells made of sub x sub pixel blocks."""
    n = CELL // sub
    texture = rng.random((rows * n, cols * n, 3))
    return np.repeat(np.repeat(texture, sub, 0), sub, 1)


def _object_video(n_frames=7, hw=(12, 20), obj=3, start=(1, 2), step=1, distractor=None, seed=0):
    """A textured square of ``obj`` cells sliding right by ``step`` cells a frame over a static
    textured background (sizes in cells). ``distractor``: (first frame, cell x, cell y) of a
    look-alike (70 % the object's texture, 30 % another) that appears and stays still."""
    rng = np.random.default_rng(seed)
    background, texture = _blocks(rng, *hw), _blocks(rng, obj, obj)
    look_alike = 0.7 * texture + 0.3 * _blocks(rng, obj, obj)
    frames, masks = [], []
    for t in range(n_frames):
        img = background.copy()
        if distractor is not None and t >= distractor[0]:
            dx, dy = distractor[1] * CELL, distractor[2] * CELL
            img[dy:dy + obj * CELL, dx:dx + obj * CELL] = look_alike
        x, y = (start[0] + step * t) * CELL, start[1] * CELL
        img[y:y + obj * CELL, x:x + obj * CELL] = texture[:, : max(0, img.shape[1] - x)]
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[y:y + obj * CELL, x:x + obj * CELL] = 1
        frames.append((img * 255).round().astype(np.uint8))
        masks.append(mask)
    return frames, masks


def _iou(pred, truth):
    inter = np.logical_and(pred == 1, truth == 1).sum()
    return inter / max(1, np.logical_or(pred == 1, truth == 1).sum())


def test_the_box_follows_a_moving_object():
    frames, masks = _object_video()
    tracker = UVCTracker(CellEncoder(), PRESET)
    for t, soft in enumerate(tracker.run(frames, one_hot_labels(masks[0])), start=1):
        x1, y1, x2, y2 = tracker.boxes[1]
        obj_x1, obj_x2 = 1 + t, 4 + t  # object cells [obj_x1, obj_x2) x [2, 5)
        assert x1 <= obj_x1 and x2 >= obj_x2 and y1 <= 2 and y2 >= 5, (t, tracker.boxes[1])
        assert abs((x1 + x2) / 2 - (obj_x1 + obj_x2) / 2) <= 1.0
        pred = decode_label_map(soft, PRESET, tracker.input_hw, tracker.original_hw).numpy()
        assert _iou(pred, masks[t]) > 0.85, f"frame {t}"  # 0.96 at best: bilinear edges


def test_box_restriction_ignores_a_look_alike_that_full_frame_propagation_labels():
    frames, masks = _object_video(distractor=(2, 15, 7))
    distractor = np.zeros_like(masks[0], bool)
    distractor[7 * CELL:10 * CELL, 15 * CELL:18 * CELL] = True
    first = one_hot_labels(masks[0])
    prop = Propagator(CellEncoder(), PRESET)
    full = [decode_label_map(s, PRESET, prop.input_hw, prop.original_hw).numpy()
            for s in prop.run(frames, first)]
    tracked = [m for _, m in propagate_mask(UVCTracker(CellEncoder(), PRESET), frames, masks[0])][1:]
    assert len(tracked) == len(full) == len(frames) - 1
    for t in range(2, len(frames)):
        assert (full[t - 1][distractor] == 1).mean() > 0.5  # the look-alike steals the label...
        assert (tracked[t - 1][distractor] == 1).mean() == 0.0  # ...but not inside boxes
        assert _iou(tracked[t - 1], masks[t]) > 0.85


def _naive_box_channel(query, memories, box, k, preset):
    """Object k's channel by the official order, on dense matrices: each context frame's scores
    normalised over the whole frame (or window), restricted to the object's box there and to the
    target box, top-k among the box's cells, combined as the preset says; 0 outside the box."""
    cfg = preset.topk
    h, w = query.shape[1:]

    def cells(b):
        inside = torch.zeros(h, w, dtype=torch.bool)
        if b is None:
            return inside.fill_(True).flatten()
        inside[b[1]:b[3], b[0]:b[2]] = True
        return inside.flatten()

    per_frame = []
    for f, memory in enumerate(memories):
        logits = query.flatten(1).T @ memory.feats.flatten(1) / cfg.temperature  # (N2, N1)
        if cfg.radius is not None and (f > 0 or preset.window_first):
            logits = logits.masked_fill(~window_mask(h, w, cfg.radius, cfg.shape).T, float("-inf"))
        if cfg.normalisation == "softmax_topk":
            logits = logits.log_softmax(dim=1)
        per_frame.append(logits.masked_fill(~cells(memory.boxes.get(k))[None], float("-inf")))
    labels = [memory.labels[:, k] for memory in memories]

    def weighted(scores, bank, n_frames):
        s, i = scores.topk(cfg.k, dim=1)
        weights = s.softmax(dim=1) if cfg.normalisation == "topk_softmax" else s.exp() / n_frames
        return (weights * bank[i]).sum(dim=1)

    if cfg.scope == "joint":
        out = weighted(torch.cat(per_frame, dim=1), torch.cat(labels), 1)
    else:
        out = sum(weighted(s, bank, len(memories)) for s, bank in zip(per_frame, labels))
    return torch.where(cells(box), out, 0.0).view(h, w)


@pytest.mark.parametrize("preset", [
    PRESET,  # per-frame top-5 of the whole frame's softmax
    get_preset("crw").with_overrides(size=SizePolicy("native"), radius=4, n_previous=3),  # joint, windowed
], ids=["uvc", "crw-window4"])
def test_box_to_box_transport_restricts_then_takes_the_top_k(preset):
    """The tracked object's channel equals a naive restrict-then-top-k on dense matrices (the
    official order), for a whole-frame protocol and a windowed, jointly selected one."""
    frames, masks = _object_video(n_frames=5, distractor=(2, 15, 7))
    tracker = UVCTracker(CellEncoder(), preset)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    for t in range(1, len(frames)):
        memories = [tracker._first, *tracker._context]  # the context this step will use
        soft = tracker.step(frames[t])
        box = tracker.boxes[1]
        assert box is not None
        want = _naive_box_channel(tracker.embed([frames[t]])[0], memories, box, 1, preset)
        torch.testing.assert_close(soft[1], want, atol=1e-5, rtol=1e-4, msg=f"frame {t}")


def test_one_frame_at_a_time_equals_the_batched_run():
    """`start`/`step` (one encoder call per frame) give the batched run's masks and boxes."""
    frames, masks = _object_video(distractor=(2, 15, 7))
    preset = PRESET.with_overrides(n_previous=2)
    batched = UVCTracker(CellEncoder(), preset, batch_size=3)
    want = [m for _, m in propagate_mask(batched, frames, masks[0])]
    stepped = UVCTracker(CellEncoder(), preset)
    tracker = MaskTracker(stepped)
    got = [tracker.step(frames[0], masks[0])] + [tracker.step(f) for f in frames[1:]]
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"frame {t}")
    assert stepped.boxes == batched.boxes and stepped.boxes[1] is not None
    assert stepped.timing["frames"] == len(frames) - 1  # the box steps are timed as propagation


def test_mask_propagator_tracks_only_when_asked():
    plain = mask_propagator(CellEncoder(), PRESET)
    tracked = mask_propagator(CellEncoder(), PRESET, TrackOptions(min_box=2), batch_size=2)
    assert type(plain) is Propagator and isinstance(tracked, UVCTracker)
    assert tracked.options.min_box == 2 and tracked.batch_size == 2
    assert mask_propagator(CellEncoder(), PRESET, True).options == TrackOptions()  # a --track flag
    assert type(mask_propagator(CellEncoder(), PRESET, False)) is Propagator


def test_lost_objects_fall_back_to_full_frame_propagation():
    frames, masks = _object_video(n_frames=4)
    first = one_hot_labels(masks[0])
    never_located = TrackOptions(min_pixels=10_000)
    tracker = UVCTracker(CellEncoder(), PRESET, never_located)
    got = list(tracker.run(frames, first))
    want = list(Propagator(CellEncoder(), PRESET).run(frames, first))
    assert tracker.boxes == {1: None}
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_an_object_leaving_the_frame_is_dropped_without_errors():
    frames, masks = _object_video(n_frames=8, start=(12, 2), step=2)
    tracker = UVCTracker(CellEncoder(), PRESET)
    outputs = list(tracker.run(frames, one_hot_labels(masks[0])))
    assert all(torch.isfinite(s).all() for s in outputs)
    assert tracker.boxes[1] is None  # gone after frame 4


def test_frames_are_pulled_lazily_and_context_stays_bounded():
    frames, masks = _object_video(n_frames=3)
    pulled = []

    def endless():
        t = 0
        while True:
            pulled.append(t)
            yield frames[t % len(frames)]
            t += 1

    preset = PRESET.with_overrides(n_previous=2)
    tracker = UVCTracker(CellEncoder(), preset, batch_size=2)
    stream = tracker.run(endless(), one_hot_labels(masks[0]))
    for n_out in range(1, 12):
        next(stream)
        assert len(pulled) <= 1 + n_out + 2
    assert tracker.context_size == 1 + 2


def test_mean_shift_finds_the_mode_despite_outliers():
    cluster = torch.randn(2, 40, generator=torch.Generator().manual_seed(0)) * 0.5 + 10
    outliers = torch.full((2, 10), 40.0)
    centre = mean_shift_centre(torch.cat([cluster, outliers], dim=1), bandwidth=5)
    torch.testing.assert_close(centre, cluster.mean(dim=1), atol=0.3, rtol=0)


def test_fit_box_on_a_uniform_blob_and_mask_bounding_box():
    ys, xs = torch.meshgrid(torch.arange(4, 8.0), torch.arange(3, 9.0), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()])
    torch.testing.assert_close(fit_box(points, 5.0, 0.0, (20, 20)), torch.tensor([3.0, 4.0, 9.0, 8.0]))
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[8:16, 16:32] = True  # cells x 2..3, y 1
    assert mask_bounding_box(mask, 0.0, (1 / 8, 1 / 8), (5, 10)) == (2, 1, 4, 2)
    assert mask_bounding_box(mask, 1.0, (1 / 8, 1 / 8), (5, 10)) == (1, 0, 5, 3)
    assert mask_bounding_box(torch.zeros(4, 4, dtype=torch.bool), 0.6, (1, 1), (4, 4)) is None


def test_boxes_belong_to_the_frame_just_yielded_and_are_drawn_on_its_overlay():
    """propagate_mask yields each frame before propagating the next, so the tracker's boxes at that
    moment are the frame's own: the first frame's from its mask, then the localised ones. The
    overlay outlines them in the object's colour, in pixels."""
    frames, masks = _object_video(n_frames=5, step=2)
    tracker = UVCTracker(CellEncoder(), PRESET, batch_size=3)
    colour = DAVIS_PALETTE[1]
    for t, (frame, labels) in enumerate(propagate_mask(tracker, frames, masks[0])):
        x, y, w, h = tracker.pixel_boxes()[1]
        obj_x1, obj_x2 = (1 + 2 * t) * CELL, (4 + 2 * t) * CELL  # object pixels [x1, x2) x [16, 40)
        assert x <= obj_x1 and x + w >= obj_x2 and y <= 2 * CELL and y + h >= 5 * CELL, (t, (x, y, w, h))
        assert abs(x + w / 2 - (obj_x1 + obj_x2) / 2) <= CELL, t
        image = mask_overlay(frame, labels, tracker)
        top = image[int(y), int(x) + 1:int(x + w) - 1]  # the box's top edge, inside the frame
        assert (top == colour).all(axis=1).mean() > 0.9, t
    plain = Propagator(CellEncoder(), PRESET)  # no boxes without tracking
    np.testing.assert_array_equal(mask_overlay(frames[0], masks[0], plain), overlay_mask(frames[0], masks[0]))



def test_two_objects_each_keep_their_own_box():
    """Two textured squares moving apart: one box per object follows it, each mask stays its own."""
    rng = np.random.default_rng(3)
    background, textures = _blocks(rng, 12, 24), [_blocks(rng, 3, 3), _blocks(rng, 3, 3)]
    frames, masks = [], []
    for t in range(5):
        img, mask = background.copy(), np.zeros((12 * CELL, 24 * CELL), np.uint8)
        for k, (x, y) in enumerate([(9 - 2 * t, 2), (12 + 2 * t, 7)], start=1):  # cells, moving apart
            img[y * CELL:(y + 3) * CELL, x * CELL:(x + 3) * CELL] = textures[k - 1]
            mask[y * CELL:(y + 3) * CELL, x * CELL:(x + 3) * CELL] = k
        frames.append((img * 255).round().astype(np.uint8))
        masks.append(mask)
    tracker = UVCTracker(CellEncoder(), PRESET)
    for t, (_, labels) in enumerate(propagate_mask(tracker, frames, masks[0])):
        for k, x in ((1, 9 - 2 * t), (2, 12 + 2 * t)):
            box = tracker.boxes[k]
            assert box is not None and box[0] <= x and box[2] >= x + 3, (t, k, box)
            assert (labels == k).sum() and _iou(labels == k, masks[t] == k) > 0.85, (t, k)
