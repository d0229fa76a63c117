"""Golden values for the tracking results layer (`vidcorr.evaluate.tracking_results`: OTB success /
precision, VOT baseline accuracy, their files and tables), the polygon geometry under VOT overlaps
(`vidcorr.metrics.polygon`), the DCF tracker's steps (`vidcorr.dcf`) and the overlays (`vidcorr.viz`,
`vidcorr.viz_keypoints`), worked out by hand from the OTB / VOT protocols and the module docstrings,
not from the code's output.

Each test pins a rule that a hand-made mutant of those modules broke without a failing test (the
touch tolerance that scales with the coordinates, the 21 / 51 thresholds, the frame's (W, H) bounding a
region, the table's sums, the response's per-axis cell size, the overlay's alpha, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidcorr.correspond import Matches
from vidcorr.dcf import CorrelationFilter, DCFSettings, DCFTracker, cosine_window
from vidcorr.errors import InputError
from vidcorr.evaluate.tracking_results import (
    format_results_table,
    score_result_file,
    score_tracking,
    score_trajectory_file,
    write_tracking_results,
)
from vidcorr.metrics.polygon import polygon_simple
from vidcorr.metrics.tracking import PRECISION_KEY
from vidcorr.metrics.vot import UnscorableRegion, region_overlap
from vidcorr.viz import caption, caption_size, draw_matches, full_brightness, overlay_mask
from vidcorr.viz_keypoints import JOINT_COLOURS, draw_skeleton

from test_tracking_golden import _FakeSampler  # blank features; records each window size
from tracking_helpers import blank_otb_sequence
from vot_helpers import _square


def _turns(corners: list[float]):
    """Every starting corner and both directions of one outline: the rules must not depend on either."""
    p = np.asarray(corners, np.float64).reshape(-1, 2)
    for shift in range(len(p)):
        yield np.roll(p, shift, axis=0)
        yield np.roll(p, shift, axis=0)[::-1]


# --------------------------------------------------------------------------- polygon geometry


def test_touch_tolerance_grows_with_the_coordinates():
    """TOUCH_TOLERANCE is relative to the largest coordinate: at x, y ~ 5000 a corner 1e-10 px from a
    non-adjacent edge is within 1e-12 x 5010 = 5e-9 px, a touch (refused); 1e-4 px (a file's
    resolution) is a miss (scored). An absolute 1e-12 px called the first a miss too."""
    touching = [5000, 5000, 5010, 5000, 5010, 5010, 5005, 5000 + 1e-10, 5000, 5010]
    apart = [5000, 5000, 5010, 5000, 5010, 5010, 5005, 5000 + 1e-4, 5000, 5010]
    for corners in _turns(touching):
        assert not polygon_simple(corners)
    with pytest.raises(UnscorableRegion, match="crosses or touches itself"):
        region_overlap(np.ravel(touching), _square(5000, 5000, 10), (6000, 6000))
    for corners in _turns(apart):
        assert polygon_simple(corners)


def test_a_closing_corner_within_rounding_of_the_first_is_that_corner():
    """The 10 x 10 square written with its first corner repeated at the end, 1e-13 px off (rounding,
    within 1e-12 x 10): the last corner is dropped as the first's repeat, so the outline is the square
    (simple, IoU 1 with itself), not a square whose closing edge touches the first edge."""
    closed = [0, 0, 10, 0, 10, 10, 0, 10, 1e-13, 0]
    for corners in _turns(closed):
        assert polygon_simple(corners)
    assert region_overlap(np.ravel(closed), _square(0, 0, 10), (100, 100)) == pytest.approx(1.0)


def test_a_sliver_within_the_tolerance_of_a_line_is_a_degenerate_outline():
    """Corners (0, 0), (10, 0), (5, 5e-12): the third lies 5e-12 px off the line through the other two
    (distance = |cross| / length = 5e-11 / 10), within 1e-12 x 10 px: all on one line, simple and
    scored as area 0, not refused as an edge folded back. (|cross| alone, 5e-11, is not a distance.)"""
    sliver = [0, 0, 10, 0, 5, 5e-12]
    for corners in _turns(sliver):
        assert polygon_simple(corners)
    assert region_overlap(np.ravel(sliver), _square(0, 0, 10), (100, 100)) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- OTB: scores, files, table
# Walk: gt (10, 10, 20, 20) 0-based in all 4 frames (written 1-based, as OTB files are); predictions
# x = 10, 20, 30, 40, same y, w, h. IoU: 1, 200 / 600 = 1/3, 0 (edges touch), 0. Centre errors: 0, 10,
# 20, 30 px. Success (IoU > t, t = 0, 0.05, ..., 1): 0.5 for t <= 0.3 (7 thresholds), 0.25 for
# 0.35 <= t <= 0.95 (13), 0 at t = 1; AUC = (7 x 0.5 + 13 x 0.25) / 21 = 6.75 / 21. Precision
# (error <= t px, t = 0..50): 1/4 below 10, 2/4 below 20, 3/4 below 30, then 1: precision@20px = 3/4.
# Jump: predictions equal to the ground truth: success 1 for t < 1 and 0 at t = 1 (AUC 20 / 21).
_GT = (10.0, 10.0, 20.0, 20.0)
_WALK_X = (10.0, 20.0, 30.0, 40.0)
_WALK_SUCCESS = [0.5] * 7 + [0.25] * 13 + [0.0]
_WALK_PRECISION = [0.25] * 10 + [0.5] * 10 + [0.75] * 10 + [1.0] * 21


def _one_based(boxes) -> str:
    return "".join(f"{x + 1:g},{y + 1:g},{w:g},{h:g}\n" for x, y, w, h in boxes)


def _otb_tree(tmp_path: Path) -> tuple[Path, Path]:
    """An OTB root with Jump and Walk (4 blank 80 x 60 frames each, gt `_GT`) and a results folder
    holding Walk's boxes (x = `_WALK_X`) and Jump's perfect ones, 1-based as OTB results files are."""
    root, results = tmp_path / "otb", tmp_path / "results"
    results.mkdir()
    for name in ("Jump", "Walk"):
        blank_otb_sequence(root, name, 4, (80, 60), _one_based([_GT] * 4))
    (results / "Walk.txt").write_text(_one_based([(x, *_GT[1:]) for x in _WALK_X]))
    (results / "Jump.txt").write_text(_one_based([_GT] * 4))
    return root, results


def test_ope_scores_of_saved_boxes_by_hand(tmp_path: Path) -> None:
    """success over 21 thresholds 0..1 (IoU > t), precision over 51 thresholds 0..50 px (error <= t),
    precision@20px, and both averaged over sequences, from boxes read as 1-based."""
    root, results = _otb_tree(tmp_path)
    scored = score_tracking(root, results, benchmark="otb")
    walk, jump = scored["per_sequence"]["Walk"], scored["per_sequence"]["Jump"]
    np.testing.assert_allclose(walk["success_curve"], _WALK_SUCCESS)
    np.testing.assert_allclose(walk["precision_curve"], _WALK_PRECISION)
    assert walk["success_auc"] == pytest.approx(6.75 / 21) and walk[PRECISION_KEY] == 0.75
    assert walk["average_overlap"] == pytest.approx((1 + 1 / 3) / 4) and walk["frames"] == 4
    assert jump["success_auc"] == pytest.approx(20 / 21) and jump[PRECISION_KEY] == 1.0
    assert scored["success_auc"] == pytest.approx((6.75 / 21 + 20 / 21) / 2)
    assert scored[PRECISION_KEY] == pytest.approx((0.75 + 1.0) / 2)
    assert scored["overlap_thresholds"] == pytest.approx([i / 20 for i in range(21)])
    assert scored["error_thresholds_px"] == list(range(51))


def test_ope_max_frames_scores_the_first_frames_only(tmp_path: Path) -> None:
    """With max_frames 2 the files of an `eval --max-frames 2` run (2 lines) are scored against the
    first 2 ground-truth lines: Walk's IoUs 1 and 1/3, success 1 up to t = 0.3, 0.5 after, 0 at 1."""
    root, results = _otb_tree(tmp_path)
    for name in ("Walk", "Jump"):
        path = results / f"{name}.txt"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    walk = score_tracking(root, results, benchmark="otb", max_frames=2)["per_sequence"]["Walk"]
    assert walk["frames"] == 2
    np.testing.assert_allclose(walk["success_curve"], [1.0] * 7 + [0.5] * 13 + [0.0])
    with pytest.raises(ValueError, match="max_frames must be at least 2, got 1"):  # the first box and one more
        score_tracking(root, results, benchmark="otb", max_frames=1)
    with pytest.raises(ValueError, match="vot-baseline protocol needs VOT sequences"):
        score_tracking(root, results, benchmark="otb", protocol="vot-baseline")


