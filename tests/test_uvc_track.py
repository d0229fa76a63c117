"""UVC-track: localised boxes follow the object, box-restricted propagation, the official fallback
per context frame, the official Gaussian mean shift and mask boxes, bounded memory.

The ``_official_*`` helpers are direct ports of ``test_with_track.py`` / ``libs/track_utils.py``
(Liusifei/UVC), loops and all, written from the official code to check vidcorr against."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vidcorr.affinity import window_mask
from vidcorr.io.masks import DAVIS_PALETTE
from vidcorr.labels import decode_label_map, one_hot_labels
from vidcorr.masks import MaskTracker, mask_overlay, propagate_mask
from vidcorr.presets import SizePolicy, get_preset
from vidcorr.propagate import Propagator
from vidcorr.track_boxes import (
    fit_box,
    mask_bounding_box,
    mean_shift_centre,
    predicted_mask_box,
    scale_box,
    smoothed_box,
)
from vidcorr.track_uvc import TrackOptions, UVCTracker, context_falls_back, mask_propagator
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


def _official_disappear(labels, boxes, target_boxes):
    """``disappear(seg, bbox_ref, bbox_tar)``: any channel with soft labels summing to < 3, or any
    object without a box or with one under 3 cells, in the context frame or the target."""
    for cnt in range(labels.shape[1]):
        if labels[:, cnt].sum() < 3:
            return True
        if cnt == 0:  # the background's boxes are the whole frame
            continue
        for box in (boxes.get(cnt), target_boxes.get(cnt)):
            if box is None or box[2] - box[0] < 3 or box[3] - box[1] < 3:
                return True
    return False


def _falls_back(memories, target_boxes):
    """The official loop: the first frame is always carried box to box, the others unless they
    ``disappear``."""
    return [False] + [_official_disappear(m.labels, m.boxes, target_boxes) for m in memories[1:]]


def _naive_object_channel(query, memories, box, k, preset, falls_back):
    """Object k's channel by the official rule, on dense matrices: per context frame, where it falls
    back, its scores over the whole frame (or window); else those normalised over the whole frame,
    restricted to the object's box there and to the target box ``box``; top-k, combined as the
    preset says. A target cell with no admissible reference gets 0."""
    cfg = preset.topk
    h, w = query.shape[1:]

    def cells(b):
        inside = torch.zeros(h, w, dtype=torch.bool)
        if b is not None:
            inside[b[1]:b[3], b[0]:b[2]] = True
        return inside.flatten()

    per_frame = []
    for f, (memory, fallback) in enumerate(zip(memories, falls_back)):
        logits = query.flatten(1).T @ memory.feats.flatten(1) / cfg.temperature  # (N2, N1)
        if cfg.radius is not None and (f > 0 or preset.window_first):
            logits = logits.masked_fill(~window_mask(h, w, cfg.radius, cfg.shape).T, float("-inf"))
        if cfg.normalisation == "softmax_topk":
            logits = logits.log_softmax(dim=1)
        if not fallback:
            admissible = cells(box)[:, None] & cells(memory.boxes.get(k))[None, :]
            logits = logits.masked_fill(~admissible, float("-inf"))
        per_frame.append(logits)
    labels = [memory.labels[:, k] for memory in memories]

    def weighted(scores, bank, n_frames):
        s, i = scores.topk(cfg.k, dim=1)
        weights = s.softmax(dim=1) if cfg.normalisation == "topk_softmax" else s.exp() / n_frames
        return (weights.nan_to_num(nan=0.0) * bank[i]).sum(dim=1)

    if cfg.scope == "joint":
        out = weighted(torch.cat(per_frame, dim=1), torch.cat(labels), 1)
    else:
        out = sum(weighted(s, bank, len(memories)) for s, bank in zip(per_frame, labels))
    return out.view(h, w)


@pytest.mark.parametrize("preset", [
    PRESET,  # per-frame top-5 of the whole frame's softmax
    get_preset("crw").with_overrides(size=SizePolicy("native"), radius=4, n_previous=3),  # joint, windowed
], ids=["uvc", "crw-window4"])
def test_box_to_box_transport_restricts_then_takes_the_top_k(preset):
    """The tracked object's channel equals a naive restrict-then-top-k on dense matrices (the
    official order, official fallback), for a whole-frame protocol and a windowed, jointly selected
    one."""
    frames, masks = _object_video(n_frames=5, distractor=(2, 15, 7))
    tracker = UVCTracker(CellEncoder(), preset)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    for t in range(1, len(frames)):
        memories = [tracker._first, *tracker._context]  # the context this step will use
        soft = tracker.step(frames[t])
        box = tracker.boxes[1]
        assert box is not None
        falls_back = _falls_back(memories, tracker.boxes)
        want = _naive_object_channel(tracker.embed([frames[t]])[0], memories, box, 1, preset, falls_back)
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


def test_an_object_without_a_target_box_comes_only_from_the_preceding_frames_full_frame():
    """No target box: every preceding frame falls back (``disappear``), and the first frame, which
    the official code never lets fall back, contributes nothing to the object (``recoginition``
    skips it). On frame 1, where the first frame is the only context, the object's channel is 0
    and the background is the plain result."""
    frames, masks = _object_video(n_frames=4)
    first = one_hot_labels(masks[0])
    never_located = UVCTracker(CellEncoder(), PRESET, TrackOptions(min_pixels=10_000))
    plain = Propagator(CellEncoder(), PRESET)
    never_located.start(frames[0], first)
    plain.start(frames[0], first)
    soft, want = never_located.step(frames[1]), plain.step(frames[1])
    assert never_located.boxes == {1: None}
    assert (soft[1] == 0).all() and want[1].max() > 0.5
    torch.testing.assert_close(soft[0], want[0])

    preset = PRESET.with_overrides(n_previous=2)
    tracker = UVCTracker(CellEncoder(), preset)
    tracker.start(frames[0], first)
    tracker.step(frames[1])
    tracker.step(frames[2])
    tracker._context[-1].boxes[1] = None  # lost in the latest frame: no box in the target either
    memories = [tracker._first, *tracker._context]
    soft = tracker.step(frames[3])
    assert tracker.boxes == {1: None} and _falls_back(memories, tracker.boxes) == [False, True, True]
    want = _naive_object_channel(tracker.embed([frames[3]])[0], memories, None, 1, preset, [False, True, True])
    assert want.max() > 0.5
    torch.testing.assert_close(soft[1], want, atol=1e-5, rtol=1e-4)


def _two_object_video(n_frames=5):
    """`_object_video` with a look-alike of object 1 from frame 2 and a second, still object (id 2)."""
    frames, masks = _object_video(n_frames=n_frames, distractor=(2, 15, 7))
    texture = _blocks(np.random.default_rng(7), 3, 3)
    for frame, mask in zip(frames, masks):
        frame[8 * CELL:11 * CELL, 8 * CELL:11 * CELL] = (texture * 255).round().astype(np.uint8)
        mask[8 * CELL:11 * CELL, 8 * CELL:11 * CELL] = 2
    return frames, masks


@pytest.mark.parametrize("preset", [
    PRESET.with_overrides(n_previous=2),  # per frame: the fallen-back frame's share of the plain result
    get_preset("crw").with_overrides(size=SizePolicy("native"), radius=4, n_previous=3),  # pooled
], ids=["uvc", "crw-window4"])
def test_a_context_frame_where_one_object_vanished_falls_back_for_every_object(preset):
    """Official ``disappear``: object 2 has no box in one preceding frame, so that whole frame is
    propagated over the whole frame -- object 1's channel too, which then (whole-frame protocol)
    picks up the look-alike outside its box (0 there when every frame is carried box to box)."""
    frames, masks = _two_object_video()
    tracker = UVCTracker(CellEncoder(), preset)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    tracker.step(frames[1])
    tracker.step(frames[2])
    tracker._context[-2].boxes[2] = None  # object 2 vanished in frame 1
    memories = [tracker._first, *tracker._context]
    soft = tracker.step(frames[3])
    falls_back = _falls_back(memories, tracker.boxes)
    assert falls_back == [False] * (len(memories) - 2) + [True, False]
    query = tracker.embed([frames[3]])[0]
    for k in (1, 2):
        want = _naive_object_channel(query, memories, tracker.boxes[k], k, preset, falls_back)
        torch.testing.assert_close(soft[k], want, atol=1e-5, rtol=1e-4, msg=f"object {k}")
    if preset.topk.radius is None:
        box = tracker.boxes[1]
        outside = torch.ones_like(soft[1], dtype=torch.bool)
        outside[box[1]:box[3], box[0]:box[2]] = False
        assert soft[1][outside].max() > 0.05  # the look-alike, from frame 1's full-frame propagation


def test_context_falls_back_checks_every_channel_and_both_boxes():
    labels = torch.zeros(30, 3)
    labels[:, 0], labels[:10, 1], labels[10:14, 2] = 1.0, 0.5, 1.0  # sums 30, 5, 4
    good = {1: (0, 0, 3, 3), 2: (2, 1, 6, 4)}

    def falls(labels=labels, boxes=good, target=good, hw=(5, 6)):
        return context_falls_back(labels, boxes, target, hw, 3.0, 3)

    assert not falls()
    assert falls(labels=torch.cat([labels[:, :2], labels[:, 2:] * 0.5], dim=1))  # object 2 sums to 2
    assert falls(labels=torch.cat([labels[:, :1] * 0.05, labels[:, 1:]], dim=1))  # background 1.5
    assert falls(boxes={**good, 2: None})  # one object without a box: the whole frame falls back
    assert falls(target={**good, 1: None})
    assert falls(target={**good, 1: (0, 0, 2, 3)})  # 2 cells wide
    assert falls(boxes={**good, 2: (2, 1, 6, 3)})  # 2 cells high
    assert falls(hw=(2, 6))  # the background's whole-frame box is under 3 cells high


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


def _official_mean_shift(coords, bandwidth):
    """``mean_shift_center(coords, bandwidth)``: coords (n, 2) (x, y) -> (2,)."""
    avg_center = coords.mean(axis=0)
    minimum, prev_center = 100000, None
    for coord_i in coords:
        dis = np.linalg.norm(coord_i - avg_center)
        if dis < minimum:
            minimum, prev_center = dis, coord_i.copy()
    while True:
        numerator, denominator = 0, 0
        for neighbor in coords:
            distance = np.sqrt(np.sum((neighbor - prev_center) ** 2))
            if distance <= bandwidth:
                weight = (1 / (4 * np.sqrt(2 * np.pi))) * np.exp(-0.5 * (distance / 4) ** 2)  # sigma 4
                numerator = numerator + weight * neighbor
                denominator += weight
        new_center = numerator / denominator
        if np.sum(new_center - prev_center) < 0.1:
            return new_center
        prev_center = new_center


def _official_box(left, right, top, bottom, margin, h, w):
    """``BBox(left, right, top, bottom, margin, h, w)`` -> (x1, y1, x2, y2)."""
    if margin > 0:
        margin_w, margin_h = (right - left) * margin / 2, (bottom - top) * margin / 2
        left, right, top, bottom = left - margin_w, right + margin_w, top - margin_h, bottom + margin_h
    return (max(math.floor(left), 0), max(math.floor(top), 0), min(math.ceil(right), w), min(math.ceil(bottom), h))


def _official_coords2bbox_scale(coords, h, w, margin, bandwidth):
    """``coords2bbox_scale``: coords (n, 2) (x, y) -> (x1, y1, x2, y2)."""
    center = _official_mean_shift(coords, bandwidth)
    dis_x, dis_y = np.abs(coords - center).mean(axis=0)
    return _official_box(max(center[0] - 2 * dis_x, 0), min(center[0] + 2 * dis_x, w),
                         max(center[1] - 2 * dis_y, 0), min(center[1] + 2 * dis_y, h), margin, h, w)


def _official_adjust(now, pre, a, h, w):
    """``adjust_bbox`` for one box, (x1, y1, x2, y2)."""
    cy, cx = (now[1] + now[3]) / 2.0, (now[0] + now[2]) / 2.0
    height = a * (now[3] - now[1]) + (1 - a) * (pre[3] - pre[1])
    width = a * (now[2] - now[0]) + (1 - a) * (pre[2] - pre[0])
    return (max(0, math.floor(cx - width / 2.0)), max(0, math.floor(cy - height / 2.0)),
            min(w, math.ceil(cx + width / 2.0)), min(h, math.ceil(cy + height / 2.0)))


@pytest.mark.parametrize("seed", range(4))
def test_mean_shift_is_the_official_gaussian_one(seed):
    """A cluster, a second cluster within the bandwidth and strays: vidcorr's mean shift lands where
    the official loop does (Gaussian weights of sigma 4 inside the bandwidth, signed stop)."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(10, 1.5, (30, 2)), rng.normal(13, 1.0, (12, 2)),
                             rng.uniform(0, 40, (8, 2))])
    for bandwidth in (5.0, 20.0):
        got = mean_shift_centre(torch.from_numpy(points.T.copy()), bandwidth, sigma=4.0)
        np.testing.assert_allclose(got.numpy(), _official_mean_shift(points, bandwidth), atol=1e-9)


