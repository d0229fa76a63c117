"""Golden values and naive references for the training objectives (UVC, CycleTime, STT, MoCo) and
their schedules, written after a mutation audit of those modules: each test here fails on a
plausible one-line change (a wrong axis, normaliser, boundary, weight or stop-gradient) that the
rest of the suite let through. References are plain loops over METHODS.md's formulas, not the
library's own tensor code."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vidcorr.methods import UVC, recipe, stt_ops
from vidcorr.methods import stt as stt_module
from vidcorr.methods.cycletime import CycleTime
from vidcorr.methods.cycletime import recipe as ct_recipe
from vidcorr.methods.cycletime_ops import grid_loss, soft_inlier_score
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.methods.stt import STT, STTConfig
from vidcorr.methods.uvc_losses import coordinate_cycle, global_concentration, local_concentration, to_unit
from vidcorr.models import build_encoder
from vidcorr.patches import rigid_theta, sample_patch
from vidcorr.train import StageConfig, distributed, learning_rate, load_recipe
from vidcorr.train.config import OptimConfig
from vidcorr.train.distributed import DistContext
from vidcorr.train.step import build_optimizer, reduce_terms, update


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    e = [math.exp(v - top) for v in row]
    return [v / sum(e) for v in e]


# --------------------------------------------------------------------------- UVC: coordinates


def test_to_unit_maps_first_and_last_pixel_centres_of_each_axis_to_minus_and_plus_one():
    """A 3 x 5 map (h, w): x spans 0..4 and y 0..2, each mapped onto [-1, 1] on its own axis."""
    coords = torch.tensor([[0.0, 4.0, 2.0, 1.0], [0.0, 2.0, 1.0, 2.0]])  # (x; y)
    want = torch.tensor([[-1.0, 1.0, 0.0, -0.5], [-1.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(to_unit(coords, (3, 5)), want)


def test_coordinate_cycle_matches_a_loop_over_both_softmaxes():
    """UVC Eq. 7 as released (coord_switch): l12 = G softmax(S, over reference pixels), then back
    with softmax(S, over target pixels), L1 against G in unit coordinates, averaged over x, y and
    pixels. On a 2 x 3 map with random logits the two softmaxes differ, so the axis of each shows."""
    h, w = 2, 3
    n = h * w
    scores = torch.randn(1, n, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    s = scores[0].tolist()
    grid = [(i % w, i // w) for i in range(n)]  # (x, y) of pixel i, row-major
    unit = [(2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1) for x, y in grid]
    cols = [_softmax([s[i][j] for i in range(n)]) for j in range(n)]  # cols[j][i]: over i
    rows = [_softmax(s[i]) for i in range(n)]  # rows[i][j]: over j
    l12 = [[sum(cols[j][i] * unit[i][k] for i in range(n)) for k in range(2)] for j in range(n)]
    l11 = [[sum(rows[i][j] * l12[j][k] for j in range(n)) for k in range(2)] for i in range(n)]
    want = sum(abs(l11[i][k] - unit[i][k]) for i in range(n) for k in range(2)) / (2 * n)
    got = coordinate_cycle(scores, (h, w), (h, w))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_local_concentration_shrinks_its_window_to_a_smaller_map():
    """The window (8) is larger than a 4 x 4 map (a CPU recipe's crop): one 4 x 4 window."""
    scores = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(local_concentration(scores, (4, 4), (4, 4)),
                               local_concentration(scores, (4, 4), (4, 4), window=4))


def test_global_concentration_costs_nothing_exactly_on_the_bound():
    """Eq. 6: a point with |x - C_x| <= w and |y - C_y| <= h is inside; one past it pays its
    Euclidean distance to the centre, averaged over all points."""
    coords = torch.tensor([[[1.0, -1.0, 0.0, 3.0], [0.0, 0.5, -0.5, 4.0]]])
    centre = torch.zeros(1, 2)
    bound = torch.tensor([[1.0, 0.5]])
    assert global_concentration(coords[:, :, :3], centre, bound).item() == 0.0
    torch.testing.assert_close(global_concentration(coords, centre, bound), torch.tensor([5.0 / 4]))


# --------------------------------------------------------------------------- UVC: colour terms


class _Nearest(torch.nn.Module):
    """A parameter-free stand-in for the Lab auto-encoder: its features are 8 x 8 cell means and
    decoding repeats a feature over its cell, so a colour feature decodes to a flat cell."""

    def encode(self, lab_n: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(lab_n, 8)

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        return F.interpolate(feats, scale_factor=8, mode="nearest")


def _uvc() -> UVC:
    torch.manual_seed(0)
    return UVC(recipe("uvc-cpu"), _Nearest())


def test_truncation_drops_samples_by_the_combined_loss_and_the_mean_runs_over_the_whole_batch():
    """METHODS.md §1.6: the sample loss is l2 + 0.1 l1 (reconstruction + switch); samples above 2.5
    are set to 0, then the batch mean. Identity affinity, features all 0, so each term is the
    weighted L1 of the ground truth alone. Sample 0: 0 + 0; sample 1: recon 2.0 (L = 2), switch
    6.0 -> 2.6, dropped although its reconstruction alone would be kept; sample 2: recon 1.0."""
    model = _uvc()
    n = 4  # a 2 x 2 feature map
    scores = (torch.eye(n) * 1e4).expand(3, n, n)
    feats = torch.zeros(3, 3, 2, 2)
    lab_tgt, lab_ref = torch.zeros(3, 3, 16, 16), torch.zeros(3, 3, 16, 16)
    lab_tgt[1, 0], lab_ref[1, 0], lab_tgt[2, 0] = 2.0, 6.0, 1.0
    losses, diagnostics = {}, {}
    model._matching_terms(scores, (feats, feats), (lab_ref, lab_tgt), losses, diagnostics, use_truncation=True)
    torch.testing.assert_close(losses["colour"], torch.tensor(1.0 / 3))
    torch.testing.assert_close(losses["orthogonal"], torch.tensor(0.0))
    torch.testing.assert_close(diagnostics["truncated"], torch.tensor(1.0 / 3))
    losses, diagnostics = {}, {}
    model._matching_terms(scores, (feats, feats), (lab_ref, lab_tgt), losses, diagnostics, use_truncation=False)
    torch.testing.assert_close(losses["colour"], torch.tensor(1.0))
    torch.testing.assert_close(losses["orthogonal"], torch.tensor(2.0))


def test_colour_switch_uses_the_transposed_affinity_without_renormalising_it():
    """Eq. 8 as released: I1_hat = D(E(I2) A^T) with A = softmax over reference pixels; the rows
    of A (what A^T sums over) are not renormalised. Loop reference on a 1 x 2 map, Lab weights
    (1, 10, 10), ground truth 0."""
    model = _uvc()
    s = [[0.3, -1.2], [2.0, 0.1]]
    scores = torch.tensor([s])
    e_tgt = torch.tensor([[[[0.5, -0.25]], [[0.1, 0.4]], [[-0.3, 0.2]]]])  # (1, 3, 1, 2)
    cols = [_softmax([s[0][j], s[1][j]]) for j in range(2)]  # cols[j][i]
    back = [[sum(e_tgt[0, c, 0, j].item() * cols[j][i] for j in range(2)) for i in range(2)] for c in range(3)]
    want = sum(wc * sum(abs(v) for v in back[c]) / 2 for c, wc in enumerate((1.0, 10.0, 10.0)))
    losses, diagnostics = {}, {}
    lab = torch.zeros(1, 3, 8, 16)
    model._matching_terms(scores, (torch.zeros_like(e_tgt), e_tgt), (lab, lab), losses, diagnostics,
                          use_truncation=False)
    assert losses["orthogonal"].item() == pytest.approx(want, rel=1e-5)


def test_the_eq4_box_size_is_a_detached_statistic_and_the_centre_is_not():
    """coords2bbox (METHODS.md §1.5): the half-size 2 x MAD is detached, so neither the box nor
    the global concentration's bound pulls on its spread; the centre (Eq. 3) stays differentiable."""
    model = _uvc()
    g = torch.Generator().manual_seed(2)
    f_ref = torch.randn(1, 8, 2, 2, generator=g, requires_grad=True)
    f_frame = torch.randn(1, 8, 6, 6, generator=g, requires_grad=True)
    coords, centre, mad_half, box = model._region(f_ref, f_frame)
    assert model.cfg.box == "mad"
    assert centre.requires_grad and coords.requires_grad
    assert not mad_half.requires_grad


# --------------------------------------------------------------------------- CycleTime


def test_soft_inlier_score_defaults_to_the_official_translation_scale():
    """Called without a scale, the inlier counter warps as the release does (227 / 210)."""
    g = torch.Generator().manual_seed(3)
    affinity = torch.randn(2, 5 * 6, 3, 3, generator=g).softmax(dim=1)
    theta = torch.tensor([[[0.5, 0.0, 0.4], [0.0, 0.5, -0.3]], [[0.4, 0.1, -0.5], [-0.1, 0.4, 0.2]]])
    default = soft_inlier_score(affinity, theta, (5, 6))
    torch.testing.assert_close(default, soft_inlier_score(affinity, theta, (5, 6), 227.0 / 210.0))
    assert not torch.allclose(default, soft_inlier_score(affinity, theta, (5, 6), 1.0))


# --------------------------------------------------------------------------- STT


def _stt(teacher: bool):
    torch.manual_seed(0)
    t = build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4") if teacher else None
    return STT(STTConfig(arch="resnet18", frame_size=96 if teacher else 64), t)  # a teacher needs >= 96


def test_stt_local_distillation_target_is_a_constant():
    """METHODS.md §4.4: the pooled stride-4 correlation is the local distillation's target,
    detached. With layer3's input cut off from the graph, the only way back from ``local`` to
    layer2 and below would be through that target: no gradient may reach them."""
    model = _stt(teacher=False)
    backbone = model.encoder.backbone
    backbone.layer3.register_forward_pre_hook(lambda module, args: tuple(a.detach() for a in args))
    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(1, 3, 64, 64, generator=g), "target": torch.rand(1, 3, 64, 64, generator=g)}
    losses = model.train()(batch)
    assert losses["local"].item() > 0
    early = [p for name, p in backbone.named_parameters() if not name.startswith(("layer3", "layer4"))]
    grads = torch.autograd.grad(losses["local"], early, allow_unused=True)
    assert all(gr is None or not gr.any() for gr in grads)
    later = [p for name, p in backbone.named_parameters() if name.startswith("layer3")]
    assert any(gr is not None and gr.any() for gr in torch.autograd.grad(losses["local"], later, allow_unused=True))


def test_stt_global_term_matches_a_loop_over_target_and_reference_positions():
    """MSE between the student's softmax(tar . ref / sqrt(C)) over reference positions and the
    teacher's softmax(tar . ref / 0.07) on un-normalised features (the first half of the batch is
    the reference frame, the second the target)."""
    model = _stt(teacher=True)
    g = torch.Generator().manual_seed(7)
    c = 4
    student = torch.randn(2, c, 2, 2, generator=g)
    teacher = torch.randn(2, c, 2, 2, generator=g) * 0.3

    def corr(feats: torch.Tensor, temperature: float) -> list[list[float]]:
        ref, tar = feats[0].flatten(1), feats[1].flatten(1)  # (C, 4)
        return [_softmax([float(tar[:, i] @ ref[:, j]) / temperature for j in range(4)]) for i in range(4)]

    p, t = corr(student, math.sqrt(c)), corr(teacher, 0.07)
    want = sum((p[i][j] - t[i][j]) ** 2 for i in range(4) for j in range(4)) / 16
    assert model._global_term(student, teacher, 1).item() == pytest.approx(want, rel=1e-5)


def test_cycletime_skip_is_the_return_transform_and_inlier_the_outward_one():
    """METHODS.md §2.4-2.5, spelled out step by step: the patch is tracked straight into every
    frame of the clip (theta_2, whose soft inlier count is ``inlier``), the crop found there is
    tracked back into the target (theta_3), and ``skip`` is theta_3's grid loss against the truth."""
    torch.manual_seed(0)
    model = CycleTime(ct_recipe("cycletime", arch="resnet18", frame_size=168, clip_length=2)).eval()
    with torch.no_grad():  # an untrained regressor returns nearly one transform whatever it sees
        model.regressor.linear.weight.mul_(30)
    g = torch.Generator().manual_seed(5)
    batch = {"clip": torch.rand(1, 2, 3, 168, 168, generator=g), "target": torch.rand(1, 3, 168, 168, generator=g),
             "patch": torch.rand(1, 3, 56, 56, generator=g),
             "theta": rigid_theta(torch.tensor([[0.3, -0.2, 0.5]]))}
    with torch.no_grad():
        out = model(batch)
        f_clip = model._embed(batch["clip"].flatten(0, 1), False)
        f_target = model._embed(batch["target"], False)
        n_patch = F.normalize(model._embed(batch["patch"], False), dim=1)
        skips, inliers = [], []
        for t in range(2):
            affinity, theta_out, crop = model._track(n_patch, F.normalize(f_clip[t:t + 1], dim=1), f_clip[t:t + 1])
            _, theta_back, _ = model._track(crop, F.normalize(f_target, dim=1), f_target)
            skips.append(grid_loss(theta_back, batch["theta"]))
            inliers.append(soft_inlier_score(affinity, theta_out, (21, 21)))
    assert (theta_out - theta_back).abs().max() > 0.01  # the two steps' transforms differ
    torch.testing.assert_close(out["skip"], torch.cat(skips).mean())
    torch.testing.assert_close(out["inlier"], torch.cat(inliers).mean())


def test_stt_reconstruction_upsamples_half_pixel_bilinear_and_scales_before_smooth_l1():
    """``stage{l}_l1_loss``: the channel sampled every 2 px (columns 0 and 1 of a 2 x 2 grid) is
    carried (identity correlation), resized 2 -> 4 bilinearly with half-pixel centres
    (F.interpolate's default, align_corners False): each row reads 0, 1/4, 3/4, 1. Then smooth-L1
    (beta 1) on values x 20: against itself 0; against 0, the mean of 0, 4.5, 14.5, 19.5."""
    ref = torch.zeros(1, 1, 4, 4)
    ref[..., 2] = 1.0  # sampled [::2, ::2]: columns 0 -> 0, 2 -> 1
    upsampled = torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(1, 1, 4, 4)
    identity = torch.eye(4)[None]
    exact = stt_ops.reconstruction_loss(identity, ref, upsampled, 2, (2, 2), 20.0)
    assert exact.item() == pytest.approx(0.0, abs=1e-12)
    got = stt_ops.reconstruction_loss(identity, ref, torch.zeros(1, 1, 4, 4), 2, (2, 2), 20.0)
    assert got.item() == pytest.approx((0 + 4.5 + 14.5 + 19.5) / 4)


# --------------------------------------------------------------------------- MoCo


def test_moco_training_step_uses_the_updated_key_encoder_and_the_queue_before_this_batch():
    """MoCo v2's step: first the key encoder follows the query encoder (k <- 0.999 k + 0.001 q,
    the default momentum), then the keys are encoded with it; the negatives are the queue as it
    was before this batch, whose keys are enqueued only after the loss. key_splits = 1: one batch
    norm group, so the keys do not depend on the shuffle."""
    torch.manual_seed(0)
    model = MoCo(MoCoConfig(arch="resnet18", queue_size=16, key_splits=1)).train()
    with torch.no_grad():
        for p in [*model.encoder.parameters(), *model.projector.parameters()]:
            p.add_(torch.randn_like(p) * 0.5)
    query_params = [p.clone() for p in [*model.encoder.parameters(), *model.projector.parameters()]]
    key_params = [p.clone() for p in [*model.key_encoder.parameters(), *model.key_projector.parameters()]]
    queue = model.queue.clone()
    g = torch.Generator().manual_seed(1)
    batch = {"query": torch.rand(4, 3, 64, 64, generator=g), "key": torch.rand(4, 3, 64, 64, generator=g)}
    out = model(batch)
    for q, k0, k in zip(query_params, key_params, [*model.key_encoder.parameters(), *model.key_projector.parameters()],
                        strict=True):
        torch.testing.assert_close(k, 0.999 * k0 + 0.001 * q)
    with torch.no_grad():  # train mode: batch statistics, as in the step
        q = model._embed(model.encoder, model.projector, batch["query"])
        k = model._embed(model.key_encoder, model.key_projector, batch["key"])
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], dim=1) / 0.2
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    torch.testing.assert_close(model.queue[:, :4], k.T)
    torch.testing.assert_close(model.queue[:, 4:], queue[:, 4:])


