"""Golden values and independent references for corners of the core the other tests leave open.

Each test here was written against a hand-made mutant of the core that the rest of the suite let
through (a temperature not divided, a softmax over the wrong axis, a top-k clamp off by one, a
label downsampling mode ignored, TimeCycle's rescaling of negative channels, UVC's norm_mask rule):
the expected numbers are worked out by hand or by plain loops, not by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import PatchEncoder

from vidcorr.affinity import (
    TopKConfig,
    affinity_logits,
    dense_topk,
    locate_in_target,
    softmax_affinity,
    sparse_affinity,
    transport_sparse,
    windowed_topk,
)
from vidcorr.labels import downsample_labels, minmax_per_channel
from vidcorr.metrics.davis import boundary_f, boundary_radius
from vidcorr.presets import SizePolicy, get_preset
from vidcorr.propagate import Propagator


# --------------------------------------------------------------------------- dense affinity


def test_affinity_logits_and_softmax_divide_by_the_temperature():
    f1 = torch.tensor([[[1.0, 0.0], [2.0, 1.0]]])  # (1, C=2, N1=2): pixels (1, 2) and (0, 1)
    f2 = torch.tensor([[[3.0], [4.0]]])  # (1, 2, N2=1): pixel (3, 4)
    # dot products 11 and 4; at tau = 0.5 the logits are 22 and 8
    torch.testing.assert_close(affinity_logits(f1, f2, 0.5), torch.tensor([[[22.0], [8.0]]]))
    a = softmax_affinity(f1, f2, 0.5, "ref")  # one target pixel: a distribution over the 2 references
    p = 1.0 / (1.0 + math.exp(8.0 - 22.0))
    torch.testing.assert_close(a, torch.tensor([[[p], [1.0 - p]]]))
    p10 = 1.0 / (1.0 + math.exp(4.0 - 11.0))  # tau = 1 differs: the temperature is not optional
    assert abs(softmax_affinity(f1, f2, 1.0, "ref")[0, 0, 0].item() - p10) < 1e-6


def test_locate_in_target_takes_the_softmax_over_target_pixels():
    """Two reference pixels, a 1 x 3 target. Reference 0 scores the targets log(1), log(2), log(3):
    probabilities 1/6, 2/6, 3/6, expected x = (0 + 2 + 6) / 6 = 4/3. Reference 1 scores log(3),
    log(1), log(0.5), over its own row: 3/4.5, 1/4.5, 0.5/4.5 -> x = (1 + 1) / 4.5."""
    scores = torch.log(torch.tensor([[[1.0, 2.0, 3.0], [3.0, 1.0, 0.5]]]))  # (1, N1=2, N2=3)
    coords = locate_in_target(scores, (1, 3))
    torch.testing.assert_close(coords[0, 0], torch.tensor([4.0 / 3.0, 2.0 / 4.5]))  # x
    torch.testing.assert_close(coords[0, 1], torch.zeros(2))  # y: one row


# --------------------------------------------------------------------------- k larger than the candidates


def _flat_features(c, h, w, seed):
    """Low-contrast features: every candidate has a probability of the same order, so dropping one
    of them moves the result by about 1 / (number of candidates)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, h, w, generator=g) * 0.3


def _neighbours(y, x, h, w, radius):
    """In-frame pixels of a circular window (Euclidean distance < radius) around (y, x), by loops."""
    reach = math.ceil(radius)
    return [(y + dy) * w + (x + dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
            if dy * dy + dx * dx < radius * radius and 0 <= y + dy < h and 0 <= x + dx < w]


def test_windowed_topk_with_k_above_the_window_keeps_the_whole_window():
    """radius 1.5: a 3 x 3 window of 9 cells. k = 20 keeps all 9 (not 8), and with the softmax first
    the kept probabilities of every pixel sum to 1: nothing of its window is lost."""
    h, w = 8, 9
    q, key = _flat_features(5, h, w, 0), _flat_features(5, h, w, 1)
    got = windowed_topk(q, key, 20, radius=1.5, shape="circle", temperature=1.0, softmax_first=True, tile=4)
    assert got.scores.shape == (h * w, 9)
    torch.testing.assert_close(got.scores.exp().sum(1), torch.ones(h * w))
    for y, x in [(0, 0), (3, 4), (7, 8), (4, 0)]:
        j = y * w + x
        kept = set(got.index[j][got.scores[j].isfinite()].tolist())
        assert kept == set(_neighbours(y, x, h, w, 1.5))


@pytest.mark.parametrize("normalisation", ["topk_softmax", "softmax_topk"])
@pytest.mark.parametrize("radius", [None, 1.5])  # whole frame (dense_topk); window (tiled: (4 + 2)^2 < 72)
def test_sparse_affinity_with_k_above_the_candidates_is_the_full_softmax(normalisation, radius):
    """k = 500 exceeds both the frame (72 cells) and the window (9): every candidate is kept, so the
    transported labels are the plain softmax-weighted mean over the whole frame / window, computed
    here with loops."""
    h, w, tau = 8, 9, 1.0
    q, key = _flat_features(5, h, w, 2), _flat_features(5, h, w, 3)
    labels = torch.rand(h * w, 2, generator=torch.Generator().manual_seed(4))
    cfg = TopKConfig(k=500, temperature=tau, scope="joint", normalisation=normalisation, radius=radius,
                     shape="circle", tile=4, chunk=7)
    got = transport_sparse(labels, sparse_affinity(q, [key], [True], cfg))
    qf, kf = q.flatten(1), key.flatten(1)
    want = torch.empty(h * w, 2)
    for y in range(h):
        for x in range(w):
            j = y * w + x
            cand = list(range(h * w)) if radius is None else _neighbours(y, x, h, w, radius)
            logits = torch.stack([qf[:, j] @ kf[:, i] for i in cand]) / tau
            want[j] = logits.softmax(0) @ labels[cand]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_dense_topk_with_k_above_the_frame_keeps_every_pixel():
    q, key = _flat_features(4, 3, 5, 5).flatten(1), _flat_features(4, 3, 5, 6).flatten(1)
    got = dense_topk(q, key, 99, temperature=1.0, softmax_first=True, chunk=4)
    assert got.scores.shape == (15, 15)
    assert all(sorted(row) == list(range(15)) for row in got.index.tolist())
    torch.testing.assert_close(got.scores.exp().sum(1), torch.ones(15))


# --------------------------------------------------------------------------- label codecs


def test_downsample_labels_nearest_samples_pixel_centres_and_bilinear_averages():
    """4 x 4 -> 2 x 2. PIL/scipy nearest takes the pixel whose centre is nearest the output cell's
    centre, source (2i + 0.5) -> pixels 1 and 3 (not 0 and 2); cv2 INTER_LINEAR at a factor of 2
    averages each 2 x 2 block."""
    labels = torch.arange(16.0).view(1, 4, 4)
    torch.testing.assert_close(downsample_labels(labels, (2, 2), "nearest"),
                               torch.tensor([[[5.0, 7.0], [13.0, 15.0]]]))
    torch.testing.assert_close(downsample_labels(labels, (2, 2), "bilinear"),
                               torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))


