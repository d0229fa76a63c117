"""Streaming propagation: equivalence with a naive all-frames loop, bounded memory, label codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import PatchEncoder, endless
from torch import nn

from vidcorr.affinity import window_mask
from vidcorr.errors import EncoderOutputError, NotStarted
from vidcorr.keypoints import codec_for, propagate_keypoints
from vidcorr.labels import (
    decode_label_map,
    downsample_labels,
    minmax_per_channel,
    one_hot_labels,
)
from vidcorr.masks import MaskTracker, propagate_mask
from vidcorr.presets import PRESETS, SizePolicy, customised_preset, get_preset
from vidcorr.propagate import Propagator, frames_to_tensor


def _texture_video(n_frames=8, h=64, w=96, step=3, seed=0):
    """A random texture translating right by `step` px per frame, and a square mask moving with it."""
    rng = np.random.default_rng(seed)
    big = (rng.random((h, w + step * n_frames, 3)) * 255).astype(np.uint8)
    big = np.repeat(np.repeat(big[::4, ::4], 4, axis=0), 4, axis=1)[:h]  # blocky, matchable texture
    frames, masks = [], []
    for t in range(n_frames):
        x0 = step * (n_frames - t)
        frames.append(np.ascontiguousarray(big[:, x0 : x0 + w]))
        m = np.zeros((h, w), np.uint8)
        m[8:56, 16 + step * t : 64 + step * t] = 1
        masks.append(m)
    return frames, masks


def _naive_run(encoder, preset, frames, first_labels):
    """All-frames reference: embed everything up front, dense masked scores, literal context rules.

    The context is a bank of (frame, labels) entries: frame 0 with its annotation first, then the
    initial context, then each propagated frame. ``fill_self`` reads as TimeCycle's loop over a video
    padded with n copies of frame 0: its first target is frame 0 itself, whose prediction is kept."""
    size = preset.size.input_size(*frames[0].shape[:2])
    feats = encoder(frames_to_tensor(frames, size, "cpu"))
    if preset.l2_normalise:
        feats = F.normalize(feats, dim=1)
    _, C, h, w = feats.shape
    cfg, n = preset.topk, preset.n_previous
    bank = [(0, downsample_labels(first_labels, (h, w), preset.label_downsample).flatten(1).T)]
    recent = {"empty": [], "first": [0], "fill": [0] * n, "fill_self": [0] * n}[preset.initial_context]

    def propagate(t):
        ctx = [0] + (recent[-n:] if n else [])
        windowed = [preset.window_first] + [True] * (len(ctx) - 1)
        q = feats[t].flatten(1)
        per_scores = []
        for i, use_w in zip(ctx, windowed):
            s = q.T @ feats[bank[i][0]].flatten(1) / cfg.temperature
            if use_w and cfg.radius is not None:
                s = s.masked_fill(~window_mask(h, w, cfg.radius, cfg.shape).T, float("-inf"))
            if cfg.normalisation == "softmax_topk":
                s = s.log_softmax(1)
            per_scores.append(s)
        if cfg.scope == "joint":
            val, idx = torch.cat(per_scores, 1).topk(cfg.k, 1)
            wts = val.softmax(1) if cfg.normalisation == "topk_softmax" else val.exp()
            labels = torch.cat([bank[i][1] for i in ctx])
            soft = torch.einsum("nk,nkc->nc", wts, labels[idx])
        else:
            soft = 0
            for s, i in zip(per_scores, ctx):
                val, idx = s.topk(cfg.k, 1)
                wts = val.softmax(1) if cfg.normalisation == "topk_softmax" else val.exp()
                soft = soft + torch.einsum("nk,nkc->nc", wts, bank[i][1][idx])
            soft = soft / len(ctx)
        if preset.normalise_context_labels:  # TimeCycle: each channel - its min, / its range; stored and output so
            lo, span = soft.min(0).values, soft.max(0).values - soft.min(0).values
            soft = torch.where(span > 0, (soft - lo) / span.clamp_min(1e-12), soft)
        bank.append((t, soft))
        recent.append(len(bank) - 1)
        return soft.T.reshape(-1, h, w)

    if preset.initial_context == "fill_self":
        propagate(0)
    return [propagate(t) for t in range(1, len(frames))]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_streaming_equals_naive_all_frames_loop(name):
    # step 3 px: no two frames are shifted by a whole feature cell, so scores have no exact ties
    frames, masks = _texture_video(n_frames=7)
    preset = get_preset(name).with_overrides(n_previous=3, radius=3, size=SizePolicy("native"))
    encoder = PatchEncoder()
    first = one_hot_labels(masks[0])
    want = _naive_run(encoder, preset, frames, first)
    got = list(Propagator(encoder, preset, batch_size=2).run(frames, first))
    assert len(got) == len(want) == len(frames) - 1
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_batch_size_does_not_change_results():
    frames, masks = _texture_video(n_frames=6)
    preset = get_preset("crw").with_overrides(n_previous=2, radius=3)
    first = one_hot_labels(masks[0])
    a = list(Propagator(PatchEncoder(), preset, batch_size=1).run(frames, first))
    b = list(Propagator(PatchEncoder(), preset, batch_size=5).run(frames, first))
    assert len(a) == len(frames) - 1  # one result per frame after the first, in either batching
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_propagation_tracks_a_translating_texture():
    """Whole-cell shifts: the mask must follow exactly, except in the columns that entered the
    frame after frame 0 (content the first frame never saw gets whatever its random match says)."""
    step = 8
    frames, masks = _texture_video(n_frames=8, step=step)
    preset = get_preset("crw").with_overrides(radius=4)
    prop = Propagator(PatchEncoder(), preset)
    for t, soft in enumerate(prop.run(frames, one_hot_labels(masks[0])), start=1):
        pred = decode_label_map(soft, preset, prop.input_hw, prop.original_hw).numpy()
        seen = slice(None), slice(step * t + 8, None)  # skip new columns and one cell of blur
        inter = np.logical_and(pred[seen] == 1, masks[t][seen] == 1).sum()
        union = np.logical_or(pred[seen] == 1, masks[t][seen] == 1).sum()
        assert inter / union > 0.97, f"frame {t}: IoU {inter / union:.2f}"


def test_frames_are_pulled_lazily_and_context_stays_bounded():
    """Peak memory must not grow with video length: frames are consumed as they are propagated and
    the context never holds more than first + n_previous frames."""
    frames, masks = _texture_video(n_frames=4)
    pulled = []

    preset = get_preset("stt").with_overrides(n_previous=3, radius=3)
    prop = Propagator(PatchEncoder(), preset, batch_size=2)
    stream = prop.run(endless(frames, pulled), one_hot_labels(masks[0]))
    for n_out in range(1, 40):
        next(stream)
        assert len(pulled) <= 1 + n_out + 2  # first frame + yielded + at most one batch ahead
    assert prop.context_size == 1 + 3
    # the ring buffer owns its features: no view keeps a whole encoder batch alive
    for memory in prop._context:
        assert memory.feats.untyped_storage().nbytes() == memory.feats.numel() * memory.feats.element_size()


def test_one_hot_labels_handles_void_and_sparse_ids():
    m = np.array([[0, 1, 255], [3, 3, 0]], np.uint8)
    oh = one_hot_labels(m)
    assert oh.shape == (4, 2, 3)
    assert oh[:, 0, 2].sum() == 0  # void carries no label
    assert oh[3, 1, 0] == 1 and oh[2].sum() == 0  # id 2 absent: an empty channel, not a shift


def test_decode_uvc_style_upsamples_to_input_then_nearest_to_original():
    soft = torch.zeros(2, 4, 6)
    soft[1, :, 3:] = 1.0
    soft[0, :, :3] = 1.0
    preset = get_preset("uvc")
    out = decode_label_map(soft, preset, input_hw=(32, 48), original_hw=(30, 50))
    assert out.shape == (30, 50)
    assert out[:, :20].max() == 0 and out[:, 30:].min() == 1


@pytest.mark.parametrize("input_hw,original_hw", [((480, 832), (480, 854)), ((560, 560), (720, 1280))])
def test_uvc_decoding_is_uvcs_upsampling_by_8_at_its_sizes(input_hw, original_hw):
    """UVC's test.py / test_mask_vip.py: interpolate(scale_factor=8, bilinear) -> norm_mask ->
    argmax -> nearest resize to the frame. Our uvc decoding upsamples to the input size instead,
    which is the same map at every input size UVC's code runs at (multiples of 8: DAVIS 480 x 832,
    VIP 560 x 560)."""
    soft = torch.rand(3, input_hw[0] // 8, input_hw[1] // 8, generator=torch.Generator().manual_seed(0))
    up = F.interpolate(soft[None], scale_factor=8, mode="bilinear", align_corners=False)[0]
    index = minmax_per_channel(up).argmax(dim=0)
    want = F.interpolate(index[None, None].float(), size=original_hw, mode="nearest-exact")[0, 0].long()
    torch.testing.assert_close(decode_label_map(soft, get_preset("uvc"), input_hw, original_hw), want)


def test_minmax_per_channel_leaves_flat_channels_alone():
    x = torch.stack([torch.full((2, 2), 0.3), torch.tensor([[0.0, 1.0], [2.0, 4.0]])])
    y = minmax_per_channel(x)
    torch.testing.assert_close(y[0], x[0])
    torch.testing.assert_close(y[1], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_minmax_per_channel_rescales_negative_channels_only_when_asked():
    """UVC's norm_mask leaves a channel whose maximum is not positive alone; TimeCycle rescales it."""
    x = torch.tensor([[[-3.0, -1.0], [-2.0, -1.0]]])
    torch.testing.assert_close(minmax_per_channel(x), x)
    torch.testing.assert_close(minmax_per_channel(x, positive_only=False), torch.tensor([[[0.0, 1.0], [0.5, 1.0]]]))