def test_stt_local_distillation_is_weighted_by_the_uncertainty_mask(monkeypatch):
    """The local MSE runs over the target rows `uncertainty_weights` keeps (T = 0.7 of them, from
    the stride-8 cost volume of radius 6): a mask that keeps none gives 0, one that keeps all the
    plain mean."""
    calls = []

    def keep(value: float):
        def weights(raw, grid, radius, fraction, threshold):
            calls.append((grid, radius, fraction, threshold))
            return torch.full(raw.shape[:2], value)
        return weights

    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(1, 3, 64, 64, generator=g), "target": torch.rand(1, 3, 64, 64, generator=g)}
    monkeypatch.setattr(stt_module.stt_ops, "uncertainty_weights", keep(0.0))
    torch.manual_seed(3)
    assert _stt(teacher=False).train()(batch)["local"].item() == 0.0
    assert calls == [((8, 8), 6, 0.7, "release")]
    monkeypatch.setattr(stt_module.stt_ops, "uncertainty_weights", keep(1.0))
    torch.manual_seed(3)
    assert _stt(teacher=False).train()(batch)["local"].item() > 0


def test_stt_correlates_target_rows_with_reference_columns_and_reconstructs_the_target(monkeypatch):
    """METHODS.md §4.4: c = softmax(tar^T ref) over reference positions carries the *reference*
    frame's dropped channel to the *target* and compares it with the target's. The model's inputs
    to both operations are checked against the backbone run again on each frame (eval mode: batch
    norm from running statistics, so a frame's features do not depend on the batch)."""
    seen = {"raw": [], "rec": []}
    raw_correlation, reconstruction_loss = stt_module.stt_ops.raw_correlation, stt_module.stt_ops.reconstruction_loss

    def record_raw(target, ref):
        seen["raw"].append((target, ref))
        return raw_correlation(target, ref)

    def record_rec(corr, ref_channel, target_channel, *args):
        seen["rec"].append((ref_channel, target_channel))
        return reconstruction_loss(corr, ref_channel, target_channel, *args)

    monkeypatch.setattr(stt_module.stt_ops, "raw_correlation", record_raw)
    monkeypatch.setattr(stt_module.stt_ops, "reconstruction_loss", record_rec)
    model = _stt(teacher=False).eval()
    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(1, 3, 64, 64, generator=g), "target": torch.rand(1, 3, 64, 64, generator=g) * 0.5}
    torch.manual_seed(5)
    with torch.no_grad():
        model(batch)
        torch.manual_seed(5)
        lab = {k: model.encoder.normalise(v) for k, v in batch.items()}
        dropped, channel = model.drop_channel(torch.cat([lab["ref"], lab["target"]]))
        ref_stages = model.encoder.backbone.forward_stages(dropped[:1])
        target_stages = model.encoder.backbone.forward_stages(dropped[1:])
    assert len(seen["raw"]) == len(seen["rec"]) == 2
    for (target, ref), layer in zip(seen["raw"], ("layer2", "layer3"), strict=True):
        torch.testing.assert_close(target, target_stages[layer])
        torch.testing.assert_close(ref, ref_stages[layer])
    for ref_channel, target_channel in seen["rec"]:
        torch.testing.assert_close(ref_channel, lab["ref"][:, channel : channel + 1])
        torch.testing.assert_close(target_channel, lab["target"][:, channel : channel + 1])