def test_mean_shift_stops_at_the_first_step_up_or_left():
    """The official stop sums the step with its sign: a first step up-left ends the search there,
    one cell from the start, although the points' mode is further up-left."""
    points = torch.tensor([[5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 9.0], [5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 9.0]])
    got = mean_shift_centre(points, bandwidth=5.0, sigma=4.0)
    want = _official_mean_shift(points.T.double().numpy(), 5.0)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    assert 3.0 < got[0] < 4.0  # one step from the start (4, 4), not at the mode (2, 2)


def test_fit_box_is_the_official_coords2bbox_scale():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal((12, 7), (3, 2), (60, 2)), rng.uniform(0, 30, (10, 2))])
    for margin, bandwidth, hw in ((1.0, 5.0, (20, 30)), (0.6, 20.0, (20, 30)), (0.6, 5.0, (9, 14))):
        got = fit_box(torch.from_numpy(points.T.copy()), bandwidth, 4.0, margin, hw)
        assert got == _official_coords2bbox_scale(points, *hw, margin, bandwidth), (margin, bandwidth, hw)


def test_box_arithmetic_is_the_officials():
    """``seg2bbox`` spans first to last pixel (not one past), ``upscale`` floors every edge,
    ``adjust_bbox`` keeps the centre and blends the size."""
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[8:16, 16:32] = True
    assert mask_bounding_box(mask, 0.0) == (16, 8, 31, 15)
    assert mask_bounding_box(mask, 1.0) == (8, 4, 39, 19)  # 15 x 7 grown by 7.5 / 3.5 a side
    assert mask_bounding_box(torch.zeros(4, 4, dtype=torch.bool), 0.6) is None
    assert scale_box((8, 4, 39, 19), (1 / 8, 1 / 8)) == (1, 0, 4, 2)
    assert smoothed_box((2, 2, 12, 6), (0, 0, 4, 4), 0.1, (20, 20)) == _official_adjust(
        (2, 2, 12, 6), (0, 0, 4, 4), 0.1, 20, 20)
    assert smoothed_box((2, 2, 12, 6), (0, 0, 4, 4), 0.1, (20, 20)) == (4, 2, 10, 6)  # size 4.6 x 4 about (7, 4)
    assert smoothed_box((2, 2, 12, 6), None, 0.1, (20, 20)) == (2, 2, 12, 6)


