"""Golden tests of the JHMDB keypoint and VIP part pipelines around the metrics (METHODS.md 6.2, 6.3; the
metrics themselves are in test_task_metrics_golden.py): how joint_positions.mat is read, which split
files are used, how predictions are saved and read back, and what the VIP readers accept. Expected
values come from the dataset layouts (../shared/data/README.md) or naive loops here, never from the
code under test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import torch
from jhmdb_helpers import CLASS, NAME, VIDEO, jhmdb_tree
from naive_reference import bilinear_half_pixel
from PIL import Image

from vidcorr.errors import InputError
from vidcorr.evaluate.jhmdb import read_prediction, write_prediction
from vidcorr.evaluate.vip import (
    PartChannels,
    _first_annotation,
    decode_parts,
    first_frame_labels,
    instance_scores,
    run_vip,
    vip_preset,
)
from vidcorr.evaluate.vip_results import score_vip
from vidcorr.io.jhmdb import JOINT_NAMES, JhmdbDataset, read_joints
from vidcorr.io.masks import write_indexed_png
from vidcorr.io.vip import VipDataset
from vidcorr.io.vip_predictions import read_instance_map, write_instance_map
from vidcorr.models import build_encoder
from vidcorr.presets import get_preset


@pytest.fixture(scope="module")
def jhmdb_root(data_dir: Path) -> Path:
    return data_dir / "jhmdb"


# --- JHMDB reader --------------------------------------------------------------------------------

def test_read_joints_is_pos_img_c_j_t_as_t_j_c_minus_one(tmp_path: Path) -> None:
    """pos_img is (2, 15, T), MATLAB 1-based (x, y): element [c, j, t] is frame t, joint j, coordinate c."""
    pos = np.zeros((2, 15, 3))
    for c in range(2):
        for j in range(15):
            for t in range(3):
                pos[c, j, t] = 1 + 1000 * c + 10 * j + t  # every entry distinct
    scipy.io.savemat(tmp_path / "joint_positions.mat", {"pos_img": pos})
    joints = read_joints(tmp_path / "joint_positions.mat")
    assert joints.shape == (3, 15, 2)
    for t in range(3):
        for j in range(15):
            assert tuple(joints[t, j]) == (10 * j + t, 1000 + 10 * j + t)


def test_joint_names_follow_the_real_clip_geometry(jhmdb_root: Path) -> None:
    """The goalkeeper of the real clip faces the camera in every frame, so her right side is on the
    image's left (smaller x); the face is above the neck, the neck above the belly (smaller y)."""
    joints = JhmdbDataset(jhmdb_root).videos[0].joints()
    col = {name: joints[:, JOINT_NAMES.index(name)] for name in JOINT_NAMES}
    for part in ("shoulder", "elbow"):
        assert np.all(col[f"right_{part}"][:, 0] < col[f"left_{part}"][:, 0])
    assert np.all(col["face"][:, 1] < col["neck"][:, 1]) and np.all(col["neck"][:, 1] < col["belly"][:, 1])
    for side in ("right", "left"):
        assert np.all(col[f"{side}_ankle"][:, 1] > col[f"{side}_knee"][:, 1])
        assert np.all(col[f"{side}_knee"][:, 1] > col[f"{side}_hip"][:, 1])


@pytest.mark.parametrize("n_mat_frames", [3, 5])
def test_pos_img_with_fewer_or_more_frames_than_images_is_refused(tmp_path: Path, jhmdb_root: Path,
                                                                   n_mat_frames: int) -> None:
    """One joint set per frame image: a .mat short of frames would score frames against the wrong joints."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 4, n_mat_frames)
    with pytest.raises(InputError, match=f"pos_img has {n_mat_frames} frames but .* has 4 frame images"):
        JhmdbDataset(root).videos[0].joints()


def test_only_the_asked_splits_files_are_read(tmp_path: Path, jhmdb_root: Path) -> None:
    """ROOT/splits holds the files of all three splits; split 1 must read *_test_split1.txt only."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2, videos=(VIDEO, "other"))
    (root / "splits").mkdir()
    (root / "splits" / f"{CLASS}_test_split1.txt").write_text(f"{VIDEO}.avi 2\nother.avi 1\n")
    (root / "splits" / f"{CLASS}_test_split2.txt").write_text(f"{VIDEO}.avi 1\nother.avi 2\n")
    one = JhmdbDataset(root, split=1)
    assert [v.name for v in one.videos] == [NAME]
    assert [p.name for p in one.split_files] == [f"{CLASS}_test_split1.txt"]
    assert [v.name for v in JhmdbDataset(root, split=2).videos] == [f"{CLASS}/other"]


# --- JHMDB prediction files ----------------------------------------------------------------------