def test_minmax_per_channel_leaves_a_channel_whose_maximum_is_zero_alone():
    """UVC's norm_mask rescales a channel only if ``mask_cnt.max() > 0``: a maximum of exactly 0
    (a channel of non-positive values) stays as it is, unless every channel is asked for."""
    x = torch.tensor([[[-2.0, 0.0], [-1.0, 0.0]]])
    torch.testing.assert_close(minmax_per_channel(x), x)
    torch.testing.assert_close(minmax_per_channel(x, positive_only=False), torch.tensor([[[0.0, 1.0], [0.5, 1.0]]]))


# --------------------------------------------------------------------------- the propagator


def _blocky_frame(h, w, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("mode,want", [
    ("nearest", [[68.0, 76.0], [196.0, 204.0]]),  # pixels (4, 4), (4, 12), ... : the 8 x 8 cells' centres
    ("bilinear", [[59.5, 67.5], [187.5, 195.5]]),  # source (3.5, 3.5), ...: means of pixels 3 and 4
])
def test_the_first_frames_labels_reach_the_feature_grid_the_way_the_preset_says(mode, want):
    """A 16 x 16 frame, a stride-8 encoder: a 2 x 2 grid. Propagated into itself with k = 1 and the
    first frame as the only context, every cell takes exactly its own first-frame label, i.e. the
    labels y * 16 + x downsampled by the preset's label_downsample."""
    frame = _blocky_frame(16, 16, 0)
    preset = get_preset("crw").with_overrides(k=1, radius=None, n_previous=0, size=SizePolicy("native"),
                                              label_downsample=mode)
    labels = torch.arange(256.0).view(1, 16, 16)
    prop = Propagator(PatchEncoder(), preset)
    prop.start(frame, labels)
    torch.testing.assert_close(prop.step(frame), torch.tensor([want]))


def test_timecycle_rescales_negative_label_channels_of_each_propagated_frame():
    """TimeCycle min-max normalises every channel of each propagated frame, a negative one too
    (its test_davis.py; UVC's positive-only rule is for decoding): every channel of the output spans
    exactly [0, 1] whatever the sign of the first frame's labels."""
    frames = [_blocky_frame(32, 48, s) for s in range(4)]
    mask = np.zeros((32, 48), bool)
    mask[8:24, 8:32] = True
    labels = torch.from_numpy(np.stack([-1.0 - mask, mask * 1.0])).float()  # channel 0 in [-2, -1]
    preset = get_preset("timecycle").with_overrides(n_previous=2, size=SizePolicy("native"))
    outputs = list(Propagator(PatchEncoder(), preset).run(frames, labels))
    assert len(outputs) == 3
    for soft in outputs:
        flat = soft.flatten(1)
        torch.testing.assert_close(flat.min(1).values, torch.zeros(2))
        torch.testing.assert_close(flat.max(1).values, torch.ones(2))


# --------------------------------------------------------------------------- DAVIS F


def test_the_boundary_tolerance_is_rounded_up_not_to_nearest():
    """Official: ceil(0.008 * hypot(H, W)). At 100 x 100 that is ceil(1.13) = 2 px, so a square
    shifted by 2 px still has every boundary pixel matched (F = 1) and one shifted by 3 does not."""
    assert boundary_radius(100, 100) == 2
    assert boundary_radius(240, 427) == 4  # ceil(3.92)
    gt = np.zeros((100, 100), bool)
    gt[30:60, 30:60] = True
    assert boundary_f(gt, np.roll(gt, 2, axis=1)) == 1.0
    assert boundary_f(gt, np.roll(gt, 3, axis=1)) < 1.0