def test_results_table_counts_frames_and_notes_only_frames_without_ground_truth(tmp_path: Path) -> None:
    """The average row's frames are the sum over sequences (8), not their count; the OTB note on
    frames without a valid box appears only for a sequence that has some."""
    root, results = _otb_tree(tmp_path)
    scored = score_tracking(root, results, benchmark="otb")
    lines = format_results_table(scored).splitlines()
    assert lines[-1].split() == ["average", "8", f"{(6.75 / 21 + 20 / 21) / 2:.4f}", "0.8750"]
    assert lines[2].split() == ["Walk", "4", f"{6.75 / 21:.4f}", "0.7500"] and len(lines) == 4
    scored["per_sequence"]["Walk"]["invalid_gt_frames"] = 2
    assert format_results_table(scored).splitlines()[-1].startswith("note: Walk: 2 frame(s) without a valid")


def test_results_json_and_its_plot_are_named_after_the_json(tmp_path: Path) -> None:
    """Beside a results.json: success_plot.png; beside any other name: <name>.success_plot.png
    (score's score.json), so a score never overwrites eval's plot; baseline results: eao_curve."""
    root, results = _otb_tree(tmp_path)
    scored = score_tracking(root, results, benchmark="otb")
    out = tmp_path / "out"
    out.mkdir()
    assert write_tracking_results(scored, out / "results.json") == out / "success_plot.png"
    assert write_tracking_results(scored, out / "score.json") == out / "score.success_plot.png"
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "score.json", "score.success_plot.png",
                                                     "success_plot.png"]
    assert json.loads((out / "score.json").read_text())["success_auc"] == pytest.approx(scored["success_auc"])


