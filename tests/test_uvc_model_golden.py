"""Golden values for the UVC training model's forward pass (`vidcorr.methods.uvc`), written after a
mutation audit of it: each test fails on a plausible one-line change (frames swapped, temperature
dropped, a wrong box size or clamp, a detached crop, a wrong default) that the rest of the suite let
through. The grey encoder is replaced by a stub so the affinity is known; references are plain loops
over METHODS.md §1.4-1.6 (column softmax, transported colours, coords2bbox / center2bbox boxes, the
align_corners=True crop), never the library's own tensor code. The losses themselves
(`vidcorr.methods.uvc_losses`) have their own golden tests (test_losses_golden.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.methods import UVC, UVCConfig, recipe
from vidcorr.methods.uvc import check_sizes
from vidcorr.methods.uvc_losses import coordinate_cycle, local_concentration
from vidcorr.models import lab_to_uvc_normalised, rgb_to_lab

LAB_W = (1.0, 10.0, 10.0)


class _PoolAutoencoder(nn.Module):
    """Lab auto-encoder stand-in: features = 8 x 8 cell means, decoding repeats them over the cell."""

    def encode(self, lab_n: Tensor) -> Tensor:
        return F.avg_pool2d(lab_n, 8)

    def decode(self, feats: Tensor) -> Tensor:
        return F.interpolate(feats, scale_factor=8, mode="nearest")


class _PoolEncoder(nn.Module):
    """Grey-encoder stand-in at stride 8: 3 x the RGB cell means (raw features, as UVC's)."""

    def forward(self, x: Tensor) -> Tensor:
        return 3.0 * F.avg_pool2d(x, 8)


class _IdEncoder(nn.Module):
    """Stride-8 stand-in whose feature is a one-hot code of the cell's red level (id = 64 R), x 10:
    a cell's logit is 100 against its own id and 0 against any other, a one-hot softmax."""

    def forward(self, x: Tensor) -> Tensor:
        ids = (F.avg_pool2d(x[:, :1], 8) * 64).round().long().squeeze(1)
        return 10.0 * F.one_hot(ids, 65).permute(0, 3, 1, 2).float()


def _model(cfg: UVCConfig, encoder: nn.Module) -> UVC:
    torch.manual_seed(0)
    model = UVC(cfg, _PoolAutoencoder())
    model.encoder = encoder
    return model


def _lab(rgb: Tensor) -> Tensor:
    return lab_to_uvc_normalised(rgb_to_lab(rgb))


def _cells(x: Tensor) -> list[list[list[float]]]:
    """(C, 8h, 8w) -> per channel, per row-major cell: its 8 x 8 mean, as Python floats."""
    c, h8, w8 = x.shape
    h, w = h8 // 8, w8 // 8
    return [[x[k, 8 * (i // w):8 * (i // w) + 8, 8 * (i % w):8 * (i % w) + 8].mean().item() for i in range(h * w)]
            for k in range(c)]


def _flat(f: Tensor) -> list[list[float]]:
    """(C, h, w) -> per channel, the row-major values."""
    return [f[k].reshape(-1).tolist() for k in range(f.shape[0])]


def _weighted_l1_cells(pred: list[list[float]], gt: Tensor) -> float:
    """Per-cell constant prediction (channel, cell) against a (3, 8h, 8w) image: sum_c w_c mean|d|."""
    _, h8, w8 = gt.shape
    w = w8 // 8
    total = 0.0
    for c in range(3):
        err = 0.0
        for y in range(h8):
            for x in range(w8):
                err += abs(pred[c][(y // 8) * w + x // 8] - gt[c, y, x].item())
        total += LAB_W[c] * err / (h8 * w8)
    return total


def _naive_matching(f1: Tensor, f2: Tensor, e1: Tensor, e2: Tensor, lab1: Tensor, lab2: Tensor,
                    tau: float) -> tuple[float, float, list]:
    """One sample of METHODS.md §1.6 by loops: S = f1^T f2 / tau, A = softmax over reference pixels,
    recon = D(E(I1) A) vs I2, switch = D(E(I2) A^T) vs I1 -> (recon, switch, S). f: (C, h, w) grey
    features, e: (3, h, w) colour features (cell means), lab: (3, 8h, 8w)."""
    a, b = _flat(f1), _flat(f2)
    n1, n2 = len(a[0]), len(b[0])
    s = [[sum(a[c][i] * b[c][j] for c in range(len(a))) / tau for j in range(n2)] for i in range(n1)]
    cols = []
    for j in range(n2):
        top = max(s[i][j] for i in range(n1))
        e = [math.exp(s[i][j] - top) for i in range(n1)]
        cols.append([v / sum(e) for v in e])  # cols[j][i] = A[i, j]
    c1, c2 = _flat(e1), _flat(e2)
    recon = [[sum(c1[c][i] * cols[j][i] for i in range(n1)) for j in range(n2)] for c in range(3)]
    back = [[sum(c2[c][j] * cols[j][i] for j in range(n2)) for i in range(n1)] for c in range(3)]
    return _weighted_l1_cells(recon, lab2), _weighted_l1_cells(back, lab1), s


def _cell_means(lab: Tensor) -> Tensor:
    """(3, 8h, 8w) -> (3, h, w) by an explicit loop over the cells."""
    return torch.tensor(_cells(lab)).view(3, lab.shape[1] // 8, lab.shape[2] // 8)


def test_warmup_losses_match_a_loop_over_the_column_softmax_with_the_temperature():
    """Warm-up (two crops): the reference's colours are carried to the target by A = softmax(f1^T f2 / tau,
    over reference pixels) and compared with the *target's* Lab, the switch term the other way; the
    truncation keeps a sample whose recon + 0.1 switch is <= 2.5; the coordinate cycle and the local
    concentration see the same logits; total = colour + 0.1 (switch + coords) + 0.3 local, batch means.
    Non-square 2 x 3 cell crops so that a transposed affinity cannot pass."""
    tau = 2.0
    model = _model(recipe("uvc-cpu", temperature=tau), _PoolEncoder())
    g = torch.Generator().manual_seed(3)
    ref, target = torch.rand(2, 3, 16, 24, generator=g), torch.rand(2, 3, 16, 24, generator=g)
    ref[0], target[0] = 0.4 + 0.2 * ref[0], 0.4 + 0.2 * target[0]  # muted colours: a small loss, kept
    out = model({"ref": ref, "target": target}, "warmup", use_truncation=True)
    recon, switch, keep, scores = [], [], [], []
    for k in range(2):
        lab1, lab2 = _lab(ref[k:k + 1])[0], _lab(target[k:k + 1])[0]
        f1, f2 = 3 * _cell_means(ref[k]), 3 * _cell_means(target[k])
        r, sw, s = _naive_matching(f1, f2, _cell_means(lab1), _cell_means(lab2), lab1, lab2, tau)
        recon.append(r)
        switch.append(sw)
        keep.append(1.0 if r + 0.1 * sw <= 2.5 else 0.0)
        scores.append(s)
    assert 0 < sum(keep) < 2  # one sample kept, one dropped: the data exercises the truncation
    s = torch.tensor(scores)
    want = {"colour": sum(r * k for r, k in zip(recon, keep)) / 2,
            "orthogonal": sum(sw * k for sw, k in zip(switch, keep)) / 2,
            "orthogonal_coords": coordinate_cycle(s, (2, 3), (2, 3)).mean().item(),
            "concentration_local": local_concentration(s, (2, 3), (2, 3)).mean().item()}
    for name, value in want.items():
        assert out[name].item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
    total = want["colour"] + 0.1 * (want["orthogonal"] + want["orthogonal_coords"]) + 0.3 * want["concentration_local"]
    assert out["loss"].item() == pytest.approx(total, rel=1e-4)
    assert out["truncated"].item() == pytest.approx(1 - sum(keep) / 2)


# --------------------------------------------------------------------------- joint stage

# A 6 x 8 cell frame (48 x 64 px) of distinct flat cells, and a 2 x 2 cell patch whose cells are
# copies of frame cells (x, y) = (1, 1), (5, 1), (1, 4), (5, 4): with `_IdEncoder` every patch cell
# lands exactly on its copy.
_SPOTS = [(1, 1), (5, 1), (1, 4), (5, 4)]


def _patch_frame(spots: list[tuple[int, int]] = _SPOTS, patch_hw: tuple[int, int] = (2, 2)) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(7)
    cells = torch.rand(1, 3, 6, 8, generator=g) * 0.6 + 0.2
    cells[:, 0] = (torch.arange(48, dtype=torch.float32).view(6, 8) + 1) / 64  # the id of every cell
    patch = torch.stack([cells[0, :, y, x] for x, y in spots], 1).view(1, 3, *patch_hw)
    return {"ref": _upsample(patch), "target": _upsample(cells)}


def _upsample(cells: Tensor) -> Tensor:
    """Flat 8 x 8 pixel cells: the stand-in encoders read back exactly their cell's values."""
    return cells.repeat_interleave(8, 2).repeat_interleave(8, 3)


def _naive_crop(image: Tensor, box: tuple[float, float, float, float], out_hw: tuple[int, int]) -> Tensor:
    """METHODS.md §1.5 item 6 (align_corners=True, border): output pixel k samples the input at pixel
    centre index lo + (k + 0.5) (hi - lo) / out - 0.5 on each axis, bilinearly. image (C, H, W)."""
    _, height, width = image.shape
    x1, y1, x2, y2 = box
    out = torch.zeros(image.shape[0], *out_hw, dtype=torch.float64)

    def taps(lo: float, hi: float, k: int, n: int, size: int) -> list[tuple[int, float]]:
        u = min(max(lo + (k + 0.5) * (hi - lo) / n - 0.5, 0.0), size - 1.0)
        i = min(int(math.floor(u)), size - 2) if size > 1 else 0
        t = u - i
        return [(i, 1 - t), (min(i + 1, size - 1), t)]

    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for iy, wy in taps(y1, y2, oy, out_hw[0], height):
                for ix, wx in taps(x1, x2, ox, out_hw[1], width):
                    out[:, oy, ox] += wy * wx * image[:, iy, ix].double()
    return out.float()


def test_joint_stage_crops_the_eq4_box_of_the_transported_cells_and_matches_inside_it():
    """Joint stage, paper box (coords2bbox): the patch cells land on x = 1, 5, 1, 5 and y = 1, 1, 4, 4,
    centre (3, 2.5), half-size 2 x MAD = (4, 3); in pixel-edge coordinates the box is centre + 0.5 +- half,
    clamped to the 8 x 6 frame: (0, 0, 7.5, 6), box_size 6.75. The frame's grey and colour features and
    its Lab image (box x 8) are resampled in that box to the patch size, then matched as in the warm-up."""
    model = _model(recipe("uvc-cpu"), _IdEncoder())
    batch = _patch_frame()
    out = model(batch, "joint", use_concentration=False, use_truncation=False)
    assert {"concentration_local", "concentration_global"}.isdisjoint(out)  # the switch drops both terms
    assert out["box_size"].item() == pytest.approx(6.75)
    box = (0.0, 0.0, 7.5, 6.0)
    lab_ref, lab_frame = _lab(batch["ref"])[0], _lab(batch["target"])[0]
    f_crop = _naive_crop(_IdEncoder()(batch["target"])[0], box, (2, 2))
    e_crop = _naive_crop(_cell_means(lab_frame), box, (2, 2))
    lab_crop = _naive_crop(lab_frame, tuple(8 * v for v in box), (16, 16))
    recon, switch, _ = _naive_matching(_IdEncoder()(batch["ref"])[0], f_crop, _cell_means(lab_ref), e_crop,
                                       lab_ref, lab_crop, 1.0)
    assert out["colour"].item() == pytest.approx(recon, rel=1e-4)
    assert out["orthogonal"].item() == pytest.approx(switch, rel=1e-4)


def test_released_fixed_box_is_the_patch_size_in_feature_cells_at_the_localised_centre():
    """center2bbox (recipe uvc-official): half-size = half the patch's feature width / height whatever
    the spread. Same centre (3, 2.5) -> box (2.5, 2, 4.5, 4), box_size 2. A 2 x 3 (h x w) patch gets a
    3 x 2 (w x h) box: half (1.5, 1)."""
    model = _model(recipe("uvc-official", out_layer="layer3"), _IdEncoder())
    out = model(_patch_frame(), "joint")
    assert out["box_size"].item() == pytest.approx(2.0)
    spots = [(1, 1), (3, 1), (5, 1), (1, 4), (3, 4), (5, 4)]  # centre (3, 2.5)
    batch = _patch_frame(spots, (2, 3))
    _, centre, _, box = model._region(_IdEncoder()(batch["ref"]), _IdEncoder()(batch["target"]))
    torch.testing.assert_close(centre, torch.tensor([[3.0, 2.5]]))
    torch.testing.assert_close(box, torch.tensor([[2.0, 2.0, 5.0, 4.0]]))


def test_a_box_past_the_frame_is_clamped_to_the_frame_not_to_the_patch():
    """coords2bbox clamps right / bottom to the *frame's* feature size (8 x 6 here), not the patch's:
    cells x = 5, 7, 5, 7 and y = 4, 4, 5, 5 give centre (6, 4.5), half (2, 1), edges 4.5..8.5 -> 8 and 4..6."""
    model = _model(recipe("uvc-cpu"), _IdEncoder())
    batch = _patch_frame([(5, 4), (7, 4), (5, 5), (7, 5)])
    _, centre, mad_half, box = model._region(_IdEncoder()(batch["ref"]), _IdEncoder()(batch["target"]))
    torch.testing.assert_close(mad_half, torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(box, torch.tensor([[4.5, 4.0, 8.0, 6.0]]))


def test_localisation_transports_frame_coordinates_by_the_row_softmax_with_the_temperature():
    """METHODS.md §1.5 items 2-5: P = softmax(f1^T f2 / tau, over *frame* pixels), l_i = sum_j P_ij g_j
    (feature-cell centres, x then y), C = mean_i l_i, half-size = 2 mean_i |l_i - C|. Loop reference,
    tau = 2.5, a 2 x 2 patch in a 3 x 4 frame."""
    tau = 2.5
    model = _model(recipe("uvc-cpu", temperature=tau), _PoolEncoder())
    g = torch.Generator().manual_seed(5)
    f_ref, f_frame = torch.randn(1, 4, 2, 2, generator=g), torch.randn(1, 4, 3, 4, generator=g)
    coords, centre, mad_half, _ = model._region(f_ref, f_frame)
    a, b = _flat(f_ref[0]), _flat(f_frame[0])
    want = []
    for i in range(4):
        row = [sum(a[c][i] * b[c][j] for c in range(4)) / tau for j in range(12)]
        e = [math.exp(v - max(row)) for v in row]
        p = [v / sum(e) for v in e]
        want.append((sum(p[j] * (j % 4) for j in range(12)), sum(p[j] * (j // 4) for j in range(12))))
    torch.testing.assert_close(coords[0].T, torch.tensor(want), rtol=1e-5, atol=1e-5)
    c = [sum(w[k] for w in want) / 4 for k in range(2)]
    torch.testing.assert_close(centre[0], torch.tensor(c), rtol=1e-5, atol=1e-5)
    half = [2 * sum(abs(w[k] - c[k]) for w in want) / 4 for k in range(2)]
    torch.testing.assert_close(mad_half[0], torch.tensor(half), rtol=1e-5, atol=1e-5)


def test_a_patch_collapsed_onto_one_cell_gets_a_one_cell_box():
    """Every patch cell lands on frame cell (2, 3): MAD 0, and the box keeps half a cell each side of
    the cell's centre (region_box's floor), i.e. exactly that cell's edges (2, 3, 3, 4), not a point."""
    model = _model(recipe("uvc-cpu"), _IdEncoder())
    batch = _patch_frame([(2, 3)] * 4)
    _, _, mad_half, box = model._region(_IdEncoder()(batch["ref"]), _IdEncoder()(batch["target"]))
    torch.testing.assert_close(mad_half, torch.zeros(1, 2))
    torch.testing.assert_close(box, torch.tensor([[2.0, 3.0, 3.0, 4.0]]))


def test_global_concentration_is_the_batch_mean_of_eq6_over_the_patch_cells():
    """Two samples with 3 x 3 patches on the 8 x 6 frame. Sample 0: eight cells at x = 0 and one at
    x = 7 (C_x = 7/9, 2 x MAD = 2 x 112/81 < 7 - 7/9): that cell is outside the Eq. 4 box and pays its
    distance to the centre in the frame's unit coordinates (x / 3.5 - 1, y / 2.5 - 1), /9 cells. Sample 1:
    a 3 x 3 block, all inside. The term is the mean over the batch, not the sum."""
    model = _model(recipe("uvc-cpu"), _IdEncoder())
    far = [(0, y) for y in range(6)] + [(0, 0), (0, 1), (7, 2)]
    block = [(x, y) for y in range(1, 4) for x in range(2, 5)]
    samples = [_patch_frame(far, (3, 3)), _patch_frame(block, (3, 3))]
    batch = {k: torch.cat([b[k] for b in samples]) for k in ("ref", "target")}
    out = model(batch, "joint", use_truncation=False)
    per_sample = []
    for spots in (far, block):
        cx, cy = sum(x for x, _ in spots) / 9, sum(y for _, y in spots) / 9
        hx, hy = 2 * sum(abs(x - cx) for x, _ in spots) / 9, 2 * sum(abs(y - cy) for _, y in spots) / 9
        cost = sum(math.hypot((x - cx) / 3.5, (y - cy) / 2.5) for x, y in spots if abs(x - cx) > hx or abs(y - cy) > hy)
        per_sample.append(cost / 9)
    assert per_sample[0] > 0 and per_sample[1] == 0
    assert out["concentration_global"].item() == pytest.approx(sum(per_sample) / 2, rel=1e-4)


def test_visualise_outlines_the_box_in_pixels_of_the_frame():
    """The joint image's middle panel outlines the localised box scaled from feature cells to pixels
    (8 a cell): all patch cells on frame cell (2, 3) -> box (2, 3, 3, 4) cells = pixels x 16..23, y 24..31."""
    model = _model(recipe("uvc-cpu"), _IdEncoder()).eval()
    batch = _patch_frame([(2, 3)] * 4)
    with torch.no_grad():
        [image] = model.visualise(batch).values()
    frame = image[0, :, :, 64:128]
    ys, xs = torch.nonzero((frame - batch["target"][0]).abs().amax(dim=0) > 1 / 255, as_tuple=True)
    assert (xs.min().item(), xs.max().item(), ys.min().item(), ys.max().item()) == (16, 23, 24, 31)


def test_check_sizes_accepts_a_patch_as_large_as_the_frame():
    """The joint patch must fit in the frame: crop == frame is allowed, crop > frame is refused."""
    check_sizes(UVCConfig(), SimpleNamespace(crop=64, frame=64, batch_size=2), ["warmup", "joint"])
    with pytest.raises(ValueError, match="larger than frame"):
        check_sizes(UVCConfig(), SimpleNamespace(crop=72, frame=64, batch_size=2), ["warmup", "joint"])


@pytest.mark.parametrize("which", [0, 1, 2])
def test_every_crop_moves_the_box(which):
    """METHODS.md §1.5 item 7: one box crops the grey features, the colour features and the Lab ground
    truth, none detached: a loss on any one of the three crops reaches the affinity through the box
    centre (Eq. 3), i.e. gives the patch features a gradient."""
    model = _model(recipe("uvc-cpu"), _PoolEncoder())
    g = torch.Generator().manual_seed(11)
    f_ref = (0.3 * torch.randn(1, 4, 2, 2, generator=g)).requires_grad_()
    f_frame = 0.3 * torch.randn(1, 4, 8, 8, generator=g)
    e_frame = torch.randn(1, 3, 8, 8, generator=g)
    lab_frame = torch.randn(1, 3, 64, 64, generator=g)
    crops = model._localise(f_ref, f_frame, e_frame, lab_frame, (16, 16), {}, {}, use_concentration=False)
    weights = torch.randn(crops[which].shape, generator=g)
    (crops[which] * weights).sum().backward()
    assert f_ref.grad is not None and f_ref.grad.abs().sum() > 1e-6


# --------------------------------------------------------------------------- config


def test_defaults_are_the_paper_s_values():
    """METHODS.md §1.2-1.8: ResNet-18 layer4 at tau = 1, 2.5 truncation, Lab L1 weights (1, 10, 10),
    0.1 on the cycle terms, 0.3 on concentration, Eq. 4 box."""
    cfg = UVCConfig()
    assert (cfg.arch, cfg.out_layer, cfg.temperature, cfg.box) == ("resnet18", "layer4", 1.0, "mad")
    assert (cfg.colour_truncation, cfg.lab_weights) == (2.5, (1.0, 10.0, 10.0))
    assert (cfg.orthogonal_weight, cfg.concentration_weight) == (0.1, 0.3)
    official = recipe("uvc-official")
    assert (official.orthogonal_weight, official.concentration_weight, official.temperature) == (0.1, 0.3, 1.0)


def test_switches_off_drop_their_dependent_terms():
    """orthogonal=False also drops the coordinate cycle; concentration=False both concentration terms,
    whatever their own flags; temperature must be positive."""
    cfg = UVCConfig(orthogonal=False, orthogonal_coords=True, concentration=False)
    assert not cfg.uses_coordinate_cycle and not cfg.uses_local_concentration and not cfg.uses_global_concentration
    with pytest.raises(ValueError, match="temperature"):
        UVCConfig(temperature=0.0)
