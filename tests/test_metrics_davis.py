"""DAVIS J&F: number-for-number against the official code's goldens, plus hand-made cases.

The goldens (../shared/metric-goldens) hold every per-frame J and F that the official
davis2017-evaluation code computed on generated cases; a subset of the case tree is
regenerated here and compared per frame, per object and globally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vidcorr.metrics.davis import (
    GLOBAL_KEYS,
    boundary_f,
    boundary_f_frames,
    boundary_radius,
    decay_bin_ids,
    evaluate_sequence,
    jaccard,
    jaccard_frames,
    object_statistics,
    score_davis,
    seg2bmap,
)

GOLDEN_SEQUENCES = ["blackswan", "car-shadow"]  # the two shortest (50, 40 frames), in val.txt order
CASES = ["identity", "shift", "drift", "erode", "dilate", "drop", "blob", "full", "empty", "void",
         "mixed", "split2_swap", "split2_miss", "split2_only1", "split2_gtgap"]
TOL = 1e-6


# --------------------------------------------------------------------------- goldens
@pytest.fixture(scope="module")
def golden(shared_dir):
    return json.loads((shared_dir / "metric-goldens" / "davis2016-dev-goldens.json").read_text())


@pytest.fixture(scope="module")
def case_tree(tmp_path_factory, shared_dir, davis2016_root):
    out = tmp_path_factory.mktemp("metric-cases") / "cases"
    cmd = [sys.executable, str(shared_dir / "metric-goldens" / "make_metric_cases.py"), "--root",
           str(davis2016_root), "--seed", "0", "--out", str(out), "--sequences", *GOLDEN_SEQUENCES, "--no-images"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def scored(case_tree):
    return score_davis(case_tree / "GT", case_tree / "pred", per_frame=True, progress=False)


@pytest.fixture(scope="module")
def golden_subset(golden):
    return [o for o in golden["per_object"] if o["source_sequence"] in GOLDEN_SEQUENCES]


def test_regenerated_tree_is_the_evaluated_one(case_tree, golden):
    made = {it["sequence"]: it for it in json.loads((case_tree / "cases.json").read_text())["items"]}
    evaluated = {it["sequence"]: it for it in golden["case_manifest"] if it["source_sequence"] in GOLDEN_SEQUENCES}
    assert made.keys() == evaluated.keys() and len(made) == len(GOLDEN_SEQUENCES) * len(CASES)
    for name, it in made.items():
        assert (it["gt_sha256"], it["pred_sha256"]) == (evaluated[name]["gt_sha256"], evaluated[name]["pred_sha256"])


def test_same_objects_as_goldens(scored, golden_subset):
    # Same keys in the same order (ImageSets order, then ids), so global means sum in the same order.
    assert list(scored["per_object"]) == [o["key"] for o in golden_subset]


@pytest.mark.parametrize("case", CASES)
def test_case_matches_goldens(case, scored, golden_subset):
    objects = [o for o in golden_subset if o["case"] == case]
    assert objects
    for gold in objects:
        ours = scored["per_object"][gold["key"]]
        for series in ("J_per_frame", "F_per_frame"):
            assert len(ours[series]) == gold["n_scored_frames"] == len(gold[series])
            dev = np.abs(np.asarray(ours[series]) - np.asarray(gold[series]))
            assert dev.max() <= TOL, f"{gold['key']} {series}: frame {dev.argmax()} off by {dev.max()}"
        for measure in GLOBAL_KEYS:
            assert abs(ours[measure] - gold[measure]) <= TOL, f"{gold['key']} {measure}"


def test_global_formula_on_subset(scored, golden_subset):
    expected = {m: np.mean([o[m] for o in golden_subset]) for m in GLOBAL_KEYS[1:]}
    expected["J&F-Mean"] = (expected["J-Mean"] + expected["F-Mean"]) / 2
    for m in GLOBAL_KEYS:
        assert abs(scored[m] - expected[m]) <= TOL, m
    assert scored["protocol"]["n_objects"] == len(golden_subset) == 38


# --------------------------------------------------------------------------- seg2bmap
def _seg2bmap_reference(seg: np.ndarray) -> np.ndarray:
    """Literal transcription of the official `_seg2bmap`."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def test_seg2bmap_all_ones_has_no_boundary():
    assert not seg2bmap(np.ones((3, 4), bool)).any()