@pytest.mark.parametrize(
    "policy,hw,want",
    [(SizePolicy("short_side", 480, 64), (480, 854), (480, 832)),
     (SizePolicy("short_side", 480, 64), (854, 480), (832, 480)),
     (SizePolicy("short_side", 40, 64), (48, 64), (40, 64)),  # floored to 0 before: at least one multiple
     (SizePolicy("short_side", 480), (360, 640), (480, 853)),
     (SizePolicy("square", 320), (480, 854), (320, 320)),
     (SizePolicy("native"), (480, 854), (480, 854))],
)
def test_size_policies(policy, hw, want):
    assert policy.input_size(*hw) == want


@pytest.mark.parametrize("name,want", [("timecycle", (400, 400)), ("uvc", (400, 704)), ("crw", (400, 712)),
                                       ("stt", (400, 712))])
def test_a_size_keeps_the_presets_sizing(name, want):
    """--size 400 changes the size, not the sizing: timecycle stays square (TimeCycle's README runs
    320, 400 and 480 squares; a kept aspect ratio gave 400 x 712 on DAVIS 480p, a protocol no paper
    ran), uvc still floors its long side to /64."""
    assert customised_preset(name, size=400).size.input_size(480, 854) == want


def test_labels_of_wrong_size_are_rejected():
    frames, masks = _texture_video(n_frames=3)
    prop = Propagator(PatchEncoder(), get_preset("crw"))
    with pytest.raises(ValueError, match="first-frame labels are"):
        next(prop.run(frames, one_hot_labels(masks[0][:-1])))


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="crw"):
        get_preset("nope")