def test_an_empty_results_folder_names_the_first_missing_file_only(tmp_path: Path) -> None:
    """No predictions at all is not a partial run: the error names the first sequence's file, with no
    --sequences advice (which would list no sequence)."""
    root, results = _otb_tree(tmp_path)
    for path in results.iterdir():
        path.unlink()
    with pytest.raises(InputError) as error:
        score_tracking(root, results, benchmark="otb")
    assert error.value.path == results / "Jump.txt" and "--sequences" not in str(error.value)


# Line-count mismatches of a predictions file against a 4-line annotation: what is wrong and the fix.
@pytest.mark.parametrize("found, max_frames, message", [
    (3, None, "3 boxes but 4 ground-truth lines in A; line 4 is missing (from `eval --max-frames N`? "
              "score them with --max-frames N)"),
    (5, None, "5 boxes but 4 ground-truth lines in A; line 5 has no ground truth"),
    (4, 3, "4 boxes but --max-frames 3 scores the first 3 frames of A; score it without --max-frames"),
    (5, 3, "5 boxes but --max-frames 3 scores the first 3 frames of A, which has 4 lines"),
    (2, 3, "2 boxes but --max-frames 3 scores the first 3 frames of A; score it with --max-frames 2"),
    (1, 3, "1 boxes but --max-frames 3 scores the first 3 frames of A"),  # 1 frame: no --max-frames fits
    # --max-frames beyond the sequence scores all 4 frames: the plain count is the problem
    (3, 10, "3 boxes but 4 ground-truth lines in A; line 4 is missing (from"),
])
def test_a_predictions_file_of_the_wrong_length_says_which_line_and_what_fixes_it(
        tmp_path: Path, found: int, max_frames: int | None, message: str) -> None:
    path = tmp_path / "Walk.txt"
    path.write_text(_one_based([_GT] * found))
    with pytest.raises(InputError) as error:
        score_result_file(path, np.array([_GT] * 4), Path("A"), max_frames)
    assert error.value.path == path and error.value.problem.startswith(message), error.value.problem
    if found == 1:
        assert error.value.problem == message