def test_seg2bmap_single_pixel_is_shifted_toward_origin():
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(seg2bmap(m), expected)


def test_seg2bmap_bottom_right_pixel_is_never_boundary():
    m = np.zeros((4, 5), bool)
    m[-1, -1] = True
    b = seg2bmap(m)
    assert not b[-1, -1] and b[-2, -2] and b[-1, -2] and b[-2, -1] and b.sum() == 3


def test_seg2bmap_image_border_is_not_boundary():
    m = np.zeros((4, 5), bool)
    m[:, :2] = True
    expected = np.zeros((4, 5), bool)
    expected[:, 1] = True
    np.testing.assert_array_equal(seg2bmap(m), expected)


def test_seg2bmap_matches_official_transcription_and_batches():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 7, 9)) < 0.4
    batch = seg2bmap(masks)
    for m, b in zip(masks, batch):
        np.testing.assert_array_equal(b, _seg2bmap_reference(m))


# --------------------------------------------------------------------------- J and F per frame
def test_jaccard_values():
    empty = np.zeros((5, 5), bool)
    assert jaccard(empty, empty) == 1.0  # empty union
    gt, pred = empty.copy(), empty.copy()
    gt[0, 0:2] = True
    pred[0, 1:3] = True
    assert jaccard(gt, pred) == pytest.approx(1 / 3)


def test_boundary_f_empty_boundary_rules():
    empty, full = np.zeros((480, 854), bool), np.ones((480, 854), bool)
    obj = empty.copy()
    obj[100:200, 300:400] = True
    assert boundary_f(obj, empty) == 0.0  # no predicted boundary: P = 1, R = 0
    assert boundary_f(empty, obj) == 0.0  # no GT boundary: P = 0, R = 1
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(full, full) == 1.0  # an all-ones mask has no boundary either
    assert boundary_f(obj, full) == 0.0  # the "full" case: F = 0
    assert boundary_f(obj, obj) == 1.0


@pytest.mark.parametrize(("dy", "dx", "expected"), [
    (0, 8, 1.0),  # farthest boundary pixel exactly r = 8 away: x^2 + y^2 <= r^2 includes it
    (0, 9, 0.5),  # one of the two boundary columns 9 px away
    (6, 6, 0.75),  # (6, 6) is outside the disk (72 > 64) though inside the 17x17 square
])
def test_boundary_tolerance_is_a_closed_disk_of_radius_8(dy, dx, expected):
    gt, pred = np.zeros((480, 854), bool), np.zeros((480, 854), bool)
    gt[100, 100] = True  # boundary: the 2x2 block rows/cols 99..100
    pred[100 + dy, 100 + dx] = True
    assert boundary_radius(480, 854) == 8
    assert boundary_f(gt, pred) == expected


def _f_reference(gt: np.ndarray, pred: np.ndarray, r: int) -> float:
    """Official f_measure with a brute-force disk dilation."""
    def dilate(b):
        padded = np.pad(b, r)
        out = np.zeros_like(b)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dy * dy + dx * dx <= r * r:
                    out |= padded[r + dy:r + dy + b.shape[0], r + dx:r + dx + b.shape[1]]
        return out
    gb, pb = _seg2bmap_reference(gt), _seg2bmap_reference(pred)
    n_g, n_p = gb.sum(), pb.sum()
    if n_g == 0 or n_p == 0:
        return float(n_g == n_p)
    p, rec = (pb & dilate(gb)).sum() / float(n_p), (gb & dilate(pb)).sum() / float(n_g)
    return 0.0 if p + rec == 0 else 2 * p * rec / (p + rec)


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_boundary_f_matches_brute_force_dilation(radius):
    rng = np.random.default_rng(radius)
    gt = rng.random((8, 30, 23)) < 0.15
    pred = rng.random((8, 30, 23)) < 0.15
    ours = boundary_f_frames(gt, pred, bound_th=radius)
    np.testing.assert_array_equal(ours, [_f_reference(g, p, radius) for g, p in zip(gt, pred)])