def test_follow_needs_start_and_pairs_each_frame_with_its_labels():
    frames, masks = _texture_video(n_frames=5)
    prop = Propagator(PatchEncoder(), get_preset("crw").with_overrides(n_previous=2), batch_size=2)
    with pytest.raises(RuntimeError, match="before start"):
        next(prop.follow(frames[1:]))
    want = list(Propagator(PatchEncoder(), prop.preset).run(frames, one_hot_labels(masks[0])))
    prop.start(frames[0], one_hot_labels(masks[0]))
    pairs = list(prop.follow(iter(frames[1:])))
    assert [frame is f for (frame, _), f in zip(pairs, frames[1:])] == [True] * 4
    for (_, got), expected in zip(pairs, want, strict=True):
        torch.testing.assert_close(got, expected)


def test_an_empty_video_is_refused_by_every_loop():
    prop = Propagator(PatchEncoder(), get_preset("crw"))
    with pytest.raises(ValueError, match="the video has no frames"):
        next(prop.run([], torch.zeros(2, 8, 8)))
    with pytest.raises(ValueError, match="the video has no frames"):
        next(propagate_mask(prop, iter([]), np.ones((8, 8), np.uint8)))
    with pytest.raises(ValueError, match="the video has no frames"):
        next(propagate_keypoints(prop, [], np.zeros((1, 2)), codec_for("crw")))


