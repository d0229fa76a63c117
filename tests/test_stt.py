"""STT's temporal stage (vidcorr.methods.stt, stt_ops) and its spatial stage, MoCo v2 (methods.moco):
the operations against naive loops and hand values, the release's quirks, the models on real frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidcorr.data.augment import ResizedCropPairAugment, TwoViewAugment, random_resized_box
from vidcorr.methods import stt_ops
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.methods.stt import STT, STTConfig, check_teacher
from vidcorr.models import build_encoder
from vidcorr.train.config import StageConfig
from vidcorr.train.schedule import learning_rate

pytestmark = pytest.mark.usefixtures("one_thread")


def read_frame(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _frames(data_dir: Path, size: int) -> dict[str, torch.Tensor]:
    """Frames 0 and 3 of DAVIS car-shadow, resized to size x size, as a batch of one."""
    root = data_dir / "davis2016" / "JPEGImages" / "480p" / "car-shadow"
    out = {}
    for name, index in (("ref", 0), ("target", 3)):
        image = torch.from_numpy(read_frame(root / f"{index:05d}.jpg")).permute(2, 0, 1).float()[None] / 255
        out[name] = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out


# --- operations -----------------------------------------------------------------------------


def test_window_mask_is_the_square_neighbourhood() -> None:
    mask = stt_ops.window_mask(4, 5, 1)
    for i in range(20):
        for j in range(20):
            (yi, xi), (yj, xj) = divmod(i, 5), divmod(j, 5)
            assert bool(mask[i, j]) == (abs(yi - yj) <= 1 and abs(xi - xj) <= 1)


def test_local_correlation_is_a_softmax_inside_the_window() -> None:
    torch.manual_seed(0)
    target, ref = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    mask = stt_ops.window_mask(4, 4, 1)
    corr = stt_ops.local_correlation(stt_ops.raw_correlation(target, ref), 8, mask)
    for b in range(2):
        for i in range(16):
            logits = torch.tensor([float(target[b, :, i // 4, i % 4] @ ref[b, :, j // 4, j % 4]) / math.sqrt(8)
                                   if mask[i, j] else -math.inf for j in range(16)])
            torch.testing.assert_close(corr[b, i], logits.softmax(0), atol=1e-6, rtol=1e-5)


def test_pooled_correlation_averages_2x2_blocks_of_both_axes() -> None:
    torch.manual_seed(1)
    corr = torch.randn(2, 16, 16).softmax(-1)  # (4 x 4 target) x (4 x 4 ref)
    pooled = stt_ops.pooled_correlation(corr, (4, 4))
    assert pooled.shape == (2, 4, 4)
    grid = corr.view(2, 4, 4, 4, 4)  # ty, tx, ry, rx
    for ti in range(4):
        for ri in range(4):
            (ty, tx), (ry, rx) = divmod(ti, 2), divmod(ri, 2)
            block = grid[:, 2 * ty : 2 * ty + 2, 2 * tx : 2 * tx + 2, 2 * ry : 2 * ry + 2, 2 * rx : 2 * rx + 2]
            torch.testing.assert_close(pooled[:, ti, ri], block.mean(dim=(1, 2, 3, 4)))
    # The release's target mass: rows sum to 1/4 (avg-pool); "normalised" restores 1.
    torch.testing.assert_close(pooled.sum(-1), torch.full((2, 4), 0.25))
    torch.testing.assert_close(stt_ops.pooled_correlation(corr, (4, 4), normalise=True).sum(-1), torch.ones(2, 4))


def test_displacement_cost_is_a_zero_padded_correlation_volume() -> None:
    torch.manual_seed(2)
    target, ref = torch.randn(1, 3, 5, 6), torch.randn(1, 3, 5, 6)
    cost = stt_ops.displacement_cost(stt_ops.raw_correlation(target, ref), (5, 6), 2)
    padded = F.pad(ref, (2, 2, 2, 2))
    for d in range(25):
        dy, dx = divmod(d, 5)
        shifted = padded[:, :, dy : dy + 5, dx : dx + 6]  # ref at (y + dy - 2, x + dx - 2)
        torch.testing.assert_close(cost[0, d], (target * shifted).sum(1).flatten(), atol=1e-5, rtol=1e-5)


def test_uncertainty_weights_reproduce_the_release_threshold_and_a_global_percentile() -> None:
    torch.manual_seed(3)
    target, ref = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    raw = stt_ops.raw_correlation(target, ref)
    p = stt_ops.displacement_cost(raw, (8, 8), 2).softmax(1)
    entropy = (-torch.log(p + 1e-12)).sum(1).view(2, 8, 8).numpy()
    release = stt_ops.uncertainty_weights(raw, (8, 8), 2, 0.7, "release").view(2, 8, 8).numpy()
    row = int(8 * 0.7) - 1
    for b in range(2):
        sorted_row = np.sort(entropy[b, row])[::-1]  # the release sorts every row along x
        for y in range(8):
            for x in range(8):  # column x's bar: the x-th largest entropy of row `row`
                assert release[b, y, x] == float(entropy[b, y, x] > sorted_row[x])
    kept = stt_ops.uncertainty_weights(raw, (8, 8), 2, 0.7, "global")
    assert kept.sum(1).tolist() == [int(64 * 0.7) - 1] * 2  # strictly above the bar: no ties here
    flat = torch.from_numpy(entropy).flatten(1)
    for b in range(2):  # the kept positions are the most uncertain ones
        assert flat[b][kept[b].bool()].min() > flat[b][~kept[b].bool()].max()
    with pytest.raises(ValueError, match="threshold"):
        stt_ops.uncertainty_weights(raw, (8, 8), 2, 0.7, "median")


def test_weighted_mse_averages_over_the_weighted_rows_only() -> None:
    prediction, target = torch.zeros(1, 3, 2), torch.tensor([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]]])
    weights = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(stt_ops.weighted_mse(prediction, target, weights)) == pytest.approx((1 + 1 + 4 + 4) / 4)
    assert float(stt_ops.weighted_mse(prediction, target, torch.zeros(1, 3))) == 0.0


def test_reconstruction_carries_the_sampled_reference_channel() -> None:
    torch.manual_seed(4)
    ref_channel = torch.rand(1, 1, 16, 16)
    corr = torch.eye(16)[None]  # each target cell copies the same reference cell
    carried = stt_ops.transport(corr, ref_channel[:, :, ::4, ::4]).view(1, 1, 4, 4)
    torch.testing.assert_close(carried, ref_channel[:, :, ::4, ::4])
    # A flat channel is reconstructed exactly whatever the correlation (rows sum to 1).
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert float(stt_ops.reconstruction_loss(torch.rand(1, 16, 16).softmax(-1), flat, flat, 4, (4, 4), 20.0)) < 1e-10
    with pytest.raises(ValueError, match="multiple of 32"):
        stt_ops.reconstruction_loss(corr, torch.rand(1, 1, 18, 18), torch.rand(1, 1, 18, 18), 4, (4, 4), 20.0)


def test_global_correlation_teacher_form_is_unnormalised_at_its_temperature() -> None:
    torch.manual_seed(5)
    a, b = torch.randn(1, 6, 2, 2), torch.randn(1, 6, 2, 2)
    raw = stt_ops.raw_correlation(a, b)
    torch.testing.assert_close(stt_ops.global_correlation(a, b), (raw / math.sqrt(6)).softmax(-1))
    torch.testing.assert_close(stt_ops.global_correlation(a, b, 0.07), (raw / 0.07).softmax(-1))
    normed = stt_ops.raw_correlation(F.normalize(a, dim=1), F.normalize(b, dim=1))
    torch.testing.assert_close(stt_ops.global_correlation(a, b, 0.07, normalise=True), (normed / 0.07).softmax(-1))


# --- STT model ----------------------------------------------------------------------------


def _teacher() -> torch.nn.Module:
    return build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4")


def test_stt_losses_and_gradients_on_a_real_pair(data_dir: Path) -> None:
    torch.manual_seed(0)
    teacher = _teacher()
    model = STT(STTConfig(arch="resnet18", frame_size=96), teacher)  # a teacher needs >= 96
    # The student starts from the teacher (the release's config), the teacher is frozen and
    # never saved in checkpoints.
    for name, value in teacher.backbone.state_dict().items():
        mine = model.layer4 if name.startswith("layer4.") else model.encoder.backbone
        key = name[len("layer4."):] if name.startswith("layer4.") else name
        assert torch.equal(mine.state_dict()[key], value), name
    assert not any(k.startswith("teacher.") for k in model.state_dict())
    assert all(not p.requires_grad for p in teacher.parameters())
    batch = _frames(data_dir, 96)
    losses = model.train()(batch)
    assert set(losses) == {"rec_s4", "rec_s8", "local", "global", "loss"}
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["global"].detach()) > 0
    total = losses["rec_s4"] + losses["rec_s8"] + 1000 * losses["local"] + 50 * losses["global"]
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    assert model.encoder.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.layer4[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training  # model.train() keeps the teacher in eval mode
    images = model.visualise(batch)["ref_target_carried"]
    assert images.shape == (1, 3, 96, 288)
    # Under bf16 autocast (the CUDA recipes' setting) the convolutions run in bf16 and the
    # correlations in float32; checked here with the CPU's autocast.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(batch)["loss"].detach())


def test_stt_given_a_teacher_refuses_a_frame_whose_global_grid_is_2x2() -> None:
    """`vidcorr train stt --teacher` refused crop 64 (64 / 32 = 2x2 stride-32 cells, on which both
    correlations of the global term are the identity: the term is 0) while the Python API trained it
    without a word. The same check now: 96 (3x3 cells) builds, and 64 builds without a teacher."""
    with pytest.raises(ValueError, match=r"^frame_size = 64: with a teacher, STT's global term correlates 2x2 "
                                         r"stride-32 cells, .* at least 96 \(3x3 cells\), or train without a teacher$"):
        STT(STTConfig(arch="resnet18", frame_size=64), _teacher())
    assert STT(STTConfig(arch="resnet18", frame_size=96), _teacher()).teacher is not None
    assert STT(STTConfig(arch="resnet18", frame_size=64)).teacher is None


def test_stt_without_teacher_has_no_global_term_and_trains_no_layer4(data_dir: Path) -> None:
    torch.manual_seed(0)
    model = STT(STTConfig(arch="resnet18", frame_size=64))
    losses = model(_frames(data_dir, 64))
    assert float(losses["global"]) == 0.0
    assert all(not p.requires_grad for p in model.layer4.parameters())
    assert all(p.requires_grad for p in model.trainable_parameters())
    with pytest.raises(ValueError, match="lacks 'target'"):
        model({"ref": torch.rand(1, 3, 64, 64)})
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model({"ref": torch.rand(1, 3, 96, 96), "target": torch.rand(1, 3, 96, 96)})


def test_stt_drops_one_chromatic_channel_and_scales_the_rest() -> None:
    model = STT(STTConfig(arch="resnet18", frame_size=64))
    lab = torch.randn(2, 3, 4, 4)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        dropped, channel = model.drop_channel(lab)
        seen.add(channel)
        assert torch.equal(dropped[:, channel], torch.zeros(2, 4, 4))
        kept = [c for c in range(3) if c != channel]
        torch.testing.assert_close(dropped[:, kept], lab[:, kept] * 1.5)
    assert seen == {1, 2}


def test_stt_reconstruction_alone_teaches_the_student_on_a_real_pair(data_dir: Path) -> None:
    """The temporal objective's core: with the distillation weighted 0, Adam lowers the
    reconstruction error of the dropped channel (both levels) on a real DAVIS pair. (With the
    release's weights the 1000 x local term, whose target rows sum to 1/4, dominates a 64 px pair.)"""
    torch.manual_seed(0)
    model = STT(STTConfig(arch="resnet18", frame_size=64, local_weight=0.0))
    batch = _frames(data_dir, 64)
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)

    def reconstruction() -> float:
        torch.manual_seed(123)  # the same dropped channel every time
        losses = model(batch)
        return float((losses["rec_s4"] + losses["rec_s8"]).detach())

    before = reconstruction()
    for step in range(15):
        torch.manual_seed(step)
        optimiser.zero_grad()
        model(batch)["loss"].backward()
        optimiser.step()
    assert reconstruction() < 0.7 * before


