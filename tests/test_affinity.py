"""The affinity core against a naive dense reference, plus hand-made cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from vidcorr.affinity import (
    TopKConfig,
    coordinate_grid,
    dense_topk,
    locate_in_target,
    region_from_coordinates,
    softmax_affinity,
    sparse_affinity,
    topk_log_softmax_,
    transport,
    transport_coordinates,
    transport_sparse,
    window_mask,
    window_offsets,
    windowed_topk,
    windowed_topk_frames,
)


def _naive_propagate(query, keys, windowed, labels, cfg: TopKConfig):
    """Dense reference: full N2 x N1 score matrices, mask, top-k, normalise, transport.

    query: (C, h, w), keys: list of (C, h, w), labels: list of (K, h, w) -> (N2, K).
    """
    per_frame_scores, per_frame_labels = [], []
    for key, use_window, lab in zip(keys, windowed, labels):
        s = _naive_logits(query, key, use_window, cfg)
        if cfg.normalisation == "softmax_topk":
            s = s.log_softmax(dim=1)
        per_frame_scores.append(s)
        per_frame_labels.append(lab.reshape(lab.shape[0], -1).T)  # (N1, K)
    if cfg.scope == "joint":
        s = torch.cat(per_frame_scores, dim=1)
        lab = torch.cat(per_frame_labels, dim=0)
        val, idx = s.topk(cfg.k, dim=1)
        wts = val.softmax(1) if cfg.normalisation == "topk_softmax" else val.exp()
        return torch.einsum("nk,nkc->nc", wts, lab[idx])
    out = 0
    for s, lab in zip(per_frame_scores, per_frame_labels):
        val, idx = s.topk(cfg.k, dim=1)
        wts = val.softmax(1) if cfg.normalisation == "topk_softmax" else val.exp()
        out = out + torch.einsum("nk,nkc->nc", wts, lab[idx])
    return out / len(keys)


def _naive_logits(query, key, use_window, cfg: TopKConfig):
    """(N2, N1) scores f1.f2 / tau of one context frame, -inf outside the window where it applies."""
    C, h, w = query.shape
    s = (query.reshape(C, -1).T @ key.reshape(C, -1)) / cfg.temperature
    if use_window and cfg.radius is not None:
        s = s.masked_fill(~window_mask(h, w, cfg.radius, cfg.shape).T, float("-inf"))
    return s


@pytest.fixture
def frames():
    g = torch.Generator().manual_seed(0)
    C, h, w, n = 6, 13, 19, 4
    keys = [torch.randn(C, h, w, generator=g) for _ in range(n)]
    query = torch.randn(C, h, w, generator=g)
    labels = [torch.rand(3, h, w, generator=g) for _ in range(n)]
    return query, keys, labels


def test_softmax_affinity_normalises_the_requested_axis():
    f1, f2 = torch.randn(2, 5, 7), torch.randn(2, 5, 9)
    a = softmax_affinity(f1, f2, 0.5, "ref")
    torch.testing.assert_close(a.sum(1), torch.ones(2, 9))
    b = softmax_affinity(f1, f2, 0.5, "target")
    torch.testing.assert_close(b.sum(2), torch.ones(2, 7))


def test_identity_affinity_transports_values_and_coordinates_unchanged():
    h, w = 4, 5
    f = torch.eye(h * w).unsqueeze(0) * 50.0  # orthogonal, very confident features
    aff = softmax_affinity(f, f)
    values = torch.randn(1, 3, h * w)
    torch.testing.assert_close(transport(values, aff), values, atol=1e-5, rtol=0)
    coords = transport_coordinates(aff, (h, w))
    torch.testing.assert_close(coords[0], coordinate_grid(h, w), atol=1e-5, rtol=0)


def test_locate_in_target_follows_a_translation():
    """Reference = target shifted by (dy, dx) = (1, 2): every pixel is found 2 right and 1 down."""
    h, w = 6, 8
    onehot = torch.eye(h * w).view(h * w, h, w) * 40.0
    target = onehot
    reference = torch.roll(onehot, shifts=(-1, -2), dims=(1, 2))  # ref pixel p = target pixel p+(1,2)
    scores = reference.flatten(1).T @ target.flatten(1)  # (N1, N2)
    coords = locate_in_target(scores.unsqueeze(0), (h, w))[0].view(2, h, w)
    x, y = coordinate_grid(h, w).view(2, h, w)
    inner = (slice(0, h - 1), slice(0, w - 2))  # away from the wrap-around of torch.roll
    torch.testing.assert_close(coords[0][inner], x[inner] + 2, atol=1e-4, rtol=0)
    torch.testing.assert_close(coords[1][inner], y[inner] + 1, atol=1e-4, rtol=0)


def test_coordinates_of_a_300_cell_map_are_exact_under_bf16_autocast_and_for_bf16_input():
    """bfloat16 holds 8 significant bits: 257 rounds to 256. Under autocast (--bf16 training, a GPU
    propagator's) the coordinate transport's matmul ran in bf16, and a bf16 affinity gave a bf16 grid,
    so cells beyond 256 came back one off. A permutation affinity (exact 0 / 1 in any dtype) must carry
    every cell's x exactly: target pixel j came from reference pixel perm[j]."""
    n = 300
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    aff = torch.zeros(1, n, n)
    aff[0, perm, torch.arange(n)] = 1.0  # column j is one-hot at reference pixel perm[j]
    logits = torch.full((1, n, n), float("-inf"))
    logits[0, torch.arange(n), perm] = 0.0  # reference pixel i lies at target pixel perm[i]
    want_x = perm.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        came_from = transport_coordinates(aff, (1, n))
        goes_to = locate_in_target(logits, (1, n))
    for got in (came_from, goes_to, transport_coordinates(aff.bfloat16(), (1, n)),
                locate_in_target(logits.bfloat16(), (1, n))):
        assert got.dtype == torch.float32
        assert torch.equal(got[0, 0], want_x) and torch.equal(got[0, 1], torch.zeros(n))
    assert transport_coordinates(aff.double(), (1, n)).dtype == torch.float64


def test_region_from_coordinates_recovers_centre_and_half_size_of_a_uniform_rectangle():
    """UVC Eq. 4-5: points spread uniformly over [cx-w, cx+w] x [cy-h, cy+h] give half-size (w, h)."""
    xs = torch.linspace(10 - 3, 10 + 3, 601)
    ys = torch.linspace(5 - 1.5, 5 + 1.5, 301)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)]).unsqueeze(0)
    centre, half = region_from_coordinates(coords)
    torch.testing.assert_close(centre[0], torch.tensor([10.0, 5.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(half[0], torch.tensor([3.0, 1.5]), atol=2e-2, rtol=0)


@pytest.mark.parametrize(
    "radius,shape,count",
    [(12, "circle", sum(dy * dy + dx * dx < 144 for dy in range(-12, 13) for dx in range(-12, 13))),
     (12, "square", 625), (1, "circle", 1), (1.5, "circle", 9), (0, "square", 1)],
)
def test_window_offsets_counts(radius, shape, count):
    assert window_offsets(radius, shape).shape == (count, 2)


def test_window_offsets_rejects_nonsense():
    with pytest.raises(ValueError):
        window_offsets(0, "circle")
    with pytest.raises(ValueError):
        window_offsets(3, "hexagon")


@pytest.mark.parametrize("shape,radius", [("circle", 3), ("circle", 4.5), ("square", 2)])
@pytest.mark.parametrize("tile", [4, 8])
@pytest.mark.parametrize("softmax_first", [False, True])
def test_windowed_topk_equals_dense_masked_topk(frames, shape, radius, tile, softmax_first):
    query, keys, _ = frames
    C, h, w = query.shape
    k = 5
    got = windowed_topk(query, keys[0], k, radius=radius, shape=shape, temperature=0.3,
                        softmax_first=softmax_first, tile=tile)
    s = (query.reshape(C, -1).T @ keys[0].reshape(C, -1)) / 0.3
    s = s.masked_fill(~window_mask(h, w, radius, shape).T, float("-inf"))
    if softmax_first:
        s = s.log_softmax(1)
    want_val, want_idx = s.topk(k, dim=1)
    torch.testing.assert_close(got.scores, want_val, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.index, want_idx)


def test_windowed_topk_bands_do_not_change_the_result(frames):
    query, keys, _ = frames
    kw = dict(radius=3, shape="circle", temperature=0.1, softmax_first=False, tile=4)
    one_band = windowed_topk(query, keys[1], 4, **kw)
    many_bands = windowed_topk(query, keys[1], 4, max_unfold_elements=1, **kw)
    assert torch.equal(one_band.index, many_bands.index)
    torch.testing.assert_close(one_band.scores, many_bands.scores)


@pytest.mark.parametrize("softmax_first", [False, True])
def test_windowed_topk_frames_batching_does_not_change_the_result(frames, softmax_first):
    """Several context frames per matmul (the GPU's way), one frame in row bands (the CPU's) and
    one call per frame all give the same candidates, bit for bit."""
    query, keys, _ = frames
    C, h, w = query.shape
    kw = dict(radius=3, shape="circle", temperature=0.1, softmax_first=softmax_first, tile=4)
    want = [windowed_topk(query, key, 4, **kw) for key in keys]
    unfold_one_frame = C * (4 + 2 * 3) ** 2 * math.ceil(w / 4) * math.ceil(h / 4)
    for budget in (1, unfold_one_frame, 2 * unfold_one_frame, 10**9):  # row bands, 1, 2, all frames
        got = windowed_topk_frames(query, keys, 4, max_unfold_elements=budget, **kw)
        assert len(got) == len(keys)
        for a, b in zip(got, want):
            assert torch.equal(a.index, b.index) and torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("budget", [1, 10**9])  # row bands of one frame; all frames in one matmul
def test_windowed_topk_frames_key_masks_equal_dense_masked_topk(frames, budget):
    """Reference cells outside a key mask are never selected, in any batching."""
    query, keys, _ = frames
    C, h, w = query.shape
    g = torch.Generator().manual_seed(1)
    masks = [torch.rand(h, w, generator=g) < 0.4 for _ in keys]
    cfg = TopKConfig(k=5, temperature=0.1, radius=3, shape="square")
    got = windowed_topk_frames(query, keys, cfg.k, radius=3, shape="square", temperature=0.1,
                               softmax_first=False, tile=4, key_masks=masks, max_unfold_elements=budget)
    for key, mask, cand in zip(keys, masks, got):
        logits = _naive_logits(query, key, True, cfg).masked_fill(~mask.flatten()[None], float("-inf"))
        want, _ = logits.topk(cfg.k, dim=1)
        torch.testing.assert_close(cand.scores, want)
        finite = cand.scores.isfinite()
        assert mask.flatten()[cand.index[finite]].all()


def test_dense_topk_chunks_do_not_change_the_result(frames):
    query, keys, _ = frames
    a = dense_topk(query.flatten(1), keys[0].flatten(1), 7, temperature=0.2, softmax_first=True, chunk=5)
    b = dense_topk(query.flatten(1), keys[0].flatten(1), 7, temperature=0.2, softmax_first=True, chunk=10_000)
    assert torch.equal(a.index, b.index)
    torch.testing.assert_close(a.scores, b.scores)


@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: raw features at temperature 1 (uvc)
def test_topk_log_softmax_equals_log_softmax_then_topk(scale):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 37, 211, generator=g) * scale
    logits[0, :, 50:90] = float("-inf")  # masked reference cells (windows, boxes)
    want_scores, want_index = logits.log_softmax(dim=-1).topk(9, dim=-1)
    want_lse = logits.logsumexp(dim=-1)
    scores, index, lse = topk_log_softmax_(logits.clone(), 9)
    assert torch.equal(index, want_index)
    torch.testing.assert_close(scores, want_scores, rtol=1e-6, atol=1e-5 * scale)
    torch.testing.assert_close(lse, want_lse, rtol=1e-6, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "scope,normalisation,radius,windowed",
    [
        ("joint", "topk_softmax", 4, [False, True, True, True]),   # crw: first frame unrestricted
        ("joint", "topk_softmax", 3, [True, True, True, True]),    # stt (square below)
        ("per_frame", "softmax_topk", None, [False] * 4),          # uvc / timecycle
        ("per_frame", "topk_softmax", 3, [False, True, True, True]),
        ("joint", "softmax_topk", 3, [True, False, True, False]),
    ],
)
@pytest.mark.parametrize("shape", ["circle", "square"])
@pytest.mark.parametrize("tile", [4, 12])  # 12: window as large as the frame -> masked dense path
def test_sparse_affinity_matches_naive_reference(frames, scope, normalisation, radius, windowed, shape, tile):
    query, keys, labels = frames
    cfg = TopKConfig(k=6, temperature=0.2, scope=scope, normalisation=normalisation,
                     radius=radius, shape=shape, tile=tile, chunk=17)
    aff = sparse_affinity(query, keys, windowed, cfg)
    bank = torch.cat([lab.flatten(1).T for lab in labels])  # (F*N1, K)
    got = transport_sparse(bank, aff)
    want = _naive_propagate(query, keys, windowed, labels, cfg)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    if normalisation == "softmax_topk":  # each frame's log-sum-exp, for UVC-track's restricted top-k
        lse = [_naive_logits(query, key, use, cfg).logsumexp(dim=1) for key, use in zip(keys, windowed)]
        torch.testing.assert_close(aff.log_normalisers, torch.stack(lse, dim=1), atol=1e-5, rtol=1e-5)
    else:
        assert aff.log_normalisers is None


def test_sparse_affinity_weights_sum_to_one_for_topk_softmax(frames):
    query, keys, _ = frames
    for scope in ("joint", "per_frame"):
        cfg = TopKConfig(k=5, temperature=0.1, scope=scope, radius=3)
        aff = sparse_affinity(query, keys, [False, True, True, True], cfg)
        torch.testing.assert_close(aff.weights.sum(1), torch.ones(query.shape[1] * query.shape[2]))


def test_transport_sparse_copies_labels_through_a_perfect_match():
    """Target = reference: with confident features, every pixel takes its own label."""
    h, w = 7, 9
    feats = torch.eye(h * w).view(h * w, h, w) * 30.0
    labels = torch.rand(2, h * w)
    cfg = TopKConfig(k=3, temperature=1.0, radius=2, shape="square", tile=4)
    aff = sparse_affinity(feats, [feats], [True], cfg)
    torch.testing.assert_close(transport_sparse(labels.T, aff), labels.T, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scope", ["joint", "per_frame"])
def test_transport_sparse_refuses_a_bank_of_another_frame_count(scope):
    """Labels of one context frame more than the affinity was built from were read as their first
    rows, without a word; one frame fewer gave an index error from inside the gather."""
    h, w = 3, 4  # N1 = 12 key pixels a frame, two context frames: 24 rows
    feats = torch.eye(h * w).view(h * w, h, w) * 30.0
    aff = sparse_affinity(feats, [feats, feats.clone()], [False, False], TopKConfig(k=2, temperature=1.0, scope=scope))
    assert aff.keys == 2 * h * w
    for frames in (3, 1):
        with pytest.raises(ValueError, match=rf"transport_sparse bank rows: expected 24 \(F \* N1.*got {frames * 12}"):
            transport_sparse(torch.rand(frames * h * w, 2), aff)
    labels = torch.rand(h * w, 2)  # both frames identical: each target pixel takes its own label
    torch.testing.assert_close(transport_sparse(torch.cat([labels, labels]), aff), labels, atol=1e-5, rtol=0)