def test_uvc_global_concentration_measures_the_patch_in_unit_coordinates_of_the_frame():
    """The joint stage's Eq. 6 term: every patch cell's position in the frame (Eq. 3), its centre
    and the 2 x MAD bound, all mapped to the frame's [-1, 1] span per axis (a 6 x 8 frame:
    x / 3.5 - 1, y / 2.5 - 1); points outside the bound pay their distance, averaged over the patch."""
    model = _uvc()
    g = torch.Generator().manual_seed(6)
    f_ref = torch.randn(1, 8, 3, 3, generator=g)
    f_frame = torch.randn(1, 8, 6, 8, generator=g)
    losses, diagnostics = {}, {}
    model._localise(f_ref, f_frame, torch.zeros(1, 3, 6, 8), torch.zeros(1, 3, 48, 64), (24, 24), losses,
                    diagnostics, use_concentration=True)
    coords, centre, mad_half, _ = model._region(f_ref, f_frame)
    sx, sy = 2 / 7, 2 / 5
    cx, cy = centre[0, 0].item() * sx - 1, centre[0, 1].item() * sy - 1
    bx, by = mad_half[0, 0].item() * sx, mad_half[0, 1].item() * sy
    total = 0.0
    for i in range(9):
        dx, dy = coords[0, 0, i].item() * sx - 1 - cx, coords[0, 1, i].item() * sy - 1 - cy
        if abs(dx) > bx or abs(dy) > by:
            total += math.hypot(dx, dy)
    want = total / 9
    assert want > 0
    assert losses["concentration_global"].item() == pytest.approx(want, rel=1e-4)