def test_stt_teacher_checks() -> None:
    cfg = STTConfig(arch="resnet18", frame_size=64)
    check_teacher(_teacher(), cfg)
    with pytest.raises(ValueError, match="stride 32"):
        check_teacher(build_encoder("resnet18"), cfg)
    with pytest.raises(ValueError, match="same arch"):
        check_teacher(build_encoder("resnet50", strides=(1, 2, 2, 2), out_layer="layer4"), cfg)
    with pytest.raises(ValueError, match="multiple of 32"):
        STTConfig(frame_size=200)
    with pytest.raises(ValueError, match="unknown keys|unknown"):
        STTConfig.from_dict({"radius": [12, 6], "nonsense": 1})


# --- MoCo ---------------------------------------------------------------------------------


def test_moco_loss_is_infonce_over_the_positive_and_the_queue() -> None:
    torch.manual_seed(0)
    model = MoCo(MoCoConfig(arch="resnet18", queue_size=16, key_splits=2)).eval()
    batch = {"query": torch.rand(4, 3, 64, 64), "key": torch.rand(4, 3, 64, 64)}
    queue = model.queue.clone()
    out = model(batch)
    q = model._embed(model.encoder, model.projector, batch["query"])
    k = model._embed(model.key_encoder, model.key_projector, batch["key"])
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], dim=1) / 0.2
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    assert torch.equal(model.queue, queue)  # evaluation neither enqueues nor moves the key encoder


