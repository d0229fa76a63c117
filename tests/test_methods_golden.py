"""Golden values and naive references for CycleTime's and STT's training objectives (METHODS.md
§2.4-2.5, §4.2-4.4) and STT's spatial stage (MoCo v2), written after a mutation audit of
``cycletime.py``, ``stt.py``, ``stt_ops.py`` and ``moco.py``: each test here fails on a plausible
one-line change (a default, a batch layout, a boundary, a mask, a reduction) that the rest of the
suite let through. References are loops over the formulas, not the library's tensor code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidcorr.methods import stt_ops
from vidcorr.methods.cycletime import CycleTime, CycleTimeConfig, recipe as cycletime_recipe
from vidcorr.methods.cycletime_ops import soft_inlier_score
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.methods.stt import STT, STTConfig
from vidcorr.patches import rigid_theta

# --------------------------------------------------------------------------- CycleTime


def test_cycletime_defaults_are_the_official_run() -> None:
    """METHODS.md §2.3-2.5: 240 px frames, videoLen 4, T = 512^-0.5 on 512-d features, the 20 x 20
    grid loss, feature warps at 227/210, and L = 0.2 lambda cycle + lambda skip - inlier, lambda 0.1."""
    cfg = CycleTimeConfig()
    assert (cfg.frame_size, cfg.patch_size, cfg.clip_length, cfg.head_channels) == (240, 80, 4, 512)
    assert cfg.tau == pytest.approx(512**-0.5)
    assert (cfg.cycle_weight, cfg.skip_weight, cfg.inlier_weight) == pytest.approx((0.2 * 0.1, 0.1, 1.0))
    assert (cfg.grid_points, cfg.translation_scale) == (20, pytest.approx(227 / 210))


def test_cycletime_config_boundaries() -> None:
    """The smallest frame is 168 px (7 patch cells for two 4 x 4 convolutions) and a clip has at
    least one frame."""
    CycleTimeConfig(frame_size=168, clip_length=1)
    with pytest.raises(ValueError, match="at least 168"):
        CycleTimeConfig(frame_size=144)
    with pytest.raises(ValueError, match="clip_length"):
        CycleTimeConfig(clip_length=0)


def _naive_grid_loss(theta: torch.Tensor, theta_gt: torch.Tensor, points: int) -> float:
    """TransformedGridLoss of one pair (2, 3): mean over the points x points grid on [-1, 1]^2 of
    the squared distance between the two images of each point."""
    axis = [-1 + 2 * i / (points - 1) for i in range(points)]
    total = 0.0
    for y in axis:
        for x in axis:
            a = theta @ torch.tensor([x, y, 1.0], dtype=theta.dtype)
            b = theta_gt @ torch.tensor([x, y, 1.0], dtype=theta.dtype)
            total += float(((a - b) ** 2).sum())
    return total / points**2


def test_cycletime_losses_match_a_per_sample_loop_over_frames_and_cycle_lengths() -> None:
    """Two samples with different truths, three frames: every term computed sample by sample, as
    METHODS.md §2.4 spells it, with the model's tracking step (affinity -> regressor -> crop):

    * skip: patch -> frame t (theta_2, crop) -> target (theta_3), grid loss of theta_3 vs theta;
    * inlier: soft inlier count of the patch -> frame t affinity under theta_2;
    * cycle c = 1..L: back through frames L-1 .. L-c, forward through L-c+1 .. L-1, into the target;
      ``cycle`` averages the L lengths, ``cycle_longest`` is c = L alone;
    * loss = 0.02 cycle + 0.1 skip - inlier.

    The model's feature map is the identity (the "images" are feature maps), so the batch layout
    (sample-major, each sample's frames together) and the config's grid points and translation
    scale are what is checked."""
    torch.manual_seed(0)
    cfg = cycletime_recipe("cycletime", arch="resnet18", frame_size=168, clip_length=3, grid_points=5,
                           translation_scale=1.0)
    model = CycleTime(cfg).eval().double()  # float64: six chained tracking steps amplify rounding
    model._embed = lambda x, detach_backbone: x
    model._check = lambda batch: None
    with torch.no_grad():  # an untrained regressor returns nearly one transform whatever it sees
        model.regressor.linear.weight.mul_(30)
    g = torch.Generator().manual_seed(1)
    b, length, c = 2, 3, 16
    batch = {"clip": torch.randn(b, length, c, 21, 21, generator=g), "target": torch.randn(b, c, 21, 21, generator=g),
             "patch": torch.randn(b, c, 7, 7, generator=g),
             "theta": rigid_theta(torch.tensor([[0.3, -0.2, 0.5], [-0.4, 0.1, -0.3]]))}
    batch = {k: v.double() for k, v in batch.items()}
    with torch.no_grad():
        out = model(batch)
        skips, inliers, cycles = [], [], [[] for _ in range(length)]
        for s in range(b):
            frames = batch["clip"][s : s + 1, :]  # (1, L, C, H, W)
            target = batch["target"][s : s + 1]
            patch_n = F.normalize(batch["patch"][s : s + 1], dim=1)
            truth = batch["theta"][s]

            def step(query: torch.Tensor, features: torch.Tensor):
                return model._track(query, F.normalize(features, dim=1), features)

            for t in range(length):
                affinity, theta_2, crop = step(patch_n, frames[:, t])
                _, theta_3, _ = step(crop, target)
                skips.append(_naive_grid_loss(theta_3[0], truth, 5))
                inliers.append(float(_inlier(affinity, theta_2)))
            for cycle in range(1, length + 1):
                query = patch_n
                path = [*range(length - 1, length - 1 - cycle, -1), *range(length - cycle + 1, length)]
                for t in path:
                    query = step(query, frames[:, t])[2]
                theta_end = step(query, target)[1]
                cycles[cycle - 1].append(_naive_grid_loss(theta_end[0], truth, 5))
    per_length = [sum(v) / b for v in cycles]
    skip, inlier, cycle = sum(skips) / len(skips), sum(inliers) / len(inliers), sum(per_length) / length
    assert len(set(round(v, 6) for v in per_length)) == length  # the lengths' losses differ
    assert out["skip"].item() == pytest.approx(skip, rel=1e-6)
    assert out["inlier"].item() == pytest.approx(inlier, rel=1e-6)
    assert out["cycle"].item() == pytest.approx(cycle, rel=1e-6)
    assert out["cycle_longest"].item() == pytest.approx(per_length[-1], rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.02 * cycle + 0.1 * skip - inlier, rel=1e-6, abs=1e-9)


def _inlier(affinity: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The soft inlier count of one patch -> frame affinity (1, H*W, h, w), 21 x 21 frame cells,
    translation scale 1 (the official warped identity mask, as in test_cycletime.py)."""
    return soft_inlier_score(affinity, theta, (21, 21), 1.0)[0]


# --------------------------------------------------------------------------- STT


def test_stt_defaults_are_the_release() -> None:
    """METHODS.md §4.3-4.4: 256 px, windows of 12 and 6 cells, smooth-L1 on values x 20, weights
    1000 / 50, T = 0.7 with the release's per-column threshold over a radius-6 cost volume, target
    rows at 1/4, the teacher at temperature 0.07 on un-normalised features."""
    cfg = STTConfig()
    assert (cfg.frame_size, cfg.radius, cfg.rec_scale) == (256, (12, 6), 20.0)
    assert (cfg.local_weight, cfg.global_weight) == (1000.0, 50.0)
    assert (cfg.uncertain_fraction, cfg.uncertain_threshold, cfg.uncertainty_radius) == (0.7, "release", 6)
    assert (cfg.target_mass, cfg.teacher_temperature, cfg.teacher_normalise) == ("release", 0.07, False)
    assert cfg.init_from_teacher
    STTConfig(frame_size=64)
    with pytest.raises(ValueError, match="at least 64"):
        STTConfig(frame_size=32)


def _record_local_correlations(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    local_correlation = stt_ops.local_correlation

    def record(*args):
        seen.append(local_correlation(*args))
        return seen[-1]

    monkeypatch.setattr(stt_ops, "local_correlation", record)
    return seen


def _pool_both_axes(corr: torch.Tensor, side: int) -> torch.Tensor:
    """(side^2, side^2) -> (side^2/4, side^2/4): the mean of each 2 x 2 target block x 2 x 2
    reference block (written as a reshape, not the library's avg_pool2d)."""
    half = side // 2
    blocks = corr.reshape(half, 2, half, 2, half, 2, half, 2)  # ty, dy, tx, dx, ry, ey, rx, ex
    return blocks.mean(dim=(1, 3, 5, 7)).reshape(half * half, half * half)


@pytest.mark.parametrize("mass", ["release", "normalised"])
def test_stt_local_distillation_without_uncertainty_is_the_plain_mse_to_the_pooled_stride4_map(monkeypatch,
                                                                                                mass: str) -> None:
    """uncertain_fraction None trains every target row: local = mean over all (target, reference)
    pairs of (c_1 - P)^2, P = c_0 2x2-averaged over both axes (rows summing to 1/4 as released),
    x 4 for target_mass "normalised". The windows are squares of 12 (stride 4, 16 x 16 cells) and
    6 cells (stride 8, 8 x 8): the correlations are 0 outside them."""
    seen = _record_local_correlations(monkeypatch)
    torch.manual_seed(0)
    model = STT(STTConfig(arch="resnet18", frame_size=64, uncertain_fraction=None, target_mass=mass)).eval()
    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(1, 3, 64, 64, generator=g), "target": torch.rand(1, 3, 64, 64, generator=g)}
    with torch.no_grad():
        losses = model(batch)
    c0, c1 = seen[0][0], seen[1][0]
    for corr, side, radius in ((c0, 16, 12), (c1, 8, 6)):
        assert corr.shape == (side * side, side * side)
        for i in range(side * side):
            row = corr[i].view(side, side)
            ty, tx = divmod(i, side)
            outside = [(y, x) for y in range(side) for x in range(side) if max(abs(y - ty), abs(x - tx)) > radius]
            assert all(row[y, x] == 0 for y, x in outside)
        assert torch.allclose(corr.sum(dim=1), torch.ones(side * side))
    pooled = _pool_both_axes(c0, 16) * (4 if mass == "normalised" else 1)
    assert pooled.sum(dim=1).mean().item() == pytest.approx(1.0 if mass == "normalised" else 0.25, rel=1e-5)
    want = ((c1 - pooled) ** 2).mean().item()
    assert losses["local"].item() == pytest.approx(want, rel=1e-5)


def test_stt_release_threshold_keeps_only_values_strictly_above_the_column_bar(monkeypatch) -> None:
    """METHODS.md §4.4's quirk, with ties: the map of e sorted along x, row int(w T) - 1 gives
    column x's bar (its x-th largest value); a position is kept when e exceeds its bar. Here that
    row is already descending, so every one of its own positions equals its bar and is dropped.
    e is set through a two-displacement cost volume (a, 0): e = -log sigmoid(a) - log sigmoid(-a),
    increasing in |a|."""
    h = w = 4
    a = torch.tensor([[0.5, 3.0, 1.0, 2.5],
                      [4.0, 3.5, 2.0, 0.2],  # row int(4 * 0.5) - 1 = 1, descending: the bars 4, 3.5, 2, 0.2
                      [4.5, 1.5, 2.2, 0.1],
                      [3.8, 3.7, 1.9, 0.3]])
    cost = torch.stack([a.flatten(), torch.zeros(h * w)])[None]  # (1, 2, N)
    monkeypatch.setattr(stt_ops, "displacement_cost", lambda raw, grid, radius: cost)

    def entropy(v: float) -> float:
        p = 1 / (1 + math.exp(-v))
        return -math.log(p) - math.log(1 - p)

    e = [[entropy(float(a[y, x])) for x in range(w)] for y in range(h)]
    bars = sorted(e[1], reverse=True)
    want = [[float(e[y][x] > bars[x]) for x in range(w)] for y in range(h)]
    assert want[1] == [0.0] * 4 and want[2] == [1.0, 0.0, 1.0, 0.0]
    got = stt_ops.uncertainty_weights(torch.zeros(1, h * w, h * w), (h, w), 1, 0.5, "release")
    assert got.view(h, w).tolist() == want


# --------------------------------------------------------------------------- MoCo


def test_moco_defaults_are_moco_v2() -> None:
    """MoCo v2 (METHODS.md §4.2): 128-d embeddings, 65536 negatives, key momentum 0.999, T 0.2;
    momentum 1 would freeze the key encoder and is refused."""
    cfg = MoCoConfig()
    assert (cfg.dim, cfg.queue_size, cfg.momentum, cfg.temperature) == (128, 65536, 0.999, 0.2)
    with pytest.raises(ValueError, match="momentum"):
        MoCoConfig(momentum=1.0)


def _moco(**overrides) -> MoCo:
    torch.manual_seed(0)
    return MoCo(MoCoConfig(arch="resnet18", dim=8, **{"queue_size": 16, "key_splits": 1, **overrides}))


def test_moco_queue_starts_as_unit_keys() -> None:
    """The initial negatives are random unit vectors, one per queue column (dim, queue_size)."""
    model = _moco()
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(16))
    assert model.queue.std(dim=1).min() > 0  # not one vector repeated