def test_saved_predictions_keep_three_decimals(tmp_path: Path, jhmdb_root: Path) -> None:
    """Predictions are saved at 3 decimals (1/1000 px) and scored as read back; a joint predicted
    invisible is saved as null (no position), so it is neither scored nor in the PCK box."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    video = JhmdbDataset(root).videos[0]
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 300, (2, 15, 2))
    seen = np.ones((2, 15), bool)
    seen[1, 6] = False
    path = tmp_path / "pred.json"
    write_prediction(path, video, coords, seen)
    assert json.loads(path.read_text())["keypoints"][1][6] is None
    back, visible = read_prediction(path, video)
    np.testing.assert_array_equal(visible, seen)
    assert np.max(np.abs(back - coords)[seen]) <= 5e-4 + 1e-9


def test_a_joint_with_one_nan_coordinate_is_not_visible(tmp_path: Path, jhmdb_root: Path) -> None:
    """null or a NaN in either coordinate: no position, so not visible (read_prediction's contract)."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    video = JhmdbDataset(root).videos[0]
    rows = [[[1.0, 2.0]] * 15 for _ in range(2)]
    rows[1][4] = [3.0, float("nan")]
    rows[0][7] = None
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"keypoints": rows}))
    _, visible = read_prediction(path, video)
    expected = np.ones((2, 15), bool)
    expected[1, 4] = expected[0, 7] = False
    np.testing.assert_array_equal(visible, expected)


# --- VIP readers ---------------------------------------------------------------------------------

def _vip_root(tmp_path: Path, category: np.ndarray, table: str | None = None, list_line: str = "v") -> Path:
    """VIP_Fine with one video "v" of one frame: its class map and, with ``table``, an instance map
    (every labelled pixel instance 1) and its table."""
    root = tmp_path / "VIP_Fine"
    (root / "Images" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((*category.shape, 3), np.uint8)).save(root / "Images" / "v" / "000000000001.jpg")
    write_indexed_png(root / "Annotations" / "Category_ids" / "v" / "000000000001.png", category)
    if table is not None:
        write_indexed_png(root / "Annotations" / "Instance_ids" / "v" / "000000000001.png",
                          (category != 0).astype(np.uint8))
        (root / "Annotations" / "Instance_ids" / "v" / "000000000001.txt").write_text(table)
    (root / "lists").mkdir()
    (root / "lists" / "val_videos.txt").write_text(list_line + "\n")
    return root


def test_vip_class_ids_are_0_to_19(tmp_path: Path) -> None:
    """VIP has 20 classes (METHODS.md 6.3): 19 is the last class, 20 an error, 255 ignored."""
    category = np.array([[0, 19], [255, 5]], np.uint8)
    dataset = VipDataset(_vip_root(tmp_path / "ok", category))
    assert dataset.num_classes == 20
    np.testing.assert_array_equal(dataset.category_map(dataset.videos[0].frames[0]), category)
    category[0, 0] = 20
    dataset = VipDataset(_vip_root(tmp_path / "bad", category))
    with pytest.raises(InputError, match="class id 20 outside 0..19"):
        dataset.category_map(dataset.videos[0].frames[0])


@pytest.mark.parametrize(("cls", "ok"), [(1, True), (19, True), (0, False), (20, False)])
def test_vip_part_instances_are_of_part_classes_1_to_19(tmp_path: Path, cls: int, ok: bool) -> None:
    """An instance is a part: class 0 (background) or 20 (no class) in Instance_ids/*.txt is malformed."""
    dataset = VipDataset(_vip_root(tmp_path, np.array([[0, 1], [1, 1]], np.uint8), f"1 {cls} 1\n"))
    frame = dataset.videos[0].frames[0]
    if ok:
        assert dataset.instance_map(frame)[1] == {1: cls}
    else:
        with pytest.raises(InputError, match="line 1: expected '<instance id> <class 1..19> <human id>'"):
            dataset.instance_map(frame)


@pytest.mark.parametrize("line", ["v", "VIP_Fine/Images/v", "VIP_Fine/Images/v/", "/data/VIP_Fine/Images/v/  "])
def test_vip_video_list_lines_are_names_or_paths(tmp_path: Path, line: str) -> None:
    """UVC reads the last path component of each line of val_videos.txt (a trailing slash included)."""
    dataset = VipDataset(_vip_root(tmp_path, np.zeros((2, 2), np.uint8), list_line=line))
    assert [v.name for v in dataset.videos] == ["v"]