# --------------------------------------------------------------------------- VOT baseline
# "wide": 12 frames of 120 x 40 (W x H), ground truth the box (60, 10, 40, 20) in every frame. The
# trajectory starts (code 1) and tracks frames 1-11; frames 10 and 11 (after the 10-frame burn-in)
# predict (60, 10, 80, 20), which the image bounds to x 60..120: overlap 800 / (60 x 20) = 2/3
# (unbounded it would be 1/2; bounded by a 40-wide image the ground truth would vanish: 0).


def _vot_tree(tmp_path: Path) -> tuple[Path, Path]:
    root, results = tmp_path / "vot", tmp_path / "results"
    (root / "wide").mkdir(parents=True)
    for i in range(12):
        Image.new("RGB", (120, 40)).save(root / "wide" / f"{i + 1:08d}.jpg")
    (root / "wide" / "groundtruth.txt").write_text("60,10,40,20\n" * 12)
    lines = ["1"] + ["60,10,40,20"] * 9 + ["60,10,80,20"] * 2
    trajectory = results / "baseline" / "wide" / "wide_001.txt"  # the VOT toolkit's name for run 1
    trajectory.parent.mkdir(parents=True)
    trajectory.write_text("".join(f"{line}\n" for line in lines))
    return root, results


def test_baseline_accuracy_bounds_regions_to_the_frame_width_and_height(tmp_path: Path) -> None:
    root, results = _vot_tree(tmp_path)
    scored = score_tracking(root, results, benchmark="vot", protocol="vot-baseline")
    wide = scored["per_sequence"]["wide"]
    assert wide["accuracy"] == pytest.approx(2 / 3) and wide["scored_frames"] == 2 and wide["failures"] == 0
    assert scored["eao_interval"] == [108, 371] and scored["eao_interval_name"] == "vot2015"
    # eval --max-frames 11: 11 lines, scored against the first 11 ground-truth lines (frame 10 only)
    trajectory = results / "baseline" / "wide" / "wide_001.txt"
    trajectory.write_text("".join(trajectory.read_text().splitlines(keepends=True)[:11]))
    cut = score_tracking(root, results, benchmark="vot", protocol="vot-baseline", max_frames=11)
    assert cut["per_sequence"]["wide"]["scored_frames"] == 1 and cut["accuracy"] == pytest.approx(2 / 3)
    out = tmp_path / "out"
    out.mkdir()
    assert write_tracking_results(cut, out / "results.json") == out / "eao_curve.png"


def test_a_trajectory_error_names_the_file_and_its_1_based_line(tmp_path: Path) -> None:
    root, results = _vot_tree(tmp_path)
    trajectory = results / "baseline" / "wide" / "wide_001.txt"
    lines = trajectory.read_text().splitlines()
    lines[2] = "0,0,10,10,10,0,0,10"  # a bow tie on line 3 (frame 2)
    trajectory.write_text("".join(f"{line}\n" for line in lines))
    polygons = np.array([[60, 10, 100, 10, 100, 30, 60, 30]] * 12, np.float64)
    with pytest.raises(InputError, match=r"line 3: the predicted polygon crosses or touches itself") as error:
        score_trajectory_file(trajectory, polygons, (120, 40), Path("gt.txt"))
    assert error.value.path == trajectory
    missing = results / "baseline" / "other" / "other_001.txt"
    with pytest.raises(InputError, match=r"trajectory not found \(VOT toolkit layout"):
        score_trajectory_file(missing, polygons, (120, 40), Path("gt.txt"))


def _baseline_results(curve_length: int) -> dict:
    """Hand-made vot-baseline results of two sequences with 1 and 2 failures, EAO over 3..6."""
    seqs = {"a": {"frames": 20, "scored_frames": 8, "accuracy": 0.5, "failures": 1},
            "b": {"frames": 30, "scored_frames": 12, "accuracy": 0.75, "failures": 2}}
    return {"protocol_name": "vot-baseline", "per_sequence": seqs, "accuracy": 0.625, "accuracy_pooled": 0.65,
            "robustness": 1.5, "failures": 3, "eao": 0.4, "eao_interval": [3, 6], "eao_interval_name": None,
            "eao_curve": [1.0] * curve_length}