def test_moco_infonce_golden_value_and_accuracy_with_chosen_keys() -> None:
    """InfoNCE with l2-normalised queries q = normalise(MLP(mean-pooled layer4)): with keys +q for
    three samples and -q for the fourth and an all-zero queue of K, the logits are (+-1 / 0.2, 0 x K):
    loss = mean log(1 + K exp(-s / 0.2)), s = +-1, and the positive wins for 3 of 4 (accuracy 0.75)."""
    model = _moco().eval()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 3, 64, 64, generator=g)
    with torch.no_grad():
        pooled = model.encoder(images).mean(dim=(2, 3))
        q = F.normalize(model.projector(pooled), dim=1)
        model.queue.zero_()
    signs = torch.tensor([1.0, 1.0, 1.0, -1.0])
    model._keys = lambda views: q * signs[:, None]
    with torch.no_grad():
        out = model({"query": images, "key": images})
    want = sum(math.log(1 + 16 * math.exp(-s / 0.2)) for s in signs.tolist()) / 4
    assert out["loss"].item() == pytest.approx(want, rel=1e-4)
    assert out["accuracy"].item() == pytest.approx(0.75)


def test_moco_evaluation_leaves_the_key_encoder_where_it_was() -> None:
    """Only a training step moves the key encoder towards the query encoder."""
    model = _moco()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.1)
    before = [p.clone() for p in model.key_encoder.parameters()]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.eval()({"query": torch.rand(2, 3, 64, 64, generator=g), "key": torch.rand(2, 3, 64, 64, generator=g)})
    assert all(torch.equal(a, b) for a, b in zip(before, model.key_encoder.parameters(), strict=True))