# --------------------------------------------------------------------------- schedules


def test_schedules_stay_at_their_end_past_a_shorter_horizon():
    """decay_over shorter than the stage: the schedule reaches its end there and stays (poly at 0,
    cosine at min_lr_ratio x lr), for steps and for epochs (moving once per epoch)."""
    poly = StageConfig("s", steps=20, lr=1.0, schedule="poly", power=0.9, decay_over=10)
    assert learning_rate(poly, 5, 1) == pytest.approx(0.5**0.9)
    assert [learning_rate(poly, s, 1) for s in (10, 15, 19)] == [0.0, 0.0, 0.0]
    cosine = StageConfig("s", steps=20, lr=1.0, schedule="cosine", min_lr_ratio=0.01, decay_over=10)
    assert [learning_rate(cosine, s, 1) for s in (10, 15, 19)] == pytest.approx([0.01] * 3)
    by_epoch = StageConfig("s", epochs=6, lr=2.0, schedule="cosine", decay_over=4)
    assert learning_rate(by_epoch, 2 * 3 + 2, 3) == pytest.approx(1.0)  # epoch 2 of 4: half way
    assert learning_rate(by_epoch, 5 * 3 + 2, 3) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- optimiser step


def test_update_steps_at_the_given_rate_and_clips_the_global_norm():
    """`update`: the optimiser runs at the rate of this step (not the one it was built with), and
    with a clip the gradients' global norm (returned, before clipping) is scaled down to it.
    SGD without momentum on loss = 3 a + 4 b: gradient (3, 4), norm 5."""
    a, b = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([a, b], lr=1.0, momentum=0.0)
    assert update(3 * a + 4 * b, optimizer, 0.1, None) == {}
    torch.testing.assert_close(torch.stack([a, b]).detach(), torch.tensor([-0.3, -0.4]))
    out = update(3 * a + 4 * b, optimizer, 0.1, 1.0)  # clipped to norm 1: (0.6, 0.8)
    assert out["grad_norm"] == pytest.approx(5.0)
    torch.testing.assert_close(torch.stack([a, b]).detach(), torch.tensor([-0.36, -0.48]))


