"""UVC-track: boxes follow objects, box-restricted propagation, the official per-frame fallback, bounded memory."""

# The ``_official_*`` helpers are direct ports of ``test_with_track.py`` / ``libs/track_utils.py``
# (Liusifei/UVC), loops and all, written from the official code to check vidcorr against.

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic import endless
from uvc_track_helpers import CELL, PRESET, CellEncoder, _blocks, _iou, _object_video

from vidcorr.affinity import sparse_affinity, window_mask
from vidcorr.labels import decode_label_map, one_hot_labels
from vidcorr.masks import MaskTracker, mask_overlay, propagate_mask
from vidcorr.presets import SizePolicy, get_preset
from vidcorr.propagate import Propagator
from vidcorr.track_uvc import TrackOptions, UVCTracker, context_falls_back, mask_propagator
from vidcorr.viz import overlay_mask


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

    preset = PRESET.with_overrides(n_previous=2)
    tracker = UVCTracker(CellEncoder(), preset, batch_size=2)
    stream = tracker.run(endless(frames, pulled), one_hot_labels(masks[0]))
    for n_out in range(1, 12):
        next(stream)
        assert len(pulled) <= 1 + n_out + 2
    assert tracker.context_size == 1 + 2


def test_boxes_belong_to_the_frame_just_yielded_and_are_drawn_on_its_overlay():
    """propagate_mask yields each frame before propagating the next, so the tracker's boxes at that
    moment are the frame's own: the first frame's from its mask, then the localised ones. The
    overlay outlines them in the object's colour at full brightness (as its mask's outline: DAVIS's
    dark red (128, 0, 0) box was hard to see), in pixels."""
    frames, masks = _object_video(n_frames=5, step=2)
    tracker = UVCTracker(CellEncoder(), PRESET, batch_size=3)
    colour = (255, 0, 0)  # DAVIS_PALETTE[1] at full brightness
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


def test_an_object_id_past_the_palette_draws_its_box_in_the_colour_its_mask_gets():
    """Channel ids come from the Python API as any integers: the box looked its colour up at row k
    itself, an IndexError past 255. By the palette rule 1 + (k - 1) % 255, id 300 is coloured as 45."""
    frames, masks = _object_video(n_frames=1)
    drawn = []
    for k in (300, 45):
        tracker = UVCTracker(CellEncoder(), PRESET)
        tracker.start(frames[0], one_hot_labels(masks[0]), channel_ids=np.array([0, k]))
        drawn.append(mask_overlay(frames[0], np.where(masks[0] == 1, k, 0), tracker))
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[1], overlay_mask(frames[0], np.where(masks[0] == 1, 45, 0)))  # a box is drawn


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


def test_a_context_label_bank_of_other_rows_than_its_cells_is_refused_box_to_box_too():
    """The box-to-box transport indexed its bank directly, past transport_sparse's row check: a context
    frame with one label row too many shifted the next frame's rows by one, without a word."""
    frames, masks = _object_video(n_frames=3)
    tracker = UVCTracker(CellEncoder(), PRESET.with_overrides(n_previous=2))
    tracker.start(frames[0], one_hot_labels(masks[0]))
    tracker.step(frames[1])
    first, latest = tracker._first, tracker._context[-1]
    padded = replace(first, labels=torch.cat([first.labels, first.labels[:1]]))
    query = tracker.embed([frames[2]])[0]
    cells = query.shape[1] * query.shape[2]
    aff = sparse_affinity(query, [first.feats, latest.feats], tracker._windowed([first, latest]), PRESET.topk)
    with pytest.raises(ValueError, match=rf"bank rows: expected {2 * cells} .*got {2 * cells + 1}"):
        tracker._object_channel(query, [padded, latest], aff, 1, [False, False], {})