def test_moco_training_step_moves_keys_by_momentum_and_fills_the_queue_in_order() -> None:
    torch.manual_seed(0)
    model = MoCo(MoCoConfig(arch="resnet18", queue_size=6, momentum=0.9, key_splits=2))
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.1)
    query_before = [p.clone() for p in model.encoder.parameters()]
    key_before = [p.clone() for p in model.key_encoder.parameters()]
    for step in range(2):  # 4 + 4 keys into 6 slots: wraps around
        batch = {"query": torch.rand(4, 3, 64, 64), "key": torch.rand(4, 3, 64, 64)}
        out = model(batch)
        if step == 0:
            for q, k0, k in zip(query_before, key_before, model.key_encoder.parameters(), strict=True):
                torch.testing.assert_close(k, 0.9 * k0 + 0.1 * q)
            first_keys = model.queue[:, :4].clone()
    assert int(model.queue_pointer) == 2
    # Slots 0, 1 were overwritten by the second batch; slots 2, 3 still hold the first batch's keys.
    torch.testing.assert_close(model.queue[:, 2:4], first_keys[:, 2:4])
    assert torch.isfinite(out["loss"]) and 0 <= float(out["accuracy"]) <= 1
    assert {"queue", "queue_pointer"} <= set(model.state_dict())
    out["loss"].backward()
    assert all(p.grad is None for p in model.key_encoder.parameters())
    # The exported query encoder is what `train stt --teacher` accepts.
    check_teacher(model.export()[0], STTConfig(arch="resnet18", frame_size=64))