def test_moco_a_batch_as_large_as_the_queue_replaces_it_whole() -> None:
    """queue_size keys fit the queue exactly: all of it is this batch's keys, written from the
    pointer on and wrapping around, and the pointer comes back to where it was; one more is refused."""
    model = _moco(queue_size=4)
    keys = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(4)), dim=1)
    model.queue_pointer.fill_(1)
    model._enqueue(keys)
    assert int(model.queue_pointer) == 1
    torch.testing.assert_close(model.queue[:, [1, 2, 3, 0]], keys.T)
    with pytest.raises(ValueError, match="does not fit"):
        model._enqueue(torch.zeros(5, 8))


def test_moco_initialised_copies_the_loaded_encoder_into_the_key_encoder() -> None:
    """After ``--init`` weights are loaded into the query encoder, the key encoder starts as its copy."""
    model = _moco()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.5)
    model.initialised()
    for q, k in zip(model.encoder.state_dict().values(), model.key_encoder.state_dict().values(), strict=True):
        assert torch.equal(q, k)


@pytest.mark.parametrize("field, value, expected", [
    ("arch", "resnet34", "'resnet18' or 'resnet50'"), ("dim", 0, "a positive integer"),
    ("queue_size", -4, "a positive integer"), ("key_splits", 0, "a positive integer"),
    ("momentum", 1.0, r"a number in \[0, 1\)"), ("momentum", -0.1, r"a number in \[0, 1\)"),
    ("temperature", 0.0, "a positive number"),
])
def test_a_moco_field_out_of_range_is_refused_naming_it_and_its_value(field: str, value, expected: str) -> None:
    """"dim, queue_size and key_splits must be positive" left one to guess which field, with what value."""
    with pytest.raises(ValueError, match=rf"^MoCoConfig {field}: expected {expected}, got {value!r}$"):
        MoCoConfig(**{field: value})
