"""JHMDB reader (real clip + malformed files), keypoint propagation benchmark and `propagate --keypoints`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from jhmdb_helpers import CLASS, NAME, VIDEO, jhmdb_tree

import vidcorr.cli
import vidcorr.cli.eval_cmd
from vidcorr.errors import InputError
from vidcorr.evaluate.jhmdb import jhmdb_preset, run_jhmdb, score_jhmdb, write_prediction
from vidcorr.io.jhmdb import JOINT_NAMES, SKELETON_EDGES, JhmdbDataset, read_joints, read_split_file
from vidcorr.models import build_encoder
from vidcorr.presets import SizePolicy, get_preset


@pytest.fixture(scope="session")
def jhmdb_root(data_dir):
    return data_dir / "jhmdb"


def test_reads_the_real_clip(jhmdb_root):
    dataset = JhmdbDataset(jhmdb_root)
    assert [v.name for v in dataset.videos] == [NAME]
    assert dataset.split_files == [] and "no *_test_split1.txt" in dataset.describe()
    video = dataset.videos[0]
    joints = video.joints()
    assert joints.shape == (40, 15, 2) and len(video.frame_files()) == 40
    raw = scipy.io.loadmat(video.joints_file)["pos_img"]
    np.testing.assert_array_equal(joints[3, 7], raw[:, 7, 3] - 1)  # 0-based (x, y)
    assert len(JOINT_NAMES) == 15 and all(0 <= i < 15 and 0 <= j < 15 for i, j in SKELETON_EDGES)


@pytest.mark.parametrize(("content", "message"), [
    ({"pos_world": np.zeros((2, 15, 3))}, "no 'pos_img'"),
    ({"pos_img": np.zeros((2, 14, 3))}, r"shape \(2, 14, 3\)"),
    ({"pos_img": np.full((2, 15, 3), np.nan)}, "non-finite"),
])
def test_rejects_malformed_joint_files(tmp_path, content, message):
    path = tmp_path / "joint_positions.mat"
    scipy.io.savemat(path, content)
    with pytest.raises(InputError, match=message) as err:
        read_joints(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a MATLAB file at all" * 8, b"garbage\n", b""])
def test_rejects_a_file_that_is_not_matlab(tmp_path, content):
    """A file of a few bytes raised scipy's MatReadError, which is no ValueError: a traceback."""
    path = tmp_path / "joint_positions.mat"
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot read MATLAB file"):
        read_joints(path)