def test_moco_keys_come_back_in_batch_order() -> None:
    torch.manual_seed(0)
    model = MoCo(MoCoConfig(arch="resnet18", queue_size=8, key_splits=3)).eval()
    images = torch.rand(5, 3, 64, 64)
    direct = model._embed(model.key_encoder, model.key_projector, images)
    torch.testing.assert_close(model._keys(images), direct, atol=1e-5, rtol=1e-5)


# --- samples and schedule -------------------------------------------------------------------


def test_random_resized_box_respects_area_and_aspect() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = random_resized_box(256, 455, (0.6, 1.0), (1.5, 2.0), generator)
        assert 0 <= top and top + h <= 256 and 0 <= left and left + w <= 455
        assert 0.58 <= h * w / (256 * 455) <= 1.0 and 1.45 <= w / h <= 2.05
    # No box fits a tall image at aspect >= 1.5 with this area: the centred fallback clamps the ratio.
    top, left, h, w = random_resized_box(400, 100, (0.9, 1.0), (1.5, 2.0), generator)
    assert (w, h) == (100, 67) and left == 0 and top == (400 - 67) // 2


def test_stt_pairs_share_the_box_and_flip(data_dir: Path) -> None:
    frame = read_frame(data_dir / "davis2016" / "JPEGImages" / "480p" / "dog" / "00000.jpg")
    out = ResizedCropPairAugment(64)([frame, frame.copy()], torch.Generator().manual_seed(3))
    assert out["ref"].shape == (3, 64, 64) and out["ref"].dtype == torch.uint8
    assert torch.equal(out["ref"], out["target"])  # same frame in, same crop out


def test_two_views_are_independent_and_reproducible(data_dir: Path) -> None:
    frame = read_frame(data_dir / "davis2016" / "JPEGImages" / "480p" / "dog" / "00000.jpg")
    augment = TwoViewAugment(64)
    a = augment([frame], torch.Generator().manual_seed(7))
    b = augment([frame], torch.Generator().manual_seed(7))
    assert a["query"].shape == a["key"].shape == (3, 64, 64)
    assert torch.equal(a["query"], b["query"]) and torch.equal(a["key"], b["key"])
    assert not torch.equal(a["query"], a["key"])


def test_cosine_schedule_with_warmup_and_floor() -> None:
    stage = StageConfig("s", steps=100, lr=1.0, schedule="cosine", min_lr_ratio=0.001, warmup=10,
                        warmup_ratio=0.001)
    assert learning_rate(stage, 0, 5) == pytest.approx(0.001)
    regular = 0.001 + 0.999 * 0.5 * (1 + math.cos(math.pi * 0.05))
    assert learning_rate(stage, 5, 5) == pytest.approx(regular * (1 - 0.5 * 0.999))
    assert learning_rate(stage, 50, 5) == pytest.approx(0.001 + 0.999 * 0.5)
    assert learning_rate(stage, 100, 5) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        StageConfig("s", steps=1, min_lr_ratio=2.0)


@pytest.mark.parametrize("field, value, expected", [
    ("arch", "resnet34", "'resnet18' or 'resnet50'"), ("rec_scale", -1.0, "a number >= 0"),
    ("local_weight", -0.5, "a number >= 0"), ("global_weight", -2.0, "a number >= 0"),
    ("teacher_temperature", 0.0, "a positive number"), ("teacher_temperature", -0.07, "a positive number"),
])
def test_an_stt_field_out_of_range_is_refused_naming_it_and_its_value(field: str, value, expected: str) -> None:
    """"scales, weights and the teacher temperature must be >= 0" left one to guess which field; and
    a teacher temperature of 0 divided the teacher's correlation by zero."""
    with pytest.raises(ValueError, match=rf"^STTConfig {field}: expected {expected}, got {value!r}$"):
        STTConfig(**{field: value})
