"""Golden tests of the label-propagation front end: `vidcorr.api` (propagate_keypoints, track_box, weights
names), `vidcorr.keypoints` (heatmap scale, first-frame bounds), `vidcorr.soft_labels`, `vidcorr.labels`,
`vidcorr.correspond` and `vidcorr.patches`, for the rules that the codec and PCK golden cases
(test_task_metrics_golden.py) and the propagation golden loop leave open. Each expected value is derived
here from the protocol's rule (cells of >= 2 frame pixels, pixel centres at integers, the weights' sums,
METHODS.md §1.9 / §3.4 / §5 / §6.2) or a hand-designed input, not read off the code under test."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from synthetic import PatchEncoder
from test_propagate import _texture_video
from torch import nn

import vidcorr
from vidcorr.correspond import match_frames
from vidcorr.errors import InputError, WeightsError
from vidcorr.keypoints import KeypointSet, check_first_keypoints
from vidcorr.labels import one_hot_labels
from vidcorr.patches import rigid_theta, sample_patch
from vidcorr.presets import customised_preset
from vidcorr.propagate import Propagator
from vidcorr.soft_labels import check_first_labels, labels_overlay, value_bounds


class PixelCodes(nn.Module):
    """A fixed random 8-d code per input pixel: stride 1, the feature grid is the input itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.randn(8, *x.shape[-2:], generator=torch.Generator().manual_seed(0))
        return codes.expand(x.shape[0], -1, -1, -1)


class CellCodes(nn.Module):
    """A fixed random 16-d code per 8 x 8 cell (stride 8): every cell matches only itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = -(-x.shape[-2] // 8), -(-x.shape[-1] // 8)
        codes = torch.randn(16, h, w, generator=torch.Generator().manual_seed(0))
        return codes.expand(x.shape[0], -1, -1, -1)


# --------------------------------------------------------------------------- heatmap scale


def test_the_suggested_size_is_the_largest_whose_cells_span_two_pixels():
    """A stride-1 module under crw (native size) gives one cell per pixel of the 60 x 40 frames: too fine.
    Cells of >= 2 pixels need 2 * (input short side) <= 40, so the largest size is 20 (size 20: a 30 x 20
    grid on 60 x 40 frames, exactly 2 px per cell; size 21: 32 x 21, finer than half)."""
    frames = [np.full((40, 60, 3), 90, np.uint8)] * 2
    points = np.array([[20.0, 15.0]])
    with pytest.raises(InputError, match=r"60x40 frames to 60x40 feature cells.*--size 20 \(size= from Python\)"):
        vidcorr.propagate_keypoints(frames, points, encoder=PixelCodes(), preset="crw")
    with pytest.raises(InputError, match="--size 20 "):
        vidcorr.propagate_keypoints(frames, points, encoder=PixelCodes(), preset="crw", size=21)
    out = list(vidcorr.propagate_keypoints(frames, points, encoder=PixelCodes(), preset="crw", size=20))
    assert len(out) == 2 and out[1][2].tolist() == [True]


def test_one_side_too_fine_is_refused_with_a_size_too():
    """timecycle's square 320 input gives 40 x 40 cells: 400 px wide frames have 10 px cells, but 48 px tall
    ones 1.2 px cells, finer than half the frame on that side alone. That is the user's InputError naming a
    size, as when both sides are too fine, not the codec's ValueError. (Sizes up to 192 give cells of 2 px
    on the 48 px side; the message caps its suggestion at the frame's short side, 48.)"""
    frames = [np.full((48, 400, 3), 90, np.uint8)] * 2
    points = np.array([[200.0, 20.0]])
    with pytest.raises(InputError, match=r"400x48 frames to 40x40 feature cells.*--size 48 "):
        vidcorr.propagate_keypoints(frames, points, encoder=CellCodes(), preset="timecycle")


# --------------------------------------------------------------------------- first-frame keypoints


def test_first_keypoints_must_lie_on_a_non_square_frame():
    """Pixel centres at integers: a 40 x 20 frame spans x in -0.5 .. 39.5 and y in -0.5 .. 19.5 (the square
    10 x 10 golden case cannot tell the two sides apart)."""
    def kps(x: float, y: float) -> KeypointSet:
        return KeypointSet(np.array([[x, y]]), np.array([True]), ["wrist"], [])

    for x, y in [(39.5, 19.5), (-0.5, -0.5), (39.4, 0.0), (0.0, 19.4)]:
        check_first_keypoints(kps(x, y), (20, 40))
    for x, y in [(39.6, 10.0), (10.0, 19.6), (10.0, 30.0), (-0.6, 10.0), (10.0, -0.6)]:
        with pytest.raises(InputError, match=rf"keypoint 0 \(wrist\) at \({x:g}, {y:g}\) lies outside the 40x20"):
            check_first_keypoints(kps(x, y), (20, 40))