def test_baseline_table_shows_robustness_per_sequence_and_where_the_curve_ends() -> None:
    """The average row's failure column is the robustness (mean failures per sequence, 1.50), not
    their sum; the EAO line says where the curve ends only when it ends before the interval does."""
    full = format_results_table(_baseline_results(7)).splitlines()  # lengths 0..6: reaches 6
    assert full[-2].split() == ["average", "50", "20", "0.6250", "1.50"]
    assert full[-1].endswith("EAO 0.4000 over lengths 3-6 (given interval)")
    short = format_results_table(_baseline_results(6)).splitlines()[-1]  # lengths 0..5
    assert "EAO 0.4000 (the curve ends at 5) over lengths 3-6" in short


# --------------------------------------------------------------------------- DCF tracker steps
# (`tests/test_tracking_golden.py` pins the label width and the scale choice on square responses.)


def _scripted_dcf(responses: torch.Tensor, settings: DCFSettings, box) -> tuple[DCFTracker, list, np.ndarray]:
    """A DCFTracker started on ``box`` in a 200 x 100 frame whose filter answers ``responses`` (S, h, w)
    to every search; -> (tracker, the refits' (window sizes, rate), frame)."""
    sampler = _FakeSampler()
    tracker = DCFTracker(sampler, settings)
    frame = np.zeros((100, 200, 3), np.uint8)
    tracker.init(frame, box)
    refits: list = []
    tracker.filter.respond = lambda feats: responses
    tracker.filter.fit = lambda feats, rate=1.0: refits.append((sampler.windows[-1], rate))
    return tracker, refits, frame


def test_dcf_step_uses_each_axis_own_cell_count():
    """A 16 x 8 (h x w) response peaking at row 2, column 1: (dy, dx) = (2, 1) cells. The window is
    3 x (32, 16) = (96, 48) px (x, y), so a column is 96 / 8 = 12 px and a row 48 / 16 = 3 px: the
    centre (26, 28) moves by (12, 6) to (38, 34), box (22, 26, 32, 16)."""
    response = torch.zeros(1, 16, 8)
    response[0, 2, 1] = 1.0
    tracker, _, frame = _scripted_dcf(response, DCFSettings(num_scales=1, subcell=False), (10, 20, 32, 16))
    assert tracker.update(frame) == pytest.approx((22.0, 26.0, 32.0, 16.0))


def test_dcf_size_is_clamped_and_the_model_refits_on_the_clamped_box():
    """max_scale_factor 1: sizes stay at most the first box (32, 16). The larger scale wins (peak at
    (0, 0), no move), its size 1.0275 x (32, 16) is clamped back to (32, 16), and the model is refitted
    on the window around that box: 3 x (32, 16) = (96, 48) px, at the interpolation rate."""
    responses = torch.zeros(3, 16, 16)
    responses[:, 0, 0] = torch.tensor([0.5, 0.5, 1.0])
    settings = DCFSettings(input_size=16, subcell=False, max_scale_factor=1.0)
    tracker, refits, frame = _scripted_dcf(responses, settings, (10, 20, 32, 16))
    assert tracker.update(frame) == pytest.approx((10.0, 20.0, 32.0, 16.0))
    (window, rate), = refits
    np.testing.assert_allclose(window, [[96.0, 48.0]])
    assert rate == settings.interp_factor


def test_dcf_filter_refits_on_features_of_a_new_size():
    """The cosine window and the label follow the features' size: a filter fitted on 8 x 8 features
    and then on 6 x 10 ones equals one fitted on the 6 x 10 features alone."""
    g = torch.Generator().manual_seed(3)
    small, other = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 3, 6, 10, generator=g)
    reused = CorrelationFilter(lam=1e-4, sigma_factor=0.1, padding=2.0)
    reused.fit(small)
    reused.fit(other)
    fresh = CorrelationFilter(lam=1e-4, sigma_factor=0.1, padding=2.0)
    fresh.fit(other)
    torch.testing.assert_close(reused.alphaf, fresh.alphaf)
    torch.testing.assert_close(reused.window, cosine_window((6, 10)))
    with pytest.raises(RuntimeError, match="fit the filter on a template"):  # not a NoneType error
        CorrelationFilter(lam=1e-4, sigma_factor=0.1, padding=2.0).respond(other)