def test_split_files_without_a_test_video_say_what_they_mark(tmp_path, jhmdb_root):
    """Split files that mark every video 1 (train) gave only "ROOT: no test videos found", as if no
    split file had been read; the error names the files and what 1 and 2 mean."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    split = root / "splits" / f"{CLASS}_test_split1.txt"
    split.parent.mkdir()
    split.write_text(f"{VIDEO}.avi 1\n")
    with pytest.raises(InputError, match="no test videos: the split 1 file\\(s\\) mark 1 video as 1 \\(train\\) "
                                         "and none as 2 \\(test\\)") as err:
        JhmdbDataset(root)
    assert str(split) in str(err.value)
    assert [v.name for v in JhmdbDataset(root, subset="train").videos] == [NAME]


def test_rejects_frame_count_mismatch(tmp_path, jhmdb_root):
    root = jhmdb_tree(tmp_path, jhmdb_root, 4)
    mat = root / "joint_positions" / NAME / "joint_positions.mat"
    scipy.io.savemat(mat, {"pos_img": np.zeros((2, 15, 5))})
    with pytest.raises(InputError, match="pos_img has 5 frames but .* has 4 frame images") as err:
        JhmdbDataset(root).videos[0].joints()
    assert str(mat) in str(err.value)


def test_split_files_select_the_test_videos(tmp_path, jhmdb_root):
    root = jhmdb_tree(tmp_path, jhmdb_root, 2, videos=(VIDEO, "train_clip"))
    (root / "splits").mkdir()
    (root / "splits" / f"{CLASS}_test_split1.txt").write_text(f"{VIDEO}.avi 2\ntrain_clip.avi 1\n")
    test = JhmdbDataset(root)
    assert [v.name for v in test.videos] == [NAME] and "split 1 test set" in test.describe()
    assert [v.name for v in JhmdbDataset(root, subset="train").videos] == [f"{CLASS}/train_clip"]
    with pytest.raises(InputError, match="no test videos"):
        JhmdbDataset(root, splits=[root / "splits" / f"{CLASS}_test_split1.txt"], videos=[])
    # an unknown --videos name: "not in the test set" was also said where no split file was read
    with pytest.raises(InputError, match=f"unknown video\\(s\\) {CLASS}/train_clip: not in the split 1 test set"):
        JhmdbDataset(root, videos=[f"{CLASS}/train_clip"])
    (root / "splits" / f"{CLASS}_test_split1.txt").unlink()
    with pytest.raises(InputError, match=f"{CLASS}/nope: not under Rename_Images/ \\(without split files"):
        JhmdbDataset(root, videos=[f"{CLASS}/nope"])


def test_split_files_saved_by_another_editor(tmp_path, jhmdb_root):
    """A BOM made the first line's video "\ufeff<video>", not listed; a file that is not UTF-8 was a raw
    UnicodeDecodeError naming no file."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    split = tmp_path / f"{CLASS}_test_split1.txt"
    split.write_bytes(f"{VIDEO}.avi 2\r\n".encode("utf-8-sig"))
    assert [v.name for v in JhmdbDataset(root, splits=[split]).videos] == [NAME]
    split.write_bytes(f"{VIDEO}.avi 2\n".encode("utf-16"))  # Windows PowerShell's `>`
    assert [v.name for v in JhmdbDataset(root, splits=[split]).videos] == [NAME]
    split.write_bytes(f"{VIDEO}.avi 2 \xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="unreadable split file: not UTF-8 or UTF-16 text .*save it as UTF-8") as info:
        JhmdbDataset(root, splits=[split])
    assert info.value.path == split


def test_an_unknown_video_names_the_valid_ones(tmp_path, jhmdb_root):
    """A misspelt --videos name said only that it was unknown; the valid names are listed (the first
    10 and how many), as eval davis lists a split's sequences."""
    many = [f"v{i:02d}" for i in range(12)]
    root = jhmdb_tree(tmp_path, jhmdb_root, 2, videos=many)
    with pytest.raises(InputError) as error:
        JhmdbDataset(root, videos=[f"{CLASS}/v00", f"{CLASS}/v12"])
    shown = ", ".join(f"{CLASS}/{v}" for v in many[:10])
    assert str(error.value).endswith(f"unknown video(s) {CLASS}/v12: not under Rename_Images/ (without split files "
                                     f"every video there is used), which holds 12: {shown}, ...")
    (root / "splits").mkdir()
    (root / "splits" / f"{CLASS}_test_split1.txt").write_text("v03.avi 2\nv04.avi 1\nv05.avi 2\n")
    with pytest.raises(InputError) as error:
        JhmdbDataset(root, videos=[f"{CLASS}/v04"])
    assert str(error.value).endswith(f"unknown video(s) {CLASS}/v04: not in the split 1 test set, which lists 2: "
                                     f"{CLASS}/v03, {CLASS}/v05")


def test_split_files_given_by_name_set_the_split(tmp_path, jhmdb_root):
    """A ..._test_split3.txt read with the default --split was recorded as the "split 1 test set"
    (and with --split 2 as split 2): the files' own number is the split, and must be one."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    three, one = tmp_path / f"{CLASS}_test_split3.txt", tmp_path / "other_test_split1.txt"
    three.write_text(f"{VIDEO}.avi 2\n")
    one.write_text("")
    dataset = JhmdbDataset(root, splits=[three])
    assert dataset.split == 3 and dataset.describe().startswith("split 3 test set from 1 split file(s)")
    assert JhmdbDataset(root, split=3, splits=[three]).split == 3
    with pytest.raises(InputError, match=f"{three}: is a split 3 file, but --split 2 was asked for"):
        JhmdbDataset(root, split=2, splits=[three])
    with pytest.raises(InputError, match=r"split files of different splits given together: "
                                         rf"{CLASS}_test_split3.txt \(split 3\), other_test_split1.txt \(split 1\)"):
        JhmdbDataset(root, splits=[three, one])


def test_a_splits_folder_without_the_splits_files_is_refused(tmp_path, jhmdb_root):
    """--splits DIR holding no file of --split N evaluated every video found (one INFO line), as
    if no split had been asked for; without --splits that is still the fallback."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    splits = tmp_path / "splits"
    splits.mkdir()
    with pytest.raises(InputError, match=f"{splits}: no <class>_test_split1.txt files in the --splits folder$"):
        JhmdbDataset(root, splits=splits)
    (splits / f"{CLASS}_test_split1.txt").write_text(f"{VIDEO}.avi 2\n")
    (splits / f"{CLASS}_test_split3.txt").write_text(f"{VIDEO}.avi 2\n")
    with pytest.raises(InputError, match=r"no <class>_test_split2.txt files in the --splits folder \(it holds split "
                                         r"1, 3: --split N picks one\)"):
        JhmdbDataset(root, split=2, splits=splits)
    assert [v.name for v in JhmdbDataset(root, split=3, splits=splits).videos] == [NAME]
    assert [v.name for v in JhmdbDataset(root, split=2).videos] == [NAME]  # no --splits: every video


@pytest.mark.parametrize(("line", "message"), [
    ("clip.avi 3", "line 2: expected '<video>.avi 1|2'"),
    ("clip.avi", "line 2"),
])
def test_rejects_bad_split_lines(tmp_path, line, message):
    path = tmp_path / f"{CLASS}_test_split1.txt"
    path.write_text(f"ok.avi 1\n{line}\n")
    with pytest.raises(InputError, match=message) as err:
        read_split_file(path)
    assert str(path) in str(err.value)


def test_split_listing_a_missing_video_fails(tmp_path, jhmdb_root):
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    (root / f"{CLASS}_test_split1.txt").write_text("gone.avi 2\n")
    with pytest.raises(InputError, match="lists video gone"):
        JhmdbDataset(root)


def test_jhmdb_variant_changes_only_the_protocol_knobs():
    crw = jhmdb_preset(get_preset("crw"))
    assert crw.size == SizePolicy("square", 320) and crw.n_previous == 7 and crw.topk == get_preset("crw").topk
    uvc = jhmdb_preset(get_preset("uvc"), size=160)
    assert ((uvc.size.size, uvc.topk.k, uvc.initial_context, uvc.normalise_context_labels)
            == (160, 20, "fill_self", True))
    stt = jhmdb_preset(get_preset("stt"))
    assert (stt.topk.radius, stt.label_downsample) == (5, "bilinear")


def test_eval_end_to_end_on_the_real_clip(tmp_path, jhmdb_root):
    preset = jhmdb_preset(get_preset("crw"), size=128)  # 16 x 16 features: cells of 15 x 20 px
    results = run_jhmdb(build_encoder("lab-pixels"), preset, JhmdbDataset(jhmdb_root), tmp_path / "out",
                        model_info={"features": "lab-pixels"})
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("PCK@0.1", "PCK@0.2", "per_joint", "per_video", "preset", "preset_knobs", "codec",
                "skip_first_frame", "protocol", "model", "timing"):
        assert key in saved
    assert saved["preset"] == "crw" and saved["skip_first_frame"] is True
    assert saved["preset_knobs"]["size"] == {"mode": "square", "size": 128, "long_multiple": None}
    assert 0.0 <= saved["PCK@0.1"] <= saved["PCK@0.2"] <= 1.0
    assert set(saved["per_joint"]["PCK@0.2"]) == set(JOINT_NAMES)
    assert saved["per_video"][NAME]["frames"] == 40
    pred = json.loads((tmp_path / "out" / "predictions" / f"{NAME}.json").read_text())
    assert len(pred["keypoints"]) == 40 and len(pred["keypoints"][0]) == 15
    gt0 = JhmdbDataset(jhmdb_root).videos[0].joints()[0]
    np.testing.assert_allclose(pred["keypoints"][0], gt0, atol=1e-3)  # frame 0 is the annotation


@pytest.fixture
def cli(monkeypatch):
    """`vidcorr.cli.main` with only the commands under test registered (others may not exist yet)."""
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd", "vidcorr.cli.propagate_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_jhmdb"])
    return vidcorr.cli.main


def test_eval_jhmdb_command(tmp_path, jhmdb_root, cli, capsys):
    root = jhmdb_tree(tmp_path, jhmdb_root, 10)
    out = tmp_path / "out"
    assert cli(["eval", "jhmdb", "--root", str(root), "--out", str(out), "--features", "lab-pixels",
                "--preset", "stt", "--size", "160", "--include-first-frame"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["preset"] == "stt" and saved["skip_first_frame"] is False
    assert saved["codec"]["sigma_unit"] == "pixel" and saved["preset_knobs"]["topk"]["radius"] == 5
    printed = capsys.readouterr().out
    assert "mean over joints" in printed and "frame 0 included" in printed


def test_eval_jhmdb_command_reports_bad_input(tmp_path, cli, capsys):
    assert cli(["eval", "jhmdb", "--root", str(tmp_path), "--out", str(tmp_path / "out"),
                "--features", "lab-pixels"]) == 2
    assert "Rename_Images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_propagate_keypoints_command(tmp_path, jhmdb_root, cli):
    root = jhmdb_tree(tmp_path, jhmdb_root, 6)
    video = JhmdbDataset(root).videos[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": video.joints()[0].tolist(), "names": list(JOINT_NAMES),
                                 "edges": [list(e) for e in SKELETON_EDGES], "visible": [True] * 14 + [False]}))
    out = tmp_path / "out"
    assert cli(["propagate", str(video.frames_dir), "--keypoints", str(first), "--out", str(out),
                "--features", "lab-pixels"]) == 0
    saved = json.loads((out / "keypoints.json").read_text())
    assert [f["frame"] for f in saved["frames"]] == [f"{t:05d}" for t in range(1, 7)]
    assert saved["names"] == list(JOINT_NAMES) and saved["preset"] == "crw"
    assert all(len(f["keypoints"]) == 15 and f["keypoints"][14] is None for f in saved["frames"])
    assert (out / "overlay.mp4").stat().st_size > 0


def test_propagate_needs_exactly_one_first_annotation(tmp_path, cli, capsys):
    with pytest.raises(SystemExit):
        cli(["propagate", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        cli(["propagate", str(tmp_path), "--mask", "m.png", "--keypoints", "k.json", "--out", str(tmp_path / "o")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_propagate_rejects_keypoints_outside_the_frame(tmp_path, jhmdb_root, cli, capsys):
    root = jhmdb_tree(tmp_path, jhmdb_root, 2)
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": [[10, 10], [400, 10]]}))
    assert cli(["propagate", str(root / "Rename_Images" / NAME), "--keypoints", str(first),
                "--out", str(tmp_path / "out"), "--features", "lab-pixels"]) == 2
    assert "keypoint 1" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- `vidcorr score jhmdb`: PCK of saved prediction files, the same numbers as eval ---------------

@pytest.fixture
def eval_and_score(monkeypatch):
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd", "vidcorr.cli.score_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_jhmdb"])
    return vidcorr.cli.main


SCORE_KEYS = ("PCK@0.1", "PCK@0.2", "per_joint", "per_video", "skip_first_frame", "protocol")


@pytest.mark.parametrize("first_frame", [[], ["--include-first-frame"]])
def test_score_jhmdb_of_eval_predictions_equals_eval_pck(tmp_path, jhmdb_root, eval_and_score, capsys, first_frame):
    """Exactly, not to 3 decimals: eval scores the coordinates as written, as score reads them."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 10)
    out = tmp_path / "out"
    assert eval_and_score(["eval", "jhmdb", "--root", str(root), "--out", str(out), "--features", "lab-pixels",
                           "--size", "128", *first_frame]) == 0
    capsys.readouterr()
    assert eval_and_score(["score", "jhmdb", "--root", str(root), "--results", str(out / "predictions"),
                           *first_frame]) == 0
    scored, evaluated = (json.loads((out / "predictions" / "score.json").read_text()),
                         json.loads((out / "results.json").read_text()))
    run_only = ("preset", "preset_knobs", "codec", "model", "timing")  # what eval knows and saved files do not
    assert {k: v for k, v in scored.items() if k not in ("results", "max_frames")} == {
        k: v for k, v in evaluated.items() if k not in run_only}
    assert scored["results"] == str(out / "predictions") and set(SCORE_KEYS) <= set(scored)
    assert scored["max_frames"] is None  # whole videos, as eval scores them
    for absent in run_only:
        assert absent not in scored
    assert f"PCK@0.1 {evaluated['PCK@0.1']:.4f}" in capsys.readouterr().out


def test_eval_jhmdb_scores_the_coordinates_it_writes(tmp_path, jhmdb_root, eval_and_score, monkeypatch):
    """A joint 3.0004 px from the GT where PCK@0.1's threshold is 3 px: a miss unrounded, a hit as
    written (3 decimals). eval must report what the saved file scores, as score does."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 4)
    j = np.arange(15)
    frame = np.stack([101 + j * 30 // 14, 81 + j * 40 // 14])  # 1-based; box 30 x 40 px: 0.6 x 50 = 30 px
    scipy.io.savemat(root / "joint_positions" / NAME / "joint_positions.mat",
                     {"pos_img": np.repeat(frame[:, :, None], 4, axis=2).astype(np.float64)})

    def propagate_video(propagator, video, gt, codec):
        pred = gt.copy()
        pred[1:, 5, 0] += 3.0004
        return pred, np.ones(gt.shape[:2], bool)

    monkeypatch.setattr("vidcorr.evaluate.jhmdb.propagate_video", propagate_video)
    out = tmp_path / "out"
    run_jhmdb(build_encoder("lab-pixels"), jhmdb_preset(get_preset("crw"), size=64), JhmdbDataset(root), out)
    evaluated = json.loads((out / "results.json").read_text())
    assert evaluated["per_joint"]["PCK@0.1"][JOINT_NAMES[5]] == 1.0
    assert eval_and_score(["score", "jhmdb", "--root", str(root), "--results", str(out / "predictions")]) == 0
    scored = json.loads((out / "predictions" / "score.json").read_text())
    assert {k: scored[k] for k in SCORE_KEYS} == {k: evaluated[k] for k in SCORE_KEYS}


def _saved_predictions(root, results):
    """RESULTS/<class>/<video>.json holding the ground truth itself (every joint correct)."""
    video = JhmdbDataset(root).videos[0]
    write_prediction(results / f"{video.name}.json", video, video.joints(), np.ones((10, 15), bool))
    return results / f"{video.name}.json"


def test_score_jhmdb_skips_frame_0_unless_told(tmp_path, jhmdb_root):
    """UVC's and CRW's eval_pck.py skip frame 0, the given annotation (METHODS.md 6.2): the Python
    default, which the command line always overrides with its own. Frame 0 predicted 40 px off,
    the rest exact: only a default that scores frame 0 misses a joint."""
    dataset = JhmdbDataset(jhmdb_tree(tmp_path, jhmdb_root, 10))
    video, results = dataset.videos[0], tmp_path / "results"
    joints = video.joints().copy()
    joints[0] += 40.0
    write_prediction(results / f"{video.name}.json", video, joints, np.ones((10, 15), bool))
    default = score_jhmdb(dataset, results)
    assert default["skip_first_frame"] is True and default["PCK@0.1"] == default["PCK@0.2"] == 1.0
    assert default == score_jhmdb(dataset, results, skip_first_frame=True)
    assert score_jhmdb(dataset, results, skip_first_frame=False)["PCK@0.2"] < 1.0

def test_score_jhmdb_null_joints_are_not_counted(tmp_path, jhmdb_root, eval_and_score):
    root = jhmdb_tree(tmp_path, jhmdb_root, 10)
    path = _saved_predictions(root, tmp_path / "results")
    data = json.loads(path.read_text())
    data["keypoints"][3][2] = None
    data["keypoints"][4][0] = [float("nan"), 1.0]  # Python's json writes NaN; it means the same as null
    path.write_text(json.dumps(data))
    out = tmp_path / "pck.json"
    argv = ["score", "jhmdb", "--root", str(root), "--results", str(path.parents[1]), "--out", str(out)]
    assert eval_and_score(argv) == 0
    scored = json.loads(out.read_text())
    assert scored["PCK@0.1"] == 1.0 and scored["protocol"]["counted_joints"] == 9 * 15 - 2


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["keypoints"].pop(), "9 frames of keypoints but"),
    (lambda d: d["keypoints"][2].pop(), "keypoints[2]: expected 15 joints"),
    (lambda d: d["keypoints"][2].__setitem__(7, [1.0]),
     "keypoints[2][7] (right_elbow): expected [x, y] or null, got [1.0]"),
    (lambda d: d["keypoints"][2].__setitem__(7, ["1", 2]), "keypoints[2][7] (right_elbow): expected [x, y] or null"),
    (lambda d: d["keypoints"][2].__setitem__(7, [float("inf"), 2]), "keypoints[2][7] (right_elbow): expected [x, y]"),
    (lambda d: d["joint_names"].reverse(), "joint_names must be the JHMDB order"),
    (lambda d: d["frames"].reverse(), '"frames" are not the frame files of '),
    (lambda d: d.pop("keypoints"), 'expected an object with "keypoints"'),
])
def test_score_jhmdb_bad_prediction_exits_2_naming_the_file(tmp_path, jhmdb_root, eval_and_score, capsys,
                                                            edit, message):
    root = jhmdb_tree(tmp_path, jhmdb_root, 10)
    path = _saved_predictions(root, tmp_path / "results")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    assert eval_and_score(["score", "jhmdb", "--root", str(root), "--results", str(tmp_path / "results")]) == 2
    assert f"{path}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "results" / "score.json").exists()


def test_score_jhmdb_missing_or_unreadable_prediction(tmp_path, jhmdb_root, eval_and_score, capsys):
    root = jhmdb_tree(tmp_path, jhmdb_root, 10)
    path = _saved_predictions(root, tmp_path / "results")
    path.write_text("{not json")
    assert eval_and_score(["score", "jhmdb", "--root", str(root), "--results", str(tmp_path / "results")]) == 2
    assert f"{path}: cannot read prediction JSON" in capsys.readouterr().err
    path.unlink()
    assert eval_and_score(["score", "jhmdb", "--root", str(root), "--results", str(tmp_path / "results")]) == 2
    assert f"{path}: prediction not found" in capsys.readouterr().err
