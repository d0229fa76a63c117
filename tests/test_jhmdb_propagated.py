"""`vidcorr score jhmdb` of `vidcorr propagate --keypoints`' keypoints.json, on the real JHMDB clip."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from jhmdb_helpers import CLASS, NAME, jhmdb_tree

import vidcorr.cli
from vidcorr.io.jhmdb import JOINT_NAMES, SKELETON_EDGES, JhmdbDataset

N_FRAMES = 5
SCORE_KEYS = ("PCK@0.1", "PCK@0.2", "per_joint", "per_video", "skip_first_frame", "protocol")


@pytest.fixture
def root(tmp_path, data_dir):
    """A JHMDB root holding the first N_FRAMES frames (and joints) of the real clip."""
    return jhmdb_tree(tmp_path, data_dir / "jhmdb", N_FRAMES)


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.propagate_cmd", "vidcorr.cli.score_cmd"])
    return vidcorr.cli.main


def _score(cli, root, results) -> dict:
    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(results)]) == 0
    return json.loads((results / "score.json").read_text())


def test_score_jhmdb_reads_propagates_keypoints_json(tmp_path, root, cli):
    """propagate --keypoints -> RESULTS/<class>/<video>.json -> PCK, the same as of the same
    coordinates in eval's {"keypoints": ...} layout."""
    video = JhmdbDataset(root).videos[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": video.joints()[0].tolist(), "names": list(JOINT_NAMES),
                                 "edges": [list(e) for e in SKELETON_EDGES]}))
    out = tmp_path / "propagated"
    assert cli(["propagate", str(video.frames_dir), "--keypoints", str(first), "--out", str(out),
                "--features", "lab-pixels", "--size", "120", "--no-video"]) == 0
    propagated = json.loads((out / "keypoints.json").read_text())
    (tmp_path / "as_propagated" / CLASS).mkdir(parents=True)
    shutil.copy(out / "keypoints.json", tmp_path / "as_propagated" / f"{NAME}.json")
    (tmp_path / "as_eval" / CLASS).mkdir(parents=True)
    (tmp_path / "as_eval" / f"{NAME}.json").write_text(
        json.dumps({"keypoints": [f["keypoints"] for f in propagated["frames"]]}))

    scored = _score(cli, root, tmp_path / "as_propagated")
    assert {k: scored[k] for k in SCORE_KEYS} == {k: v for k, v in _score(cli, root, tmp_path / "as_eval").items()
                                                   if k in SCORE_KEYS}
    assert 0.0 <= scored["PCK@0.1"] <= scored["PCK@0.2"] <= 1.0
    assert scored["per_video"][NAME]["frames"] == N_FRAMES and scored["skip_first_frame"] is True


def _propagated_file(root, results, edit=None):
    """RESULTS/<class>/<video>.json in propagate's layout (as its writer), holding the ground truth."""
    video = JhmdbDataset(root).videos[0]
    data = {"names": list(JOINT_NAMES), "edges": [list(e) for e in SKELETON_EDGES],
            "frames": [{"frame": f"{t:05d}", "keypoints": xy.tolist()}
                       for t, xy in enumerate(video.joints(), start=1)],
            "preset": "crw", "codec": {"sigma": 0.5, "sigma_unit": "cell", "topk": 3}}
    if edit is not None:
        edit(data)
    path = results / f"{NAME}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def _renumber(data):  # a video file propagated: frames 00000, 00001, ...
    for t, frame in enumerate(data["frames"]):
        frame["frame"] = f"{t:05d}"


@pytest.mark.parametrize("edit", [None, _renumber])
def test_propagated_ground_truth_scores_one(tmp_path, root, cli, edit):
    results = tmp_path / "results"
    _propagated_file(root, results, edit)
    scored = _score(cli, root, results)
    assert scored["PCK@0.1"] == 1.0 and scored["protocol"]["counted_joints"] == (N_FRAMES - 1) * 15


def _set(key, value):
    return lambda data: data.__setitem__(key, value)


def _set_in_frame(t, key, value):
    return lambda data: data["frames"][t].__setitem__(key, value)


NEEDS_JHMDB_NAMES = "score jhmdb needs the 15 JHMDB joints in their order: neck, belly"