def test_build_optimizer_passes_the_recipe_s_settings():
    """Adam with the recipe's betas / eps / weight decay at the first stage's rate; SGD with its
    momentum (MoCo's spatial stage)."""
    base = load_recipe("uvc-cpu")
    p = [torch.nn.Parameter(torch.zeros(2))]
    adam = build_optimizer(p, dataclasses.replace(base, optim=OptimConfig(betas=(0.5, 0.9), eps=1e-6,
                                                                          weight_decay=0.01)))
    group = adam.param_groups[0]
    assert isinstance(adam, torch.optim.Adam)
    assert ((group["betas"], group["eps"], group["weight_decay"], group["lr"])
            == ((0.5, 0.9), 1e-6, 0.01, base.stages[0].lr))
    sgd = build_optimizer(p, dataclasses.replace(base, optim=OptimConfig(name="sgd", momentum=0.8, weight_decay=1e-4)))
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.param_groups[0]["momentum"], sgd.param_groups[0]["weight_decay"]) == (0.8, 1e-4)


def test_reduce_terms_averages_losses_but_sums_unreadable_draws_over_ranks(monkeypatch):
    """Two ranks (the all-reduce simulated: the other rank sends loss 3 and 1 skipped draw): loss
    terms are rank means, ``skipped_videos`` the total over ranks."""
    def all_reduce(values, op=None):
        values += torch.tensor([3.0, 1.0])

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    ctx = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    terms = reduce_terms({"loss": torch.tensor(1.0)}, torch.tensor(2), ctx)
    assert terms == {"loss": 2.0, "skipped_videos": 3.0}