# --------------------------------------------------------------------------- correspondences (vidcorr.correspond)


def test_matches_between_frames_of_different_sizes_are_in_each_frames_own_pixels():
    """Frame B is frame A's columns 16..79 (two whole 8 px cells cut off on the left, two on the right):
    a 8 x 8 grid against A's 12 x 8. Each A cell in columns 2..9 has an identical patch in B two cells to
    the left; its match is that cell, in B's pixels (cell centre (c + 0.5) * 8 - 0.5), and leads back to
    itself. grid_a and input_a describe A, not B."""
    a = _texture_video(n_frames=1, step=8)[0][0]
    b = np.ascontiguousarray(a[:, 16:80])
    m = match_frames(Propagator(PatchEncoder(), customised_preset("crw")), a, b, step=1)
    assert (m.grid_a, m.input_a) == ((8, 12), (64, 96))
    rows, cols = np.divmod(np.arange(8 * 12), 12)  # row-major query order
    np.testing.assert_allclose(m.points_a, np.stack([cols * 8 + 3.5, rows * 8 + 3.5], axis=1))
    inside = (cols >= 2) & (cols <= 9)
    want_b = np.stack([(cols - 2) * 8 + 3.5, rows * 8 + 3.5], axis=1)
    np.testing.assert_allclose(m.points_b[inside], want_b[inside])
    np.testing.assert_allclose(m.similarity[inside], 1.0, atol=1e-5)  # identical L2-normalised codes
    assert m.mutual[inside].all()


def test_match_step_must_be_at_least_one():
    frame = np.zeros((16, 16, 3), np.uint8)
    for step in (0, -1):
        with pytest.raises(ValueError, match=f"step must be >= 1, got {step}"):
            match_frames(Propagator(CellCodes(), customised_preset("crw")), frame, frame, step=step)