def test_dcf_settings_accept_their_documented_bounds():
    """padding 0 (the window is the box), interp_factor 1 (replace the model every frame) and
    min_scale_factor = max_scale_factor (a fixed size) lie inside the documented ranges; just outside
    them is refused."""
    DCFSettings(padding=0.0, interp_factor=1.0, min_scale_factor=1.0, max_scale_factor=1.0)
    for bad in ({"padding": -0.5}, {"interp_factor": 1.01}, {"min_scale_factor": 1.1, "max_scale_factor": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DCFSettings(**bad)


def test_a_ground_truth_bounded_to_the_image_border_overlaps_nothing():
    """The box x 120..140 on a 120-wide frame (annotated, area 400) bounded to the image is the segment
    x = 120: area 0, so any prediction overlaps it 0. With a non-convex prediction (an L) that segment
    was clipped against it and, not being a convex polygon either, refused the whole trajectory as
    "both non-convex"."""
    gt = np.array([120, 10, 140, 10, 140, 30, 120, 30], np.float64)
    ell = np.array([100, 10, 119, 10, 119, 20, 110, 20, 110, 30, 100, 30], np.float64)
    assert region_overlap(ell, gt, (120, 40)) == 0.0
    assert region_overlap(ell, gt + [5, 0] * 4, (120, 40)) == 0.0  # wholly outside: bounded to nothing


# --------------------------------------------------------------------------- overlays and pictures


def test_overlay_tint_weighs_the_colour_by_alpha():
    """alpha is the colour's weight: at 0.25 a grey-100 pixel under DAVIS's object 1 (128, 0, 0) is
    0.75 x 100 + 0.25 x (128, 0, 0) = (107, 75, 75) (alpha 0.5, the default, cannot tell the two apart)."""
    labels = np.zeros((40, 40), np.int64)
    labels[10:30, 10:30] = 1
    out = overlay_mask(np.full((40, 40, 3), 100, np.uint8), labels, alpha=0.25)
    assert out[20, 20].tolist() == [107, 75, 75]
    assert (out[labels == 0] == 100).all()


def test_full_brightness_scales_each_colour_by_its_own_largest_channel():
    got = full_brightness(np.array([[128, 0, 0], [0, 64, 32], [0, 0, 0]], np.float32))
    np.testing.assert_allclose(got, [[255, 0, 0], [0, 255, 127.5], [255, 255, 255]])


def test_caption_size_and_margin_follow_the_documented_steps():
    """Pixels per em: 12 up to 432p, height / 36 rounded above (500 / 36 = 13.9 -> 14). The box sits
    4 px from the corner up to 480p, 9 px at 1080p (height / 120 rounded)."""
    assert [caption_size(h) for h in (240, 432, 480, 500, 720, 1080)] == [12, 12, 13, 14, 20, 30]
    for height, margin in ((480, 4), (1080, 9)):
        black = (caption(np.full((height, height, 3), 128, np.uint8), "frame 1") == 0).all(axis=2)
        assert np.flatnonzero(black.any(axis=1))[0] == margin and np.flatnonzero(black.any(axis=0))[0] == margin


def _matches(points_a, points_b, mutual) -> Matches:
    n = len(points_a)
    return Matches(np.array(points_a, np.float64), np.array(points_b, np.float64), np.ones(n), np.array(mutual),
                   (4, 4), (32, 32))


def test_draw_matches_scales_b_to_a_height_and_ends_lines_in_b():
    """A 40 x 60 (h x w), B 20 x 20: B is scaled by 40 / 20 = 2 to 40 x 40 (its height, not its width,
    decides); a match from (10, 10) in A to (5, 5) in B ends at (60 + gap + 10, 10)."""
    frame_a, frame_b = np.zeros((40, 60, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    picture = draw_matches(frame_a, frame_b, _matches([[10, 10]], [[5, 5]], [True]), gap=4)
    assert picture.shape == (40, 60 + 4 + 40, 3)
    assert picture[10, 74].any() and picture[10, 10].any()  # the dots at both ends
    assert not picture[10, 82].any()  # nothing beyond the end in B


def test_draw_matches_spreads_the_lines_it_keeps_over_the_list():
    """max_lines 2 of 5 matches: the first and the last (evenly spaced), not the first two. Rejected
    matches are drawn only with show_rejected, in 1-px grey."""
    ys = [2, 10, 18, 26, 34]
    matches = _matches([[5, y] for y in ys], [[5, y] for y in ys], [True] * 5)
    picture = draw_matches(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8), matches, gap=4,
                           max_lines=2)
    drawn_rows = [y for y in ys if picture[y, 20].any()]
    assert drawn_rows == [2, 34]
    rejected = _matches([[5, 20]], [[5, 20]], [False])
    blank = np.zeros((40, 40, 3), np.uint8)
    assert not draw_matches(blank, blank, rejected, gap=4).any(axis=2)[:, :40].any()
    grey = (draw_matches(blank, blank, rejected, gap=4, show_rejected=True) == 160).all(axis=2)
    assert grey[:, 20].sum() == 1 and grey[20, 5:44].all()


def test_skeleton_edges_take_their_first_joints_colour_and_joints_wrap_the_palette():
    """Edge (i, j) is coloured like joint i; joint 16 takes colour 16 mod 16 = 0 (red)."""
    frame = np.zeros((60, 80, 3), np.uint8)
    points = np.array([[10.0, 30.0], [70.0, 30.0]])
    drawn = draw_skeleton(frame, points, np.array([True, True]), [(1, 0)], width=3)
    assert (drawn[29:32, 40] == JOINT_COLOURS[1]).all()  # 3 px wide, as asked: rows 29..31
    assert not drawn[28, 40].any() and not drawn[32, 40].any()
    many = np.tile([[40.0, 30.0]], (17, 1))
    only_16 = np.arange(17) == 16
    assert draw_skeleton(frame, many, only_16)[30, 40].tolist() == list(JOINT_COLOURS[0])


def test_skeleton_dots_are_sized_to_the_frame_outlined_and_skip_nan_joints():
    """radius max(2, ~1% of the long side): 3 px on a 300 x 60 frame, 2 px on a 60 x 80 one (at
    least 2); dots are outlined in black; a joint marked visible but at NaN is not drawn."""
    wide = draw_skeleton(np.full((60, 300, 3), 255, np.uint8), np.array([[150.0, 30.0]]), np.array([True]))
    assert wide[30, 152].tolist() == list(JOINT_COLOURS[0])  # inside a 3-px dot
    assert (wide[25:36, 145:156] == 0).all(axis=2).any()  # its black outline
    small = draw_skeleton(np.zeros((60, 80, 3), np.uint8), np.array([[40.0, 30.0]]), np.array([True]))
    assert small[30, 41].tolist() == list(JOINT_COLOURS[0])  # 1 px from the centre: inside the 2-px dot
    nan = draw_skeleton(np.zeros((60, 80, 3), np.uint8), np.array([[40.0, 30.0], [np.nan, 5.0]]),
                        np.array([True, True]), [(0, 1)])
    assert nan[:, :35].sum() == 0 and nan[:, 46:].sum() == 0  # only joint 0's dot


def test_draw_matches_captions_b_on_b_not_on_the_gap():
    """B's caption box starts at its own corner: x = width A + gap + 4 px margin (60 + 8 + 4 = 72)."""
    grey = np.full((40, 60, 3), 128, np.uint8)
    picture = draw_matches(grey, grey, _matches([], [], []), gap=8, captions=("A", "B"))
    black_columns = np.flatnonzero((picture == 0).all(axis=2).any(axis=0))
    assert black_columns[black_columns >= 60][0] == 72 and black_columns[0] == 4
    assert (picture[:, 60:68] == 255).all()  # the gap stays white