def test_cycletime_tracking_step_returns_an_l2_normalised_crop():
    """Each tracking step crops the un-normalised frame features at theta and L2-normalises the
    crop over channels before it becomes the next query (METHODS.md §2: affinities of unit features)."""
    torch.manual_seed(0)
    model = CycleTime(ct_recipe("cycletime", arch="resnet18", frame_size=168, clip_length=2)).eval()
    g = torch.Generator().manual_seed(8)
    frame = torch.randn(1, 512, 21, 21, generator=g) * 3
    query = F.normalize(torch.randn(1, 512, 7, 7, generator=g), dim=1)
    with torch.no_grad():
        _, theta, crop = model._track(query, F.normalize(frame, dim=1), frame)
        raw = sample_patch(frame, theta, (7, 7), model.cfg.translation_scale)
    torch.testing.assert_close(crop.norm(dim=1), torch.ones(1, 7, 7))
    torch.testing.assert_close(crop, F.normalize(raw, dim=1))


def test_stt_teacher_sees_the_rgb_frames_reference_first():
    """The frozen teacher takes the RGB frames (it was trained on RGB by MoCo), reference then
    target, not the student's channel-dropped Lab input."""
    model = _stt(teacher=True)
    seen = []
    model.teacher.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(1, 3, 96, 96, generator=g), "target": torch.rand(1, 3, 96, 96, generator=g)}
    model.train()(batch)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], torch.cat([batch["ref"], batch["target"]]))
