"""CycleTime (METHODS.md §2): its geometry against hand-computed and reference values, the clip
sampler and augmentation, and the model's losses on a real clip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidcorr.data import CycleClipAugment, cycle_clip_indices
from vidcorr.io.video import read_frames_at
from vidcorr.methods.cycletime import CycleTime, CycleTimeConfig, recipe
from vidcorr.methods.cycletime_ops import grid_loss, patch_affinity, soft_inlier_score
from vidcorr.patches import rigid_theta, sample_patch


pytestmark = pytest.mark.usefixtures("one_thread")


def _coordinate_image(size: int) -> torch.Tensor:
    """(1, 2, size, size): channel 0 the unit x, channel 1 the unit y of each pixel centre."""
    axis = torch.linspace(-1, 1, size)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs, ys])[None]


def test_patch_at_a_rigid_transform_reads_the_expected_points() -> None:
    image = _coordinate_image(31)
    theta = rigid_theta(torch.tensor([[0.3, -0.6, 0.0]]))
    patch = sample_patch(image, theta, (11, 11))
    # unrotated: a third of the frame centred on (0.3, -0.6); corners at +-1/3 around it
    assert torch.allclose(patch[0, 0, 0, 0], torch.tensor(0.3 - 1 / 3), atol=1e-5)
    assert torch.allclose(patch[0, 1, -1, -1], torch.tensor(-0.6 + 1 / 3), atol=1e-5)
    assert torch.allclose(patch[0, :, 5, 5], torch.tensor([0.3, -0.6]), atol=1e-5)
    # rotated by 90 degrees: the patch's x axis runs along the image's y axis
    turned = sample_patch(image, rigid_theta(torch.tensor([[0.0, 0.0, math.pi / 2]])), (11, 11))
    assert torch.allclose(turned[0, 1, 5, :], torch.linspace(-1 / 3, 1 / 3, 11), atol=1e-5)
    assert torch.allclose(turned[0, 0, 5, :], torch.zeros(11), atol=1e-5)
    # the translation factor moves the centre only
    scaled = sample_patch(image, theta, (11, 11), translation_scale=1.5)
    assert torch.allclose(scaled[0, :, 5, 5], torch.tensor([0.45, -0.9]), atol=1e-5)


def test_grid_loss_is_zero_for_equal_transforms_and_the_squared_shift_for_a_translation() -> None:
    theta = rigid_theta(torch.tensor([[0.1, 0.2, 0.3], [-0.5, 0.0, -0.7]]))
    assert torch.allclose(grid_loss(theta, theta), torch.zeros(2))
    shifted = theta.clone()
    shifted[:, :, 2] += torch.tensor([0.3, -0.4])
    assert torch.allclose(grid_loss(shifted, theta), torch.full((2,), 0.25), atol=1e-6)
    # a rotation about the centre moves the points of the grid by 2 sin(a/2) x their radius
    a = 0.4
    rotated = rigid_theta(torch.tensor([[0.0, 0.0, a]]), scale=1.0)
    axis = torch.linspace(-1, 1, 20)
    radius2 = (axis[None] ** 2 + axis[:, None] ** 2).mean()
    expected = (2 * math.sin(a / 2)) ** 2 * radius2
    assert torch.allclose(grid_loss(rotated, rigid_theta(torch.zeros(1, 3), scale=1.0)), expected[None], atol=1e-5)


def test_patch_affinity_matches_a_loop_and_normalises_over_the_frame() -> None:
    g = torch.Generator().manual_seed(0)
    patch = F.normalize(torch.randn(2, 8, 3, 4, generator=g), dim=1)
    frame = F.normalize(torch.randn(2, 8, 5, 6, generator=g), dim=1)
    affinity = patch_affinity(patch, frame, temperature=0.1)
    assert affinity.shape == (2, 30, 3, 4)
    assert torch.allclose(affinity.sum(dim=1), torch.ones(2, 3, 4))
    for n in range(2):
        for y in range(3):
            for x in range(4):
                scores = torch.tensor([[(frame[n, :, fy, fx] @ patch[n, :, y, x]) / 0.1
                                        for fx in range(6)] for fy in range(5)])
                assert torch.allclose(affinity[n, :, y, x], scores.flatten().softmax(0), atol=1e-6)


def _inlier_reference(affinity: torch.Tensor, theta: torch.Tensor, frame_hw, translation_scale: float):
    """The official ``WeakInlierCountPool``: warp a one-hot identity mask of the frame's cells."""
    n, hw, h, w = affinity.shape
    identity = torch.eye(hw).view(1, hw, *frame_hw).expand(n, hw, *frame_hw)
    theta = torch.cat([theta[:, :, :2], theta[:, :, 2:] * translation_scale], dim=2)
    grid = F.affine_grid(theta, [n, hw, h, w], align_corners=True)
    mask = F.grid_sample(identity, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    mask = mask / (mask + 1e-5).sum(dim=(1, 2, 3), keepdim=True)
    return (mask * affinity).sum(dim=(1, 2, 3))


def test_soft_inlier_score_equals_the_warped_identity_mask() -> None:
    g = torch.Generator().manual_seed(1)
    affinity = torch.randn(3, 7 * 9, 4, 4, generator=g).softmax(dim=1)
    # in the frame, partly outside it, and rotated
    theta = rigid_theta(torch.tensor([[0.0, 0.0, 0.0], [0.8, -0.7, 0.5], [-0.2, 0.3, -1.0]]))
    fast = soft_inlier_score(affinity, theta, (7, 9), translation_scale=227 / 210)
    reference = _inlier_reference(affinity, theta, (7, 9), 227 / 210)
    assert torch.allclose(fast, reference, atol=1e-6)
    # all mass where theta sends each cell scores ~1; a uniform affinity 1 / frame cells
    on_grid = rigid_theta(torch.tensor([[0.0, 0.0, 0.0]]), scale=1.0)  # patch cells land on cells
    exact = torch.eye(63).view(1, 63, 7, 9)
    assert soft_inlier_score(exact, on_grid, (7, 9), 1.0) > 0.99
    assert soft_inlier_score(torch.full((1, 63, 7, 9), 1 / 63), on_grid, (7, 9), 1.0) < 0.02


def test_cycle_clip_indices() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = cycle_clip_indices(100, 4, 2, 4, rng)
        start = idx[0]
        assert idx == [start, start + 2, start + 4, start + 6, start + 15, start + 17] and idx[-1] < 100
    short = cycle_clip_indices(10, 4, 2, 4, rng)  # span 17 > 9: squeezed, in order, in the video
    assert short[0] == 0 and short[-1] == 9 and short == sorted(short)


def _moving_square_frames(clip_length: int = 4) -> list[np.ndarray]:
    """Static noise with a bright square that moves between the last two frames, at x 150-180,
    y 40-70 of a 256 x 300 frame."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (256, 300, 3), dtype=np.uint8)
    frames = [base.copy() for _ in range(clip_length + 2)]
    frames[-2][40:70, 150:180] = 255
    frames[-1][40:70, 160:190] = 255
    return frames


def test_cycle_clip_augment_places_the_patch_on_the_motion() -> None:
    augment = CycleClipAugment(crop=240, resize=256, top=1, jitter=0.0, max_rotation=0.0, flip=False)
    frames = _moving_square_frames()
    out = augment(frames, torch.Generator().manual_seed(3))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "clip": (4, 3, 240, 240), "target": (3, 240, 240), "patch": (3, 80, 80), "theta": (2, 3)}
    assert out["clip"].dtype == out["patch"].dtype == torch.uint8 and out["theta"].dtype == torch.float32
    # The frames are already at short side 256: the crop is a 240 x 240 window of them, and the
    # one window (of 7 x 7) with the most motion contains the square: the patch sees it.
    assert out["patch"].float().mean() > out["target"].float().mean() + 20
    again = augment(frames, torch.Generator().manual_seed(3))
    assert all(torch.equal(out[k], again[k]) for k in out)
    # patch == target sampled at theta; flipping flips all frames together
    flipped = CycleClipAugment(crop=240, resize=256, flip=True)
    for seed in range(6):
        sample = flipped(frames, torch.Generator().manual_seed(seed))
        resampled = sample_patch(sample["target"][None].float(), sample["theta"][None], (80, 80))[0]
        assert (resampled.round() - sample["patch"].float()).abs().max() <= 1
        angle = math.atan2(float(sample["theta"][1, 0]), float(sample["theta"][0, 0]))
        assert abs(angle) <= math.radians(45) + 1e-6
        assert sample["theta"][:, 2].abs().max() <= 2 / 3 + 1e-6
    with pytest.raises(ValueError, match="multiple of 24"):
        CycleClipAugment(crop=250)


def _real_batch(data_dir: Path, cfg: CycleTimeConfig, batch: int = 2) -> dict[str, torch.Tensor]:
    videos = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[:batch]
    augment = CycleClipAugment(cfg.frame_size, resize=cfg.frame_size + 16)
    rng = np.random.default_rng(0)
    samples = [augment(read_frames_at(v, cycle_clip_indices(60, cfg.clip_length, 2, 4, rng)),
                       torch.Generator().manual_seed(i)) for i, v in enumerate(videos)]
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    return {k: v.float() / 255 if v.dtype == torch.uint8 else v for k, v in out.items()}


SMALL = dict(arch="resnet18", frame_size=168, clip_length=2)


def test_losses_on_a_real_clip_are_finite_and_train_every_part(data_dir: Path) -> None:
    torch.manual_seed(0)
    model = CycleTime(recipe("cycletime", **SMALL))
    batch = _real_batch(data_dir, model.cfg)
    out = model(batch)
    assert set(out) == {"cycle", "skip", "inlier", "loss", "cycle_longest"}
    assert all(torch.isfinite(v) for v in out.values())
    # an untrained affinity is near uniform: the soft inlier count is about 1 / frame cells
    assert 0 < float(out["inlier"].detach()) < 5 / 21**2
    cfg = model.cfg
    expected = cfg.cycle_weight * out["cycle"] + cfg.skip_weight * out["skip"] - cfg.inlier_weight * out["inlier"]
    assert torch.allclose(out["loss"], expected)
    out["loss"].backward()
    for part in (model.encoder.backbone, model.encoder.head, model.regressor):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    images = model.visualise(batch)["patch_true_vs_cycle_end"]
    assert images.shape == (2, 3, 56, 112)


def test_cycles_sharing_their_backward_half_equal_cycles_tracked_one_by_one(data_dir: Path) -> None:
    """The model tracks the backward half once for all cycle lengths; the release tracks every
    cycle from the patch. Same losses, same gradients."""
    torch.manual_seed(0)
    model = CycleTime(recipe("cycletime", **{**SMALL, "clip_length": 3})).eval()  # eval: BN from running stats
    g = torch.Generator().manual_seed(2)
    batch = {"clip": torch.rand(2, 3, 3, 168, 168, generator=g), "target": torch.rand(2, 3, 168, 168, generator=g),
             "patch": torch.rand(2, 3, 56, 56, generator=g),
             "theta": rigid_theta(torch.tensor([[0.3, -0.2, 0.5], [-0.4, 0.4, -0.3]]))}
    out = model(batch)
    out["cycle"].backward()
    shared = [p.grad.clone() for p in model.regressor.parameters()]
    model.zero_grad()

    f_clip = model._embed(batch["clip"].flatten(0, 1), False).view(2, 3, 512, 21, 21)
    f_target = model._embed(batch["target"], False)
    n_patch = F.normalize(model._embed(batch["patch"], False), dim=1)
    losses = []
    for c in range(1, 4):  # model_simple.py's cycle(TT): back through 2 .. 3-c, forward through 4-c .. 2
        query = n_patch
        for t in [*range(2, 2 - c, -1), *range(3 - c + 1, 3)]:
            _, _, query = model._track(query, F.normalize(f_clip[:, t], dim=1), f_clip[:, t])
        _, theta_end, _ = model._track(query, F.normalize(f_target, dim=1), f_target)
        losses.append(grid_loss(theta_end, batch["theta"]).mean())
    reference = torch.stack(losses).mean()
    reference.backward()
    torch.testing.assert_close(out["cycle"], reference)
    for a, p in zip(shared, model.regressor.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_a_regressor_that_finds_the_truth_has_zero_cycle_and_skip_loss(data_dir: Path) -> None:
    """The losses compare where the cycles end with the ground-truth transform: if every tracking
    step returned that transform, both would vanish (the wiring test of the cycles)."""
    model = CycleTime(recipe("cycletime", **SMALL))
    batch = _real_batch(data_dir, model.cfg)
    truth = batch["theta"]

    class Oracle(torch.nn.Module):
        def forward(self, affinity: torch.Tensor) -> torch.Tensor:
            return truth.repeat_interleave(affinity.shape[0] // truth.shape[0], dim=0)

    model.regressor = Oracle()
    out = model(batch)
    assert float(out["cycle"]) < 1e-10 and float(out["skip"]) < 1e-10


def test_detach_encoder_leaves_only_the_target_frame_training_the_backbone(data_dir: Path) -> None:
    torch.manual_seed(0)
    detached = CycleTime(recipe("cycletime", **SMALL, detach_encoder=True))
    batch = _real_batch(data_dir, detached.cfg)
    attached = CycleTime(recipe("cycletime", **SMALL))
    attached.load_state_dict(detached.state_dict())
    detached(batch)["loss"].backward()
    attached(batch)["loss"].backward()
    with_detach = [p.grad.clone() for p in detached.encoder.backbone.parameters()]
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_detach, attached.encoder.backbone.parameters()))
    # the same gradient comes from cutting the clip's and the patch's backbone features by hand
    attached.zero_grad()
    calls = []
    backbone_forward = attached.encoder.backbone.forward

    def cut_all_but_the_target(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        out = backbone_forward(x)
        return out if len(calls) == 3 else out.detach()  # clip, patch, then target

    attached.encoder.backbone.forward = cut_all_but_the_target
    attached(batch)["loss"].backward()
    assert calls == [4, 2, 2]
    for a, p in zip(with_detach, attached.encoder.backbone.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_config_rejects_sizes_the_regressor_cannot_use() -> None:
    with pytest.raises(ValueError, match="multiple of 24"):
        CycleTimeConfig(frame_size=200)
    with pytest.raises(ValueError, match="unknown CycleTime config keys"):
        CycleTimeConfig.from_dict({"frame": 240})
    model = CycleTime(recipe("cycletime", **SMALL))
    with pytest.raises(ValueError, match="batch\\['patch'\\]"):
        model({"clip": torch.zeros(1, 2, 3, 168, 168), "target": torch.zeros(1, 3, 168, 168),
               "patch": torch.zeros(1, 3, 64, 64), "theta": torch.zeros(1, 2, 3)})


def test_the_objective_alone_teaches_the_regressor_to_track_perfect_features() -> None:
    """End to end through every gradient path of the cycles: with the encoder replaced by the
    identity on a synthetic feature video (shifted windows of one smooth random field), training
    only the transform regressor on the CycleTime loss must bring the tracking error of held-out
    clips well below that of the untrained regressor (which predicts the centred patch)."""
    torch.manual_seed(0)
    model = CycleTime(recipe("cycletime", arch="resnet18", frame_size=168, clip_length=2))
    model._embed = lambda x, detach_backbone: x  # "images" are feature maps already
    model._check = lambda batch: None
    g = torch.Generator().manual_seed(0)

    def clips(n: int) -> dict[str, torch.Tensor]:
        field = F.normalize(F.avg_pool2d(torch.randn(n, 16, 44, 44, generator=g), 7, stride=1), dim=1)
        frames = [field[:, :, 4 + t // 2 : 25 + t // 2, 4 + t : 25 + t] for t in range(3)]  # 21 x 21, drifting
        params = torch.rand(n, 3, generator=g)
        params[:, :2] = (params[:, :2] * 2 - 1) * 2 / 3
        params[:, 2] = (params[:, 2] - 0.5) * math.pi / 2
        theta = rigid_theta(params)
        return {"clip": torch.stack(frames[:2], 1), "target": frames[2],
                "patch": sample_patch(frames[2], theta, (7, 7)), "theta": theta}

    held_out = clips(32)
    with torch.no_grad():
        before = model(held_out)
    optimiser = torch.optim.Adam(model.regressor.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(100):
        loss = model(clips(8))["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = model(held_out)
    # measured: skip 0.360 -> 0.147, cycle 0.362 -> 0.183, inlier 0.003 -> 0.052
    assert float(after["skip"]) < 0.6 * float(before["skip"])
    assert float(after["cycle"]) < 0.75 * float(before["cycle"])
    assert float(after["inlier"]) > 5 * float(before["inlier"])


@pytest.mark.parametrize("field, value, expected", [
    ("head_channels", 0, "a positive integer"), ("temperature", 0.0, "a positive number or None"),
    ("temperature", -0.5, "a positive number or None"), ("cycle_weight", -1.0, "a number >= 0"),
    ("skip_weight", -0.1, "a number >= 0"), ("inlier_weight", -2.0, "a number >= 0"),
])
def test_a_field_out_of_range_is_refused_naming_it_and_its_value(field: str, value: float, expected: str) -> None:
    """"head_channels and temperature must be positive" and "loss weights must be >= 0" left one to
    guess which field was wrong, and with what value."""
    with pytest.raises(ValueError, match=rf"^CycleTimeConfig {field}: expected {expected}, got {value}$"):
        CycleTimeConfig(**{field: value})