def test_boundary_f_matches_cv2_dilation_on_a_real_mask(davis2016_root):
    cv2 = pytest.importorskip("cv2")

    gt = np.array(Image.open(davis2016_root / "Annotations/480p/blackswan/00010.png")) > 0
    pred = np.roll(gt, (5, -7), axis=(0, 1))
    L = np.arange(-8, 9)
    disk = ((L[:, None] ** 2 + L[None, :] ** 2) <= 64).astype(np.uint8)
    gb, pb = _seg2bmap_reference(gt), _seg2bmap_reference(pred)
    p = (pb & cv2.dilate(gb.astype(np.uint8), disk).astype(bool)).sum() / float(pb.sum())
    r = (gb & cv2.dilate(pb.astype(np.uint8), disk).astype(bool)).sum() / float(gb.sum())
    assert boundary_f(gt, pred) == 2 * p * r / (p + r)


def test_boundary_radius():
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(1080, 1920) == 18
    assert boundary_radius(10, 10, bound_th=3) == 3
    with pytest.raises(ValueError):
        boundary_radius(10, 10, bound_th=2.5)


# --------------------------------------------------------------------------- statistics
def test_decay_bins_share_ends_and_round_half_up():
    assert decay_bin_ids(48).tolist() == [0, 12, 24, 35, 47]  # 24.5 -> 25 thanks to +1e-10
    stats = object_statistics(np.arange(48, dtype=float))
    assert stats["Decay"] == np.mean(np.arange(0, 13)) - np.mean(np.arange(35, 48))


def test_recall_is_strict_and_mean_skips_nan():
    assert object_statistics(np.array([0.5, 0.5, 0.6, 0.4]))["Recall"] == 0.25
    assert object_statistics(np.array([np.nan, 1.0, 0.0]))["Mean"] == 0.5


def test_single_frame_statistics():
    assert object_statistics(np.array([0.3])) == {"Mean": 0.3, "Recall": 0.0, "Decay": 0.0}


# --------------------------------------------------------------------------- sequences
def _sequence(t: int = 5) -> np.ndarray:
    gt = np.zeros((t, 40, 60), np.uint8)
    gt[:, 10:20, 10:20] = 1
    gt[:, 10:20, 30:40] = 2
    return gt


def test_void_is_scored_as_background():
    gt = _sequence()
    gt[:, 8:22, 8:10] = 255  # void band left of object 1
    pred = np.where(gt == 255, 0, gt)
    assert evaluate_sequence(gt, pred)[1]["J-Mean"] == 1.0
    pred[:, 8:22, 8:10] = 1  # predicting object 1 on void costs J: void is background here
    objects = evaluate_sequence(gt, pred)
    assert objects[1]["J-Mean"] == pytest.approx(100 / (100 + 28))
    assert objects[1]["F-Mean"] < 1.0 and objects[2]["J-Mean"] == 1.0


def test_first_and_last_frames_are_not_scored():
    gt = _sequence(6)
    pred = gt.copy()
    pred[0] = 0
    pred[-1] = 200  # never looked at, not even for the id check
    objects = evaluate_sequence(gt, pred)
    assert list(objects) == [1, 2]
    for rec in objects.values():
        assert rec["J_per_frame"].tolist() == [1.0] * 4 and rec["F_per_frame"].tolist() == [1.0] * 4


def test_missing_object_is_an_empty_mask():
    gt = _sequence()
    pred = np.where(gt == 2, 0, gt)
    objects = evaluate_sequence(gt, pred)
    assert objects[1]["J&F-Mean"] == 1.0
    assert objects[2]["J-Mean"] == 0.0 and objects[2]["F-Mean"] == 0.0


def test_objects_come_from_the_first_frame():
    gt = _sequence()
    gt[0][gt[0] == 2] = 0  # K = 1: object 2 of later frames is not scored
    objects = evaluate_sequence(gt, np.where(gt == 2, 0, gt))
    assert list(objects) == [1]
    with pytest.raises(ValueError, match="id 2"):
        evaluate_sequence(gt, _sequence())