def test_first_boxes_are_seg2bbox_on_the_input_sized_mask():
    """Object pixels x 8..31, y 16..39: grown by 0.6 of 23 -> [1.1, 37.9] -> [1, 38] px -> cells
    [0, 4] (floored); y [9.1, 45.9] -> [9, 46] -> [1, 5]. With a resized input, the box is that of
    the mask nearest-resized to the input (``read_seg``'s ``large_seg``), then floored to cells."""
    frames, masks = _object_video(n_frames=1)
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    assert tracker.boxes == {1: (0, 1, 4, 5)}
    square = UVCTracker(CellEncoder(), PRESET.with_overrides(size=SizePolicy("square", 64)))
    square.start(frames[0], one_hot_labels(masks[0]))
    large = np.asarray(Image.fromarray(masks[0]).resize((64, 64), Image.NEAREST))  # scipy imresize nearest
    ys, xs = np.nonzero(large == 1)
    box = _official_box(xs.min(), xs.max(), ys.min(), ys.max(), 0.6, 64, 64)
    assert square.boxes == {1: tuple(math.floor(e / 8) for e in box)}


def test_mask_boxes_are_fitted_on_the_upsampled_mask_as_seg2bbox_v2():
    """A propagated frame's boxes: its soft labels upsampled x8 (bilinear), min-max normalised,
    argmax; then ``coords2bbox_scale`` (bandwidth 20 px, margin 0.6) on each object's pixels (the
    official list flipped: last pixel first), ``upscale(0.125)`` and ``adjust_bbox`` against the
    previous box, clamped to the input image's size (the official arguments)."""
    frames, masks = _object_video(n_frames=1, hw=(6, 10))
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    rng = np.random.default_rng(0)
    soft = torch.from_numpy(rng.uniform(0, 0.3, (3, 6, 10))).float()
    soft[0] += 0.5
    soft[1, 1:4, 2:6] += torch.from_numpy(rng.uniform(0.5, 1.0, (3, 4))).float()
    soft[1, 5, 0] += 0.9  # a stray pixel group away from object 1
    soft[2, 3:6, 7:10] += 0.9  # in the corner, after a larger box: the smoothed box passes the edges
    previous = {1: (1, 0, 6, 4), 2: (2, 0, 10, 6)}
    got = tracker._mask_boxes(soft.flatten(1).T, {k: previous[k] for k in (1, 2)})
    up = F.interpolate(soft[None], scale_factor=8, mode="bilinear", align_corners=False)[0]
    up = (up - up.amin(dim=(1, 2), keepdim=True)) / (up.amax(dim=(1, 2)) - up.amin(dim=(1, 2)))[:, None, None]
    hard = up.argmax(dim=0)
    for k in (1, 2):
        fg = torch.flip((hard == k).nonzero().double(), (0, 1)).numpy()  # (x, y), last pixel first
        box = _official_coords2bbox_scale(fg, 48, 80, margin=0.6, bandwidth=20)
        want = _official_adjust(tuple(math.floor(e * 0.125) for e in box), previous[k], 0.1, 48, 80)
        assert got[k] == want, (k, got[k], want)
    assert got[2][2] > 10 and got[2][3] > 6  # clamped to the 80 x 48 image, as the official code does
    assert tracker._mask_boxes(soft.flatten(1).T, {1: None}) == {1: None}  # None stays None