class DesignedCodes(nn.Module):
    """3 x 3 grids of designed codes: frame A (dark) cell k has e_k; frame B (bright) cell k has e_k too,
    but B cell 0 is 0.6 e_0 + 0.8 e_4 and B cell 2 is 0.6 e_2 + 0.8 e_8 (unit vectors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.eye(9).view(9, 3, 3).clone()  # channel k is 1 at cell k (row-major)
        if x.mean() > 0.5:
            codes[:, 0, 0] = 0.6 * torch.eye(9)[0] + 0.8 * torch.eye(9)[4]
            codes[:, 0, 2] = 0.6 * torch.eye(9)[2] + 0.8 * torch.eye(9)[8]
        return codes.expand(x.shape[0], -1, -1, -1)


def test_a_match_is_mutual_when_it_leads_back_within_one_cell_diagonals_included():
    """A cell 0's best match is B cell 0 (0.6 against 0), whose best match back is A cell 4 = (1, 1): one
    cell away diagonally, mutual. A cell 2's best is B cell 2, which leads back to A cell 8 = (2, 2), two
    rows away: not mutual. Every other cell matches its twin and back."""
    dark, bright = np.zeros((24, 24, 3), np.uint8), np.full((24, 24, 3), 255, np.uint8)
    m = match_frames(Propagator(DesignedCodes(), customised_preset("crw")), dark, bright, step=1)
    np.testing.assert_allclose(m.points_b, m.points_a)  # every A cell's best B cell is its twin
    np.testing.assert_allclose(m.similarity, [0.6, 1, 0.6, 1, 1, 1, 1, 1, 1], atol=1e-6)
    assert m.mutual.tolist() == [True, True, False, True, True, True, True, True, True]


def test_a_mask_selects_the_cells_whose_centre_pixel_is_in_it():
    """timecycle at size 64 squeezes a 100 x 20 frame into 8 x 8 cells of 12.5 x 2.5 pixels: cell (r, c) is
    centred at x = 12.5 c + 5.75, y = 2.5 r + 0.75, on the pixel that holds that point: x = 6, 18, 31, ...,
    y = 1, 3, 6, ... A mask of those columns (every row) selects all 64 cells; of the column of cell 0 alone
    (x = 6), its 8 cells."""
    frame = np.zeros((20, 100, 3), np.uint8)
    prop = Propagator(CellCodes(), customised_preset("timecycle", size=64))
    centres_x = [int(np.floor(12.5 * c + 5.75 + 0.5)) for c in range(8)]  # the pixel holding each centre
    mask = np.zeros((20, 100), np.uint8)
    mask[:, centres_x] = 1
    m = match_frames(prop, frame, frame, step=1, mask_a=mask)
    assert len(m) == 64 and m.grid_a == (8, 8)
    first = np.zeros((20, 100), np.uint8)
    first[:, 6] = 1
    m = match_frames(prop, frame, frame, step=1, mask_a=first)
    np.testing.assert_allclose(m.points_a, [[5.75, 2.5 * r + 0.75] for r in range(8)])


# --------------------------------------------------------------------------- the API's codec


class OneHotCells(nn.Module):
    """Stride 8, 64 channels: cell k (row-major) is 10 e_(k mod 64), so under uvc's raw dot product and full
    softmax (temperature 1) each cell of a grid of <= 64 cells gives all its weight (1 - e^-100) to itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = -(-x.shape[-2] // 8), -(-x.shape[-1] // 8)
        codes = 10 * torch.eye(64)[:, torch.arange(h * w) % 64].view(64, h, w)
        return codes.expand(x.shape[0], -1, -1, -1)


def _naive_cell_round_trip(points: np.ndarray, frame_hw: tuple[int, int], grid_hw: tuple[int, int], topk: int,
                           minmax: bool) -> np.ndarray:
    """Gaussians of sigma 0.5 cell around u = (x + 0.5) w / W - 0.5 on the grid (cut beyond 3 sigma), each
    channel min-max normalised or not, then the top-k values' weighted mean of (column, row), back to pixels
    by (u + 0.5) W / w - 0.5 (METHODS.md §1.9 UVC: top-5 after min-max; §3.4 CRW: top-3)."""
    (H, W), (h, w) = frame_hw, grid_hw
    rows, cols = np.mgrid[0:h, 0:w]
    out = []
    for x, y in points:
        u, v = (x + 0.5) * w / W - 0.5, (y + 0.5) * h / H - 0.5
        d2 = (cols - u) ** 2 + (rows - v) ** 2
        g = np.where(d2 <= 2.25, np.exp(-d2 / 0.5), 0.0).ravel()
        if minmax:
            g = (g - g.min()) / (g.max() - g.min())
        top = np.argsort(-g, kind="stable")[:topk]
        cu, cv = (g[top] * cols.ravel()[top]).sum() / g[top].sum(), (g[top] * rows.ravel()[top]).sum() / g[top].sum()
        out.append([(cu + 0.5) * W / w - 0.5, (cv + 0.5) * H / h - 0.5])
    return np.array(out)


def test_the_api_decodes_with_the_codec_of_the_preset_it_is_given():
    """preset="uvc" reads keypoints back as UVC's jhmdb code does (min-max, top-5), not with the default
    preset's CRW codec (top-3): on a still video whose cells match only themselves the propagated maps are
    the first frame's, so every later frame decodes to UVC's round trip of the given points."""
    frames = [np.full((48, 64, 3), 90, np.uint8)] * 3
    points = np.array([[21.0, 14.0], [40.3, 30.6]])  # off the cell centres (and no tied cells): top-3, top-5 differ
    uvc = _naive_cell_round_trip(points, (48, 64), (6, 8), topk=5, minmax=True)
    crw = _naive_cell_round_trip(points, (48, 64), (6, 8), topk=3, minmax=False)
    assert np.abs(uvc - crw).max() > 0.5  # the two protocols' readings are pixels apart
    out = list(vidcorr.propagate_keypoints(frames, points, encoder=OneHotCells(), preset="uvc", size=48))
    np.testing.assert_array_equal(out[0][1], points)
    for _, coords, visible in out[1:]:
        assert visible.all()
        np.testing.assert_allclose(coords, uvc, atol=1e-3)


# --------------------------------------------------------------------------- other API arguments


def test_a_coarse_grid_is_warned_of_when_the_first_frame_is_yielded(caplog):
    """The warning comes with frame 0 (the propagator has embedded it): a one-frame video gets it too, and
    a caller reading only the first frame sees it. propagate_keypoints gave none from Python (the command
    line's --keypoints did)."""
    frames, masks = _texture_video(n_frames=2)  # 96 x 64: size=16 gives 3 x 2 cells
    for video in (frames[:1], frames):
        for call in (lambda: vidcorr.propagate_masks(video, masks[0], encoder=PatchEncoder(), size=16),
                     lambda: vidcorr.propagate_keypoints(video, [[40.0, 30.0]], encoder=PatchEncoder(), size=16)):
            caplog.clear()
            stream = call()
            next(stream)
            assert sum("the feature grid is only 3x2 cells" in r.getMessage() for r in caplog.records) == 1
            stream.close()


@pytest.mark.parametrize("name", ["torch.run-2:final", "vidcorr.2024:best"])
def test_a_missing_weights_name_whose_module_path_is_no_identifier_is_not_a_factory_spec(tmp_path, monkeypatch, name):
    """package.module:factory needs every dotted part to be an identifier: "torch.run-2:final" names no
    module even though torch is importable, so it is a missing weights file, not an --encoder spec."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="weights file does not exist") as caught:
        vidcorr.encoder_for("crw", weights=name)
    assert "MODULE:FACTORY" not in str(caught.value)


# --------------------------------------------------------------------------- soft labels (vidcorr.soft_labels)


def test_first_labels_of_any_number_type_become_float32_channels():
    """(H, W) one map or (K, H, W), bool / int / float64: float32 (K, H, W) with the same values."""
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    ramp = np.linspace(-2, 3, 24).reshape(4, 6)  # float64
    for given, want in [(mask, mask[None].astype(np.float32)),
                        (np.stack([mask, ~mask]).astype(np.int64) * 7, np.stack([mask, ~mask]) * np.float32(7)),
                        (ramp, ramp[None].astype(np.float32))]:
        got = check_first_labels(given, (4, 6))
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_one_label_channel_is_shown_as_a_red_tint_scaled_by_the_value_range():
    """labels_overlay, one channel: strength s = (value - low) / (high - low) clipped to [0, 1]; red becomes
    r (1 - 0.6 s) + 255 * 0.6 s, green and blue g (1 - 0.6 s). No range (high == low): no tint. Several
    channels: the argmax drawn as a mask (channel 0 the background, left untinted)."""
    frame = np.zeros((1, 5, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 100, 50, 200
    values = np.array([[[1.0, 2.0, 4.0, 6.0, 9.0]]])  # range (2, 6): s = 0, 0, 0.5, 1, 1
    s = np.array([0.0, 0.0, 0.5, 1.0, 1.0])
    want = np.stack([100 * (1 - 0.6 * s) + 153 * s, 50 * (1 - 0.6 * s), 200 * (1 - 0.6 * s)], axis=-1)[None]
    np.testing.assert_array_equal(labels_overlay(frame, values, (2.0, 6.0)), want.astype(np.uint8))
    np.testing.assert_array_equal(labels_overlay(frame, values, (3.0, 3.0)), frame)
    background = np.stack([np.ones((1, 5)), np.zeros((1, 5))])  # two channels, channel 0 everywhere
    np.testing.assert_array_equal(labels_overlay(frame, background, (0.0, 1.0)), frame)


def test_more_than_256_label_channels_are_each_tinted_and_outlined_apart():
    """The argmax was cast to uint8: channel 256 was drawn untinted, as the background, and beside channel 1
    with no outline. Channel k > 255 takes the DAVIS palette's colour 1 + (k - 1) % 255: 256 -> 1 (128, 0, 0),
    299 -> 44 (64, 0, 192, by the PASCAL bit interleave); a half tint inside, a full-brightness outline where
    two channels meet (on the side of the later one, as overlay_mask's erosion puts it)."""
    frame = np.zeros((8, 12, 3), np.uint8)
    frame[...] = (100, 60, 40)
    labels = np.zeros((300, 8, 12), np.float32)
    labels[256, :, :6], labels[1, :, 6:] = 1.0, 1.0
    out = labels_overlay(frame, labels, (0.0, 1.0)).astype(int)
    half_red = [(100 + 128) // 2, 60 // 2, 40 // 2]
    assert (out[:, :5] == half_red).all() and (out[:, 6:] == half_red).all()
    assert (out[:, 5] == [255, 0, 0]).all()  # the outline between channels 256 and 1
    labels[:] = 0.0
    labels[299] = 1.0
    want = np.broadcast_to(np.array([82, 30, 116], np.uint8), frame.shape)  # (100, 60, 40) half-way to (64, 0, 192)
    np.testing.assert_array_equal(labels_overlay(frame, labels, (0.0, 1.0)), want)


def test_a_bad_value_of_the_localise_trackers_own_temperature_is_its_error_not_a_propagation_refusal():
    """temperature is both a propagation knob and a localise setting: a bad value there is the tracker's
    range error, not "temperature is a propagation setting and does not apply to tracking"."""
    frames = [np.zeros((32, 32, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="temperature must be positive, got -1") as caught:
        vidcorr.track_box(frames, (4, 4, 16, 16), tracker="localise", encoder=CellCodes(), temperature=-1)
    assert not isinstance(caught.value, InputError)
    with pytest.raises(ValueError, match=r"unknown localise setting\(s\) \['sizes'\]"):
        vidcorr.track_box(frames, (4, 4, 16, 16), tracker="localise", encoder=CellCodes(), temperature=0.1, sizes=3)


@pytest.mark.parametrize("points", [[10.0, 12.0], [[[10.0, 12.0]]], [[10.0, 12.0, 1.0]]])
def test_keypoints_given_as_an_array_must_be_j_by_2(points):
    """One bare [x, y] pair, a (1, 1, 2) nest or COCO's [x, y, v] rows are refused by shape at the call."""
    frames = [np.zeros((32, 32, 3), np.uint8)] * 2
    shape = np.asarray(points).shape
    with pytest.raises(ValueError, match=re.escape(f"keypoints has shape {shape}; expected (J, 2) x, y pixels")):
        vidcorr.propagate_keypoints(frames, points, encoder=CellCodes())


# --------------------------------------------------------------------------- label helpers (vidcorr.labels)


def test_labels_a_pixel_off_half_the_frames_size_are_told_to_resize():
    """33 x 48 labels for 64 x 96 frames: the frames' picture at half size within a pixel's rounding
    (|33 * 96 - 48 * 64| = 96 <= the largest side, 96), so the message says how to resize them; 40 x 48 is
    another picture and gets no such advice."""
    with pytest.raises(InputError, match=r"are 48x33 but frames are 96x64; they have the frames' shape at 0.5x "
                                         r"their size: resize them"):
        check_first_labels(np.zeros((1, 33, 48)), (64, 96))
    with pytest.raises(InputError, match=r"are 48x40 but frames are 96x64$"):
        check_first_labels(np.zeros((1, 40, 48)), (64, 96))


def test_one_hot_refuses_an_id_equal_to_the_number_of_classes():
    """Ids 0 .. K - 1 fit K classes: id K is the caller's ValueError naming it, not a torch error."""
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    assert one_hot_labels(ids, 3).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="label id 3 does not fit in 3 classes"):
        one_hot_labels(ids + (ids == 2), 3)


def test_propagated_label_bounds_follow_each_presets_weights():
    """Per channel, the range a propagated value can take (each a weighted sum of context values):
    crw's softmax over the top-k sums to 1 (the first frame's range); uvc's top-k of a softmax sums to
    less (0 joins the range); timecycle also min-max normalises context frames ([0, 1] joins); a joint
    top-k of per-frame softmaxes sums to up to the number of context frames (only the sign is bounded)."""
    labels = np.stack([np.full((2, 3), 0.2), np.full((2, 3), 0.7), np.full((2, 3), -0.5)]).astype(np.float32)
    labels[:, 0, 0] = [0.4, 0.9, -0.1]  # per-channel ranges: [0.2, 0.4], [0.7, 0.9], [-0.5, -0.1]
    inf = np.inf
    for preset, low, high in [
        ("crw", [0.2, 0.7, -0.5], [0.4, 0.9, -0.1]),
        ("stt", [0.2, 0.7, -0.5], [0.4, 0.9, -0.1]),
        ("uvc", [0, 0, -0.5], [0.4, 0.9, 0]),
        ("timecycle", [0, 0, -0.5], [1, 1, 1]),
        (customised_preset("crw", normalisation="softmax_topk"), [0, 0, -inf], [inf, inf, 0]),
    ]:
        got_low, got_high = value_bounds(customised_preset(preset), labels)
        np.testing.assert_allclose(got_low.ravel(), low, rtol=1e-6, err_msg=str(preset))
        np.testing.assert_allclose(got_high.ravel(), high, rtol=1e-6, err_msg=str(preset))


# --------------------------------------------------------------------------- CycleTime patches (vidcorr.patches)


def test_a_patch_reads_zeros_beyond_the_map():
    """sample_patch's grid (align_corners=True) maps x in [-1, 1] onto pixel centres 0 .. W - 1. A patch at
    tx = 1 (scale 1/3) over a 5 x 5 map of ones samples x = 2/3, 1, 4/3, i.e. pixels 10/3, 4 and 14/3: the last
    is two thirds of the way from pixel 4 to a pixel past the edge, which reads 0 (the official grid_sample's
    zero padding): 1/3."""
    theta = rigid_theta(torch.tensor([[1.0, 0.0, 0.0]]))
    got = sample_patch(torch.ones(1, 1, 5, 5), theta, (3, 3))[0, 0]
    torch.testing.assert_close(got, torch.tensor([[1.0, 1.0, 1 / 3]] * 3))