@pytest.mark.parametrize("disable", [None, "1"])
def test_the_progress_bar_honours_tqdm_disable(short_clip, disable):
    """``TQDM_DISABLE=1`` hid every bar but this one: ``disable=not progress`` passed False explicitly.
    tqdm reads the variable when it is imported, hence a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | ({"TQDM_DISABLE": disable} if disable else {})
    code = ("import sys; from vidcorr.metrics.davis import score_davis; "
            "score_davis(sys.argv[1], sys.argv[2], progress=True)")
    run = subprocess.run([sys.executable, "-c", code, str(short_clip), str(short_clip / "Annotations" / "480p")],
                         env=env, capture_output=True, text=True, check=True)
    assert ("DAVIS J&F" in run.stderr) == (disable is None)


def test_per_sequence_means_are_the_means_of_its_objects(scored):
    """Each per-sequence line averages that sequence's objects (J and F each, J&F their mean)."""
    for seq, line in scored["per_sequence"].items():
        objects = [o for key, o in scored["per_object"].items() if key.rsplit("_", 1)[0] == seq]
        assert line["n_objects"] == len(objects) > 0
        for m in ("J-Mean", "F-Mean"):
            assert line[m] == pytest.approx(np.mean([o[m] for o in objects]), abs=1e-12), (seq, m)
        assert line["J&F-Mean"] == pytest.approx((line["J-Mean"] + line["F-Mean"]) / 2, abs=1e-12)
    assert any(line["J-Mean"] != line["F-Mean"] for line in scored["per_sequence"].values())


# --------------------------------------------------------------------------- mismatched shapes
def _square(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:30, 10:30] = True
    return m


@pytest.mark.parametrize("pred_shape", [(1, 64), (48, 1), (40, 64)])
def test_jaccard_refuses_masks_of_another_shape(pred_shape):
    # numpy broadcast a one-row or one-column prediction against the whole GT: J 0.0 and 0.3125
    gt = _square(48, 64)
    with pytest.raises(ValueError, match=r"gt.*\(48, 64\).*pred.*" + str(pred_shape).replace("(", r"\(")
                       .replace(")", r"\)")):
        jaccard(gt, np.ones(pred_shape, bool))
    with pytest.raises(ValueError, match="pred"):
        boundary_f(gt, np.ones(pred_shape, bool))


def test_frame_functions_refuse_another_number_of_frames():
    # zip() scored only the first 3 of 5 GT frames; a (H, W) pair was iterated row by row
    gt = np.stack([_square(48, 64)] * 5)
    with pytest.raises(ValueError, match="pred"):
        boundary_f_frames(gt, gt[:3])
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        boundary_f_frames(gt[0], gt[0])
    with pytest.raises(ValueError, match="pred"):
        jaccard_frames(gt, gt[0])
    assert boundary_f_frames(gt, gt).tolist() == [1.0] * 5  # equal masks: F = 1 on every frame


@pytest.mark.parametrize("gt_dtype,gt_id,pred_dtype,pred_id,problem", [
    (np.int64, 300, np.uint8, 1, "gt holds id 300"),   # was K = 300 objects, 298 of them absent: J = 1 each
    (np.uint8, 1, np.float64, 1.5, "pred.*float64"),    # was J = 0 without a word
    (np.uint8, 1, np.int16, -1, "pred holds id -1"),    # was an empty prediction
    (np.float32, 1, np.uint8, 1, "gt.*float32"),
])
def test_evaluate_sequence_refuses_ids_that_are_not_davis_ids(gt_dtype, gt_id, pred_dtype, pred_id, problem):
    gt = np.zeros((4, 20, 30), gt_dtype)
    gt[:, 5:10, 5:10] = gt_id
    pred = np.zeros((4, 20, 30), pred_dtype)
    pred[:, 5:10, 5:10] = pred_id
    with pytest.raises(ValueError, match=problem):
        evaluate_sequence(gt, pred)


def test_evaluate_sequence_takes_any_integer_ids():
    # int64 and bool id maps are what an argmax or a comparison give: scored as their uint8 values
    gt = np.zeros((4, 20, 30), np.uint8)
    gt[:, 5:10, 5:10] = 1
    for pred in (gt.astype(np.int64), gt.astype(bool)):
        assert evaluate_sequence(gt, pred)[1]["J-Mean"] == 1.0