def test_mask_box_starts_from_the_last_of_tied_pixels():
    """Two pixels tie for nearest to the mean, (65, 6) and (65, 10); the official list is flipped,
    so the mean shift starts from the later one, and (signed stop) the box depends on it."""
    index = torch.zeros(48, 80, dtype=torch.long)
    index[10:19, 61:75] = 1
    index[1:7, 50:78] = 1
    fg = torch.flip(index.nonzero().double(), (0, 1)).numpy()
    want = _official_coords2bbox_scale(fg, 48, 80, margin=0.6, bandwidth=20)
    assert predicted_mask_box(index, 1, 20.0, 4.0, 0.6) == want == (48, 0, 80, 34)


def test_mask_boxes_of_a_block_are_on_its_upsampled_pixels():
    """Object cells x 2..5, y 1..2: its upsampled pixels are x 16..47, y 8..23. Mean shift from the
    last of the central pixels, (32, 16), barely moves (its window is symmetric to 1e-4); 2 MAD
    = 16 and 8 px; grown by 0.6: x [6.4, 57.6] -> [6, 58] px -> cells [0, 7], y [3.2, 28.8] ->
    [3, 29] -> [0, 3]. (Fitted on the cells instead, with the old flat kernel: (0, 0, 8, 4).)"""
    frames, masks = _object_video(n_frames=1, hw=(6, 10))
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    soft = torch.zeros(2, 6, 10)
    soft[1, 1:3, 2:6] = 1.0
    soft[0] = 1.0 - soft[1]
    assert tracker._mask_boxes(soft.flatten(1).T, {1: (0, 0, 7, 3)}) == {1: (0, 0, 7, 3)}


def test_localised_points_sit_on_the_official_coordinate_grid():
    """A still object: each foreground cell lands on itself, at the official ``create_grid``
    coordinate i * w / (w - 1) (PyTorch 1.1's align_corners=True grid), not at i."""
    frames, masks = _object_video(n_frames=2, step=0)
    tracker = UVCTracker(CellEncoder(), PRESET)
    tracker.start(frames[0], one_hot_labels(masks[0]))
    first = tracker.boxes[1]
    tracker.step(frames[1])
    h, w = tracker.feature_hw
    ys, xs = torch.meshgrid(torch.arange(2, 5.0), torch.arange(1, 4.0), indexing="ij")  # the object's cells
    landed = torch.stack([xs.flatten() * w / (w - 1), ys.flatten() * h / (h - 1)])
    want = smoothed_box(fit_box(landed, 5.0, 4.0, 1.0, (h, w)), first, 0.1, (h, w))
    assert tracker.boxes[1] == want == (0, 1, 5, 6)


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
