"""Golden values for the box trackers' geometry, worked out by hand from the formulas in the
docstrings (`vidcorr.dcf`, `vidcorr.track`), not from the code's output.

The tracker tests (`test_tracking_track.py`) follow a translating square box, where an x/y swap, a
scale rule or a sub-pixel centre convention changes nothing; these pin each step on its own:
`start_box_state`'s limits, the DCF label's width, `DCFTracker.update` on responses chosen so that
the scale penalty, the cell -> pixel step and the window sizes each decide the answer, and
`LocaliseTracker` on scripted one-hot features (a non-square box, calibration, the damped scale
update, the template update), and `PatchSampler`'s unit-length cells.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import PatchEncoder

from vidcorr.dcf import DCFSettings, DCFTracker, locate_peak, start_box_state
from vidcorr.track import LocaliseSettings, LocaliseTracker, PatchSampler, draw_box


def test_start_box_state_by_hand():
    """Box (10, 20, 30, 8) on a 100 x 60 (W x H) frame. Centre of [10, 40) x [20, 28): (25, 24)
    (0-based continuous pixels: no half-pixel shift). Limits: min = max(0.2 x (30, 8), 4) = (6, 4);
    max = min((W, H), 5 x (30, 8)) = min((100, 60), (150, 40)) = (100, 40)."""
    frame = np.zeros((60, 100, 3), np.uint8)
    pos, size, frame_wh, min_size, max_size = start_box_state(frame, (10.0, 20.0, 30.0, 8.0), 0.2, 5.0)
    np.testing.assert_array_equal(pos, [25.0, 24.0])
    np.testing.assert_array_equal(size, [30.0, 8.0])
    np.testing.assert_array_equal(frame_wh, [100.0, 60.0])
    np.testing.assert_array_equal(min_size, [6.0, 4.0])
    np.testing.assert_array_equal(max_size, [100.0, 40.0])


def test_dcf_label_width_is_a_fraction_of_the_target_in_cells():
    """DCFNet: sigma = output_sigma_factor x sqrt(cells of the target), the target being the crop
    over (1 + padding) per axis. A 12 x 20 map with padding 2 and factor 0.1: sigma = 0.1 x
    sqrt(240) / 3; the label is exp(-d^2 / (2 sigma^2)) in circularly wrapped distances."""
    tracker = DCFTracker(_FakeSampler(), DCFSettings(output_sigma_factor=0.1, padding=2.0))
    tracker.filter.fit(torch.zeros(1, 2, 12, 20))
    sigma = 0.1 * math.sqrt(12 * 20) / 3
    dy = np.minimum(np.arange(12), 12 - np.arange(12))[:, None]
    dx = np.minimum(np.arange(20), 20 - np.arange(20))[None, :]
    label = np.exp(-(dy**2 + dx**2) / (2 * sigma**2))
    got = torch.fft.ifft2(tracker.filter.yf).real.numpy()
    np.testing.assert_allclose(got, label, atol=1e-6)


class _FakeSampler:
    """Records the windows it is asked to embed and returns blank features of the asked size."""

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def image(self, frame: np.ndarray) -> torch.Tensor:
        return torch.zeros(1)

    def features(self, image, centres, sizes, out_hw):
        self.windows.append(sizes.numpy().astype(np.float64))
        return torch.zeros(len(centres), 2, *out_hw)


def _tracker_with_responses(responses: torch.Tensor, settings: DCFSettings, box, frame_hw=(100, 200)):
    """A DCFTracker started on ``box`` whose filter answers ``responses`` (S, n, n) to every search and
    records the fits; -> (tracker, sampler, frame, fits [(window sizes, rate)])."""
    sampler = _FakeSampler()
    tracker = DCFTracker(sampler, settings)
    frame = np.zeros((*frame_hw, 3), np.uint8)
    tracker.init(frame, box)
    fits = []
    tracker.filter.respond = lambda feats: responses
    tracker.filter.fit = lambda feats, rate=1.0: fits.append((sampler.windows[-1], rate))
    return tracker, sampler, frame, fits


def _responses(n: int, peaks: list[tuple[int, int, float]]) -> torch.Tensor:
    """One n x n response per scale, zero but for one peak (iy, ix, value) each."""
    out = torch.zeros(len(peaks), n, n)
    for s, (iy, ix, value) in enumerate(peaks):
        out[s, iy, ix] = value
    return out


def test_dcf_update_keeps_the_scale_with_the_best_penalised_peak():
    """Box (10, 20, 32, 16): centre (26, 28). Scales 1.0275 ** (-1, 0, 1), penalties 0.9925 ** (1, 0, 1).
    Raw peaks 1.0 (smaller), 0.995 (same), 0.5 (larger): penalised 0.9925, 0.995, 0.49625, so the
    same scale wins although the smaller one's raw peak is higher. Its peak at index (2, 13) of 16
    cells is (dy, dx) = (2, -3) cells; the window is 3 x (32, 16) = (96, 48) px over 16 cells, so the
    centre moves by (-3 x 6, 2 x 3) = (-18, 6) -> (8, 34): box (-8, 26, 32, 16)."""
    settings = DCFSettings(input_size=16, subcell=False)
    responses = _responses(16, [(1, 1, 1.0), (2, 13, 0.995), (0, 0, 0.5)])
    tracker, sampler, frame, fits = _tracker_with_responses(responses, settings, (10, 20, 32, 16))
    np.testing.assert_allclose(sampler.windows[0], [[96.0, 48.0]])  # init: 3 x the box
    assert tracker.update(frame) == pytest.approx((-8.0, 26.0, 32.0, 16.0))
    step = 1.0275
    np.testing.assert_allclose(sampler.windows[1], [[96 / step, 48 / step], [96, 48], [96 * step, 48 * step]],
                               rtol=1e-6)
    # The model is refitted on the window around the new box, at the interpolation rate.
    (window, rate), = fits
    np.testing.assert_allclose(window, [[96.0, 48.0]])
    assert rate == 0.01


def test_dcf_update_takes_the_winning_scales_size_and_step():
    """The larger scale wins (peaks 0.5, 0.5, 1.0 at (dy, dx) = (0, 4) cells): size (32, 16) x 1.0275,
    and the step is measured in its window, 3 x 1.0275 x (32, 16) px over 16 cells: dx = 4 x 6.165 =
    24.66 px -> centre (50.66, 28); box = centre - size / 2."""
    settings = DCFSettings(input_size=16, subcell=False)
    responses = _responses(16, [(0, 0, 0.5), (0, 0, 0.5), (0, 4, 1.0)])
    tracker, _, frame, _ = _tracker_with_responses(responses, settings, (10, 20, 32, 16))
    w, h = 32 * 1.0275, 16 * 1.0275
    cx = 26 + 4 * 3 * w / 16
    assert tracker.update(frame) == pytest.approx((cx - w / 2, 28 - h / 2, w, h))


def test_dcf_update_keeps_the_centre_inside_the_frame():
    """Box (10, 82, 32, 16): centre (26, 90), window (96, 48) px over 16 cells. A peak at index (7, 9)
    is (dy, dx) = (7, -7) cells (index 9 > 16 / 2 wraps to -7): x 26 - 7 x 6 = -16 and y 90 + 7 x 3 =
    111 would leave the 200 x 100 frame; the centre stops at (0, 100) (ours; DCFNet lets it leave)."""
    settings = DCFSettings(input_size=16, subcell=False, num_scales=1)
    tracker, _, frame, _ = _tracker_with_responses(_responses(16, [(7, 9, 1.0)]), settings, (10, 82, 32, 16))
    assert tracker.update(frame) == pytest.approx((-16.0, 92.0, 32.0, 16.0))


# --------------------------------------------------------------------------- localisation tracker
# Box (10, 20, 96, 48), centre (58, 44). Template: sqrt(96 x 48) -> 64 px, i.e. x 0.9428: (90.5, 45.3)
# px, rounded to stride-8 multiples (88, 48): 11 x 6 cells. Search: 2 x that, (176, 96) px, 22 x 12
# cells, embedded from a window of (96, 48) x (176 / 88, 96 / 48) = (192, 96) frame px; one crop
# pixel is (96 / 88, 48 / 48) frame px. The fake encoder gives template cell (r, c) a one-hot code and
# puts the same code at a chosen search cell, so each cell lands exactly where it is put.
_BOX = (10.0, 20.0, 96.0, 48.0)


class _ScriptedSampler(PatchSampler):
    """A `PatchSampler` (stride-8 `PatchEncoder`, for the stride) whose embeddings follow a script:
    call i returns the template codes laid out by ``layouts[i]``: (r, c) -> (y, x) search cell, or
    None for the template itself. Records each window's size (x, y) in frame pixels."""

    def __init__(self, layouts):
        super().__init__(PatchEncoder(), l2_normalise=True)
        self.layouts, self.windows = list(layouts), []

    def features(self, image, centres, sizes, out_hw):
        self.windows.append(tuple(float(v) for v in sizes[0]))
        layout = self.layouts[len(self.windows) - 1]
        feats = torch.zeros(1, 66, out_hw[0] // 8, out_hw[1] // 8)
        for r in range(6):
            for c in range(11):
                y, x = (r, c) if layout is None else layout(r, c)
                feats[0, r * 11 + c, y, x] = 1.0
        return feats


def _block(ry: int, rx: int, x_spread: int = 1):
    """The template block with its top-left cell at search cell (ry, rx), columns ``x_spread`` apart."""
    return lambda r, c: (ry + r, rx + x_spread * c)


def _localise_tracker(layouts, **options):
    sampler = _ScriptedSampler(layouts)
    tracker = LocaliseTracker(sampler, LocaliseSettings(iterations=1, **options))
    frame = np.zeros((200, 300, 3), np.uint8)
    tracker.init(frame, _BOX)
    return tracker, sampler, frame


def test_localise_geometry_of_a_non_square_box_with_calibration():
    """Calibration: the first frame's block at cells x 5..15, y 3..8 -> mean cell (10, 5.5), centre
    ((10 + 0.5) x 8, (5.5 + 0.5) x 8) = (84, 48) crop px; the crop's middle is (88, 48), so the zero
    offset is (-4, 0). Next frame: block at x 7..17, y 2..7 -> centre (100, 40): shift (100 + 4 - 88,
    40 - 48) = (16, -8) crop px = (16 x 96 / 88, -8) frame px -> centre (75.4545, 36), box
    (27.4545, 12, 96, 48)."""
    tracker, sampler, frame = _localise_tracker([None, _block(3, 5), _block(2, 7)])
    assert (tracker.template_hw, tracker.search_hw) == ((48, 88), (96, 176))
    np.testing.assert_allclose(tracker.offset, [-4.0, 0.0], atol=1e-4)
    box = tracker.update(frame)
    assert box == pytest.approx((58 + 16 * 96 / 88 - 48, 12.0, 96.0, 48.0), abs=1e-3)
    assert sampler.windows == [(96.0, 48.0), (192.0, 96.0), (192.0, 96.0)]


def test_localise_without_calibration_measures_from_cell_centres():
    """No calibration: the centre is the mean cell + 0.5 (cell i spans crop px [8i, 8i + 8)). Block at
    x 7..17, y 2..7 -> (100, 40) crop px, shift (12, -8) -> (12 x 96 / 88, -8) frame px. topk=1 at
    temperature 1: only the matching cell counts (logit 1 against 0), so the landing is exact."""
    tracker, _, frame = _localise_tracker([None, _block(2, 7)], calibrate=False, topk=1, temperature=1.0)
    assert tracker.update(frame) == pytest.approx((58 + 12 * 96 / 88 - 48, 12.0, 96.0, 48.0), abs=1e-3)


def test_localise_scale_update_is_damped_and_clipped():
    """Calibrated on the block (ref half-size 2 x MAD: x 2 x 30 / 11 cells, y 2 x 1.5). Next frame the
    columns land 2 cells apart (x 0, 2, ... 20; y 3..8): centre (10.5 x 8, 6 x 8) = (84, 48), no shift;
    x half-size doubles -> ratio 2, clipped to 1.5, damped by scale_rate 0.5 -> x 1.25; y ratio 1.
    Size (120, 48) about (58, 44): box (-2, 20, 120, 48). With template_update 0.25 the template moves
    a quarter of the way to the new box's embedding (window (120, 48)), here the template turned
    half a turn."""
    tracker, sampler, frame = _localise_tracker(
        [None, _block(3, 5), _block(3, 0, x_spread=2), lambda r, c: (5 - r, 10 - c)],
        scale_rate=0.5, template_update=0.25)
    first = tracker.template.clone()
    assert tracker.update(frame) == pytest.approx((-2.0, 20.0, 120.0, 48.0), abs=1e-3)
    code = torch.arange(66)  # the new embedding: the template turned half a turn
    fresh = torch.zeros(1, 66, 66)
    fresh[0, code, 65 - code] = 1.0  # code r * 11 + c at cell (5 - r) * 11 + (10 - c)
    assert not torch.equal(fresh, first)
    torch.testing.assert_close(tracker.template, 0.75 * first + 0.25 * fresh)
    assert sampler.windows[-1] == (120.0, 48.0)


def test_localise_axis_with_no_calibrated_extent_keeps_its_size():
    """Calibration lands every template row on search row 3 (columns 5..15): the y half-size is 0,
    nothing to measure a y scale against; the zero offset is (84 - 88, (3 + 0.5) x 8 - 48) = (-4, -20).
    Next frame: columns 2 apart (x half-size doubles: ratio 2 -> 1.5 -> damped 1.25, width 120) and
    rows 3..8 (centre y 48, shift 48 + 20 - 48 = 20 px). The height stays 48 instead of growing by
    the clipped ratio (60): box (58 - 60, 44 + 20 - 24, 120, 48)."""
    tracker, _, frame = _localise_tracker(
        [None, lambda r, c: (3, 5 + c), _block(3, 0, x_spread=2)],
        scale_rate=0.5, topk=1, temperature=1.0)
    np.testing.assert_allclose(tracker.offset, [-4.0, -20.0], atol=1e-4)
    assert tracker.update(frame) == pytest.approx((-2.0, 40.0, 120.0, 48.0), abs=1e-3)


def test_patch_sampler_unit_length_cells_when_asked():
    """l2_normalise: every feature cell (the C values at one position) has length 1, the direction of
    the encoder's cell; without it the encoder's values are returned as they are. With an identity
    encoder the cells are the crop's RGB values: a 4 x 2 window at (3, 2) of this frame is the plain
    slice of pixels x 1..4, y 1..2 (see test_crop_geometry_is_exact_for_integer_windows)."""
    frame = (np.arange(6 * 8 * 3).reshape(6, 8, 3) % 251).astype(np.uint8)
    rgb = torch.tensor(frame[1:3, 1:5], dtype=torch.float32).permute(2, 0, 1) / 255  # (3, 2, 4)
    centre, size = torch.tensor([[3.0, 2.0]]), torch.tensor([[4.0, 2.0]])
    for l2, want in ((False, rgb), (True, rgb / rgb.norm(dim=0, keepdim=True))):
        sampler = PatchSampler(torch.nn.Identity(), l2_normalise=l2)
        got = sampler.features(sampler.image(frame), centre, size, (2, 4))
        torch.testing.assert_close(got[0], want)


def test_locate_peak_on_a_non_square_response():
    """A 5 x 8 response peaking at row 1, column 6: (dy, dx) = (1, 6 - 8) = (1, -2) (column 6 > 8 / 2
    wraps); the flat index 14 is row 14 // 8, not 14 // 5."""
    response = torch.zeros(5, 8)
    response[1, 6] = 1.0
    assert locate_peak(response, subcell=False) == (1, -2, 1.0)


def test_draw_box_keeps_a_thick_outline_inside_a_small_box():
    """Thickness 3 on a 2 x 2 box (x 4..5, y 3..4): the outline is clamped to the box, so exactly its
    4 pixels are coloured, none below or right of it."""
    out = draw_box(np.zeros((10, 12, 3), np.uint8), (4, 3, 2, 2), colour=(255, 0, 0), thickness=3)
    red = out[..., 0] == 255
    assert red[3:5, 4:6].all() and red.sum() == 4