class BatchNormNet(nn.Module):
    """A module of one's own with BatchNorm: stride 8, 8 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 8, stride=8)
        self.norm = nn.BatchNorm2d(8)

    def forward(self, rgb):
        return self.norm(self.conv(rgb))


def test_a_module_in_training_is_used_in_eval_mode_and_given_back_in_training():
    """Evaluating a model between training epochs must not leave it in eval mode (BatchNorm frozen)."""
    torch.manual_seed(0)
    net = BatchNormNet().train()
    stats = net.norm.running_mean.clone()
    g = torch.Generator().manual_seed(1)
    frames = [torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8, generator=g).numpy() for _ in range(3)]
    first = np.zeros((64, 96), np.uint8)
    first[16:40, 24:64] = 1
    propagator = Propagator(net, get_preset("crw"))
    propagator.start(frames[0], one_hot_labels(first))
    propagator.step(frames[1])
    assert net.training and torch.equal(net.norm.running_mean, stats)  # eval-mode calls: stats untouched
    with torch.no_grad():
        want = net.eval()(frames_to_tensor(frames[2:], (64, 96), "cpu"))
    net.train()
    assert torch.allclose(propagator.embed(frames[2:]), F.normalize(want, dim=1), atol=1e-6)
    assert net.training


class FailsOnDemand(nn.Module):
    """`PatchEncoder` that raises while ``fail`` is set: a module whose forward breaks on some input."""

    def __init__(self):
        super().__init__()
        self.inner = PatchEncoder()
        self.fail = False

    def forward(self, rgb):
        if self.fail:
            raise RuntimeError("broken frame")
        return self.inner(rgb)


def test_start_keeps_the_channel_ids_it_is_given_and_checks_their_count():
    """`vidcorr.masks` gives start() the object id of each channel (ids 0, 7, 200 as 3 channels);
    a count that differs from the labels' would index ids out of range frames later."""
    frames, masks = _texture_video(n_frames=3)
    prop = Propagator(PatchEncoder(), get_preset("crw").with_overrides(n_previous=2, radius=3))
    labels = one_hot_labels(masks[0])
    ids = np.arange(labels.shape[0], dtype=np.uint8) * 7
    prop.start(frames[0], labels, channel_ids=ids)
    assert prop.channel_ids is ids
    with pytest.raises(ValueError, match=f"one object id per label channel, got 1 for {labels.shape[0]} channels"):
        prop.start(frames[0], labels, channel_ids=ids[:1])
    assert prop.channel_ids is None  # a failed start holds nothing of the earlier video
    prop.start(frames[0], labels)
    assert prop.channel_ids is None


@pytest.mark.parametrize("where", ["encoder", "labels"])
def test_a_start_that_fails_leaves_no_earlier_video_to_propagate_from(where):
    """start() of a new video that raised (its first frame's encoder call, its labels) left the
    previous video's first frame and ring buffer in place, and step() then propagated the previous
    video's labels into the new video's frames without a word. It must say start() is needed."""
    frames, masks = _texture_video(n_frames=4)
    encoder = FailsOnDemand()
    prop = Propagator(encoder, get_preset("crw").with_overrides(n_previous=2, radius=3))
    prop.start(frames[0], one_hot_labels(masks[0]))
    prop.step(frames[1])
    if where == "encoder":
        encoder.fail = True
        with pytest.raises(EncoderOutputError, match="broken frame"):
            prop.start(frames[2], one_hot_labels(masks[2]))
        encoder.fail = False
    else:
        def wrong_size(feature_hw):  # labels drawn on the grid, of another size than the frame
            return torch.zeros(2, 8, 8)

        with pytest.raises(ValueError, match="first-frame labels are"):
            prop.start(frames[2], wrong_size)
    with pytest.raises(RuntimeError, match="before start"):
        prop.step(frames[3])
    assert prop.context_size == 1  # nothing of the earlier video is held
    # a start that works afterwards propagates as a fresh propagator does
    prop.start(frames[1], one_hot_labels(masks[1]))
    fresh = Propagator(PatchEncoder(), prop.preset)
    fresh.start(frames[1], one_hot_labels(masks[1]))
    torch.testing.assert_close(prop.step(frames[2]), fresh.step(frames[2]))


def test_a_mask_tracker_whose_new_video_failed_to_start_asks_for_a_mask_again():
    """MaskTracker.step(frame, mask) whose encoder call raised left the tracker 'started' on a
    propagator holding no video: the next step(frame) failed with "'NoneType' object is not
    subscriptable" (before `Propagator.start` forgot the earlier video, it silently propagated that
    video's labels). It must say a first mask is needed."""
    frames, masks = _texture_video(n_frames=4)
    encoder = FailsOnDemand()
    tracker = MaskTracker(Propagator(encoder, get_preset("crw").with_overrides(n_previous=2, radius=3)))
    tracker.step(frames[0], masks[0])
    tracker.step(frames[1])
    encoder.fail = True
    with pytest.raises(EncoderOutputError, match="broken frame"):
        tracker.step(frames[2], masks[2])
    encoder.fail = False
    with pytest.raises(NotStarted, match="first frame's mask"):
        tracker.step(frames[3])