@pytest.mark.parametrize(("edit", "message"), [
    # a FIRST.json without "names": its keypoints are named 0, 1, ..., which fixes no order
    (_set("names", [str(j) for j in range(15)]), ("names its keypoints 0, 1, 2, 3", NEEDS_JHMDB_NAMES)),
    (_set("names", list(reversed(JOINT_NAMES))), "names its keypoints left_ankle, right_ankle"),
    (_set("names", ["nose", "tail"]), NEEDS_JHMDB_NAMES),
    (lambda d: d.pop("names"), ('keypoints.json has no "names"; score jhmdb needs', NEEDS_JHMDB_NAMES)),
    (_set_in_frame(2, "frame", "frame_2"), '"frames" are neither the frame files of '),
    (lambda d: d["frames"][2].pop("keypoints"), 'frames[2] has no "keypoints"'),
    (lambda d: d["frames"][2]["keypoints"].pop(), 'frames[2]["keypoints"]: expected 15 joints'),
    (lambda d: d["frames"][2]["keypoints"].__setitem__(7, [1.0]),
     'frames[2]["keypoints"][7] (right_elbow): expected [x, y] or null, got [1.0]'),
    (lambda d: d["frames"].pop(), f"{N_FRAMES - 1} frames of keypoints but"),
])
def test_propagated_file_errors_say_why(tmp_path, root, cli, capsys, edit, message):
    path = _propagated_file(root, tmp_path / "results", edit)
    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and all(m in err for m in ((message,) if isinstance(message, str) else message))
    assert not (tmp_path / "results" / "score.json").exists()


def test_propagated_joint_positions_are_scored(tmp_path, root, cli):
    """Not only read: a propagated joint 40 px off the ground truth in every later frame is a miss."""
    def shift_neck(data):
        for frame in data["frames"][1:]:
            frame["keypoints"][0][0] += 40.0

    results = tmp_path / "results"
    _propagated_file(root, results, shift_neck)
    scored = _score(cli, root, results)
    assert scored["per_joint"]["PCK@0.2"]["neck"] == 0.0 and scored["per_joint"]["PCK@0.2"]["belly"] == 1.0
    assert np.isclose(scored["PCK@0.2"], 14 / 15)


def test_a_prefix_run_is_scored_with_max_frames_as_the_videos_cut_there(tmp_path, data_dir, root, cli, capsys):
    """`propagate --max-frames 3` of a 5-frame video: refused without --max-frames (saying how to score
    it), scored with --max-frames 3 exactly as the same file is against a JHMDB root whose video ends at
    frame 3; --max-frames is stated in score.json and the summary line. Another N is refused, naming 3."""
    video = JhmdbDataset(root).videos[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": video.joints()[0].tolist(), "names": list(JOINT_NAMES)}))
    out = tmp_path / "propagated"
    assert cli(["propagate", str(video.frames_dir), "--keypoints", str(first), "--out", str(out), "--max-frames", "3",
                "--features", "lab-pixels", "--size", "120", "--no-video"]) == 0
    results = tmp_path / "results"
    (results / CLASS).mkdir(parents=True)
    shutil.copy(out / "keypoints.json", results / f"{NAME}.json")
    capsys.readouterr()

    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(results)]) == 2
    assert capsys.readouterr().err.endswith(f"3 frames of keypoints but {video.frames_dir} has 5 frames (a `propagate "
                                            "--max-frames 3` run? score its first 3 frames with --max-frames 3)\n")
    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(results), "--max-frames", "4"]) == 2
    assert "--max-frames 4 scores the first 4 frames of" in capsys.readouterr().err
    assert not (results / "score.json").exists()

    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(results), "--max-frames", "3"]) == 0
    assert "mean over joints (1 video(s), first 3 frames, frame 0 skipped): PCK@0.1" in capsys.readouterr().out
    prefix = json.loads((results / "score.json").read_text())
    whole = _score(cli, jhmdb_tree(tmp_path / "short", data_dir / "jhmdb", 3), results)
    assert prefix["max_frames"] == 3 and whole["max_frames"] is None
    assert {k: prefix[k] for k in SCORE_KEYS if k != "protocol"} == {k: whole[k] for k in SCORE_KEYS if k != "protocol"}
    assert prefix["per_video"][NAME]["frames"] == 3 and prefix["protocol"]["counted_joints"] == 2 * 15
    assert cli(["score", "jhmdb", "--root", str(root), "--results", str(results), "--max-frames", "1"]) == 2