def test_vipseg_category_ids_run_to_123(tmp_path: Path) -> None:
    """VIPSeg has 124 categories, ids 0..123: 123 is a class, 124 is refused; unlabelled segment 0 -> 255."""
    (tmp_path / "images" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images" / "v" / "0001.jpg")
    write_indexed_png(tmp_path / "source" / "v" / "0001.png", np.array([[0, 1], [2, 2]], np.uint8))
    table = tmp_path / "source" / "v" / "0001.json"
    table.write_text(json.dumps([{"id": 1, "category_id": 123, "isthing": 0},
                                 {"id": 2, "category_id": 0, "isthing": 1}]))
    dataset = VipDataset(tmp_path)
    assert dataset.layout == "vipseg" and dataset.num_classes == 124
    np.testing.assert_array_equal(dataset.category_map(dataset.videos[0].frames[0]), [[255, 123], [0, 0]])
    table.write_text(json.dumps([{"id": 1, "category_id": 124, "isthing": 0}]))
    with pytest.raises(InputError, match="category id 124 outside 0..123"):
        dataset.category_map(dataset.videos[0].frames[0])


def test_instance_channel_0_is_no_instance_even_when_every_pixel_has_one() -> None:
    """Channel 0 carries "no instance" (id 0) whatever frame 0 holds: a decoder whose channels all
    tie (a min-max normalised pixel at every channel's minimum) falls back to channel 0, which must
    not be a real part instance."""
    category = np.array([[1, 1], [2, 2]], np.uint8)
    ids = np.array([[5, 5], [9, 9]])
    parts, labels = first_frame_labels(category, (ids, {5: 1, 9: 2}))
    assert parts.instances.tolist() == [0, 5, 9]
    kc = len(parts.classes)
    assert labels[kc].sum() == 0 and labels[kc + 1].tolist() == [[1, 1], [0, 0]]


def test_instance_score_is_the_mean_upsampled_channel_share_over_its_pixels() -> None:
    """Module doc of vidcorr.evaluate.vip: each predicted instance is scored by the mean, over its
    pixels, of its channel's share of the soft labels (channel / sum of channels, bilinearly upsampled)."""
    rng = np.random.default_rng(3)
    soft = rng.uniform(0.1, 2.0, (4, 3, 3))  # not normalised: the sum over channels is not 1
    index = np.array([[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2], [1, 1, 1, 2, 2, 2],
                      [1, 1, 2, 2, 2, 2], [1, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2]])  # channel 3 never picked
    share = soft / soft.sum(axis=0)
    up = np.stack([bilinear_half_pixel(s, 6, 6) for s in share])
    expected = [up[k][index == k].mean() if np.any(index == k) else 0.0 for k in range(4)]
    got = instance_scores(torch.from_numpy(soft).float(), torch.from_numpy(index))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def _two_frame_vip(tmp_path: Path, with_instances: bool) -> tuple[Path, np.ndarray, np.ndarray, list[str]]:
    """VIP_Fine with one 24 x 32 video "v" of two random frames, both annotated alike (two parts)."""
    rng = np.random.default_rng(5)
    root = tmp_path / "VIP_Fine"
    yy, xx = np.mgrid[:24, :32]
    category = np.where(xx < 16, 2, 5).astype(np.uint8)
    category[yy < 4] = 0
    ids = np.where(category == 0, 0, np.where(xx < 16, 1, 2)).astype(np.uint8)
    names = ["000000000001", "000000000026"]
    for name in names:
        (root / "Images" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / "Images" / "v" / f"{name}.jpg")
        write_indexed_png(root / "Annotations" / "Category_ids" / "v" / f"{name}.png", category)
        if with_instances:
            write_indexed_png(root / "Annotations" / "Instance_ids" / "v" / f"{name}.png", ids)
            (root / "Annotations" / "Instance_ids" / "v" / f"{name}.txt").write_text("1 2 1\n2 5 1\n")
    (root / "lists").mkdir()
    (root / "lists" / "val_videos.txt").write_text("v\n")
    return root, category, ids, names


def _run_vip(root: Path, out: Path) -> dict:
    return run_vip(build_encoder("lab-pixels"), vip_preset(get_preset("crw"), size=64), VipDataset(root), out)


def test_vip_frame_0_predictions_are_the_given_annotation(tmp_path: Path) -> None:
    """Frame 0 is scored as the given annotation (module doc of vidcorr.evaluate.vip; UVC, STT): its
    saved class map and part-instance map are frame 0's GT, every instance scored 1."""
    root, category, ids, names = _two_frame_vip(tmp_path, with_instances=True)
    out = tmp_path / "out"
    _run_vip(root, out)
    np.testing.assert_array_equal(np.array(Image.open(out / "v" / f"{names[0]}.png")), category)
    np.testing.assert_array_equal(read_instance_map(out / "v" / "instances" / f"{names[0]}.png"), ids)
    scores = json.loads((out / "v" / "instances" / "scores.json").read_text())
    assert scores["classes"] == {"1": 2, "2": 5}
    assert scores["scores"][names[0]] == {"1": 1.0, "2": 1.0}
    assert set(scores["scores"]) == set(names)


def test_vip_without_instance_ids_scores_miou_only(tmp_path: Path) -> None:
    """Instance_ids is optional (module doc of vidcorr.io.vip): without it eval scores mIoU, AP_part is None."""
    root, _, _, _ = _two_frame_vip(tmp_path, with_instances=False)
    results = _run_vip(root, tmp_path / "out")
    assert results["protocol"]["scored_frames"] == 2 and 0.0 < results["mIoU"] <= 1.0
    assert results["AP_part"] is None and not (tmp_path / "out" / "v" / "instances").exists()
    # score vip of that output: no instances were annotated, so none are missing from the predictions
    scored = score_vip(VipDataset(root), tmp_path / "out")
    assert scored["mIoU"] == results["mIoU"] and scored["protocol"]["instances"] == "none: AP_part not computed"


@pytest.mark.parametrize(("count", "ok"), [(254, True), (255, False)])
def test_at_most_254_part_instances_in_the_first_frame(tmp_path: Path, count: int, ok: bool) -> None:
    """Channels live in a uint8 map whose 255 is ignored and 0 is "no instance": 254 instances fit."""
    ids = np.zeros(256, np.uint8)
    ids[1:count + 1] = np.arange(1, count + 1)
    ids = ids.reshape(16, 16)
    category = np.where(ids > 0, 1, 0).astype(np.uint8)
    root = _vip_root(tmp_path, category, "".join(f"{i} 1 1\n" for i in range(1, count + 1)))
    write_indexed_png(root / "Annotations" / "Instance_ids" / "v" / "000000000001.png", ids)
    dataset = VipDataset(root)
    frame = dataset.videos[0].frames[0]
    if ok:
        _, (got, _) = _first_annotation(dataset, frame, (16, 16))
        assert len(np.unique(got[got != 0])) == 254
    else:
        with pytest.raises(InputError, match="255 part instances in the first frame; at most 254"):
            _first_annotation(dataset, frame, (16, 16))


def test_decode_parts_maps_channels_to_ids_and_scores_each_instance_by_its_share() -> None:
    """At the original size (no resize), CRW decoding is a plain argmax: class / instance of the
    winning channel; an instance's score is its mean share of the instance channels where it won."""
    preset = get_preset("crw")
    assert preset.output_resize == "original" and not preset.output_minmax
    rng = np.random.default_rng(7)
    soft = rng.uniform(0.05, 1.0, (2 + 3, 4, 6))
    parts = PartChannels(np.array([3, 11]), np.array([0, 8, 40]), {8: 3, 40: 11})
    stub = SimpleNamespace(preset=preset, input_hw=(4, 6), original_hw=(4, 6))
    category, inst, scores = decode_parts(torch.from_numpy(soft).float(), parts, stub)
    np.testing.assert_array_equal(category, np.array([3, 11])[soft[:2].argmax(0)])
    win = soft[2:].argmax(0)
    np.testing.assert_array_equal(inst, np.array([0, 8, 40])[win])
    share = soft[2:] / soft[2:].sum(0)
    for k, i in enumerate([0, 8, 40]):
        expected = share[k][win == k].mean() if np.any(win == k) else 0.0
        assert scores[i] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_score_vip_per_video_line_has_its_own_ap_at_0_5(tmp_path: Path) -> None:
    """One GT part instance (100 px) predicted by a 65 px subset of it: IoU 0.65, a hit at IoU
    thresholds 0.1..0.6 and a miss at 0.7..0.9, so AP_part@0.5 = 1 and AP_part = 6/9, for the one
    video's line as for the whole set."""
    category = np.zeros((20, 10), np.uint8)
    category[:, :5] = 1
    root = _vip_root(tmp_path, category, "1 1 1\n")
    pred_ids = np.zeros((20, 10), np.int64)
    pred_ids.flat[np.flatnonzero(category)[:65]] = 1
    results = tmp_path / "results" / "v"
    write_indexed_png(results / "000000000001.png", np.where(pred_ids == 1, 1, 0).astype(np.uint8))
    write_instance_map(results / "instances" / "000000000001.png", pred_ids)
    (results / "instances" / "scores.json").write_text(json.dumps({"classes": {"1": 1},
                                                                   "scores": {"000000000001": {"1": 0.9}}}))
    scored = score_vip(VipDataset(root), tmp_path / "results")
    for line in (scored, scored["per_video"]["v"]):
        assert line["AP_part@0.5"] == pytest.approx(1.0) and line["AP_part"] == pytest.approx(6 / 9)
