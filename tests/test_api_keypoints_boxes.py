"""The API's keypoints and boxes: the command line's results, first boxes at the frame edge, absent keypoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from api_helpers import _crw_small
from synthetic import PatchEncoder
from test_propagate import _texture_video

import vidcorr
from vidcorr import api
from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.io.jhmdb import JOINT_NAMES, read_joints
from vidcorr.io.tracking import polygon_to_box


def test_keypoints_given_as_row_column_are_told_so(data_dir, tmp_path, capsys):
    """The real clip's first-frame joints as (y, x), numpy's (row, column) order: the neck's (105.5, 285.5)
    lies below the 320x240 frame, and every joint lies on it swapped back; the refusal says so. A point
    off the frame either way gets no such hint."""
    video = data_dir / "jhmdb" / "Rename_Images" / "catch" / "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    joints = read_joints(data_dir / "jhmdb" / "joint_positions" / "catch" / video.name / "joint_positions.mat")[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": joints[:, ::-1].tolist()}))
    out = tmp_path / "out"
    assert main(["propagate", str(video), "--keypoints", str(first), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vidcorr: error: {first}: keypoint 0 at (105.5, 285.5) lies outside the 320x240 first frame; mark it "
        '"visible": false or fix the coordinates; keypoints are [x, y] (column, row): swapped, every visible one '
        "lies on the frame") and not out.exists()
    frames = [np.zeros((240, 320, 3), np.uint8)] * 2
    with pytest.raises(InputError) as error:  # (250, 250) is off the frame whichever way it is read
        vidcorr.propagate_keypoints(frames, [[10.0, 20.0], [250.0, 250.0]], encoder=PatchEncoder())
    assert str(error.value).endswith("fix the coordinates")


def test_propagate_keypoints_equals_the_command_line(data_dir, tmp_path):
    """Real JHMDB frames and joints: the API's points are the CLI's keypoints.json (3 decimals)."""
    clip = data_dir / "jhmdb" / "Rename_Images" / "catch" / "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(1, 6):
        (frames / f"{t:05d}.png").write_bytes((clip / f"{t:05d}.png").read_bytes())
    joints = read_joints(data_dir / "jhmdb" / "joint_positions" / "catch" / clip.name / "joint_positions.mat")[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": joints.tolist(), "names": list(JOINT_NAMES),
                                 "visible": [True] * 14 + [False]}))
    out = tmp_path / "cli"
    assert main(["propagate", str(frames), "--keypoints", str(first), "--out", str(out), "--no-video",
                 "--features", "lab-pixels"]) == 0
    saved = json.loads((out / "keypoints.json").read_text())["frames"]
    encoder = vidcorr.encoder_for(features="lab-pixels")
    got = list(vidcorr.propagate_keypoints(frames, first, encoder=encoder))
    assert len(got) == len(saved) == 5
    for (frame, points, visible), row in zip(got, saved):
        assert frame.shape == (240, 320, 3) and not visible[14] and np.isnan(points[14]).all()
        want = np.array([p if p is not None else [np.nan, np.nan] for p in row["keypoints"]], np.float64)
        np.testing.assert_allclose(points, want, atol=6e-4)
    # an array gives the same as the file (all visible but the last, as the file says)
    again = list(vidcorr.propagate_keypoints(frames, joints, visible=[True] * 14 + [False], encoder=encoder))
    np.testing.assert_array_equal(again[-1][1], got[-1][1])
    # keypoints without names of their own are not named twice (it said "keypoint 1 (1)")
    with pytest.raises(InputError, match=r"^keypoint 1 at \(400, 10\) lies outside the 320x240"):
        vidcorr.propagate_keypoints(frames, np.array([[10.0, 10.0], [400.0, 10.0]]), encoder=encoder)
    with pytest.raises(InputError, match=r"^no keypoints given \(an empty list\)"):  # was "all 0 have no position"
        vidcorr.propagate_keypoints(frames, np.zeros((0, 2)), encoder=encoder)


def test_track_box_equals_the_command_line(data_dir, tmp_path):
    # dog-agility: 25 frames, the same 456x256 as the others; the comparison is frame by frame, so
    # bear's 82 frames (3x the time, twice over: command line and API) showed nothing more
    video = data_dir / "videos" / "davis2016-train" / "dog-agility.mp4"
    out = tmp_path / "cli"
    assert main(["propagate", str(video), "--box", "100,60,80,60", "--tracker", "dcf", "--out", str(out),
                 "--no-video", "--features", "lab-pixels"]) == 0
    saved = [row["box"] for row in json.loads((out / "boxes.json").read_text())["frames"]]
    got = list(vidcorr.track_box(video, (100, 60, 80, 60), tracker="dcf",
                                 encoder=vidcorr.encoder_for(features="lab-pixels")))
    assert len(got) == len(saved) > 10
    assert got[0][1] == (100, 60, 80, 60)
    np.testing.assert_allclose([box for _, box in got], saved, atol=6e-3)
    assert all(frame.ndim == 3 for frame, _ in got[:3])
    with pytest.raises(ValueError, match="first box 5000,60,80,60 lies outside the 456x256 first frame"):
        vidcorr.track_box(video, (5000, 60, 80, 60))  # raised at the call, before iterating



@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_track_box_refuses_propagation_settings_saying_why(tracker):
    """size=240 was "unknown localise setting(s) ['size']": now the command line's explanation."""
    frames, _ = _texture_video(n_frames=2)
    for name, value in [("size", 240), ("n_previous", 3), ("batch_size", 2)]:
        with pytest.raises(InputError, match=f"^{name} is a propagation setting and does not apply to tracking; "
                                             f"the {tracker} tracker takes its own settings"):
            api.track_box(frames, (10, 10, 20, 20), tracker=tracker, encoder=PatchEncoder(), **{name: value})
    if tracker == "localise":  # a name both have is the tracker's own setting
        assert len(list(api.track_box(frames, (10, 10, 20, 20), tracker=tracker, encoder=PatchEncoder(),
                                      temperature=0.05))) == 2
    with pytest.raises(ValueError, match="unknown .* setting"):  # not a propagation name: as before
        api.track_box(frames, (10, 10, 20, 20), tracker=tracker, encoder=PatchEncoder(), sizes=240)


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_a_first_box_may_leave_the_frame_but_must_overlap_it(tracker):
    """OTB / VOT objects leave the frame edges: a box partly outside (or larger than the frame) is
    tracked; one that shares no pixel with the frame, or has no size, is refused naming the box."""
    frames, _ = _texture_video(n_frames=3)  # 96x64
    for box in [(-10, -8, 30, 24), (80.5, 50, 40, 40), (-20, -20, 140, 110)]:
        got = list(api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder()))
        assert len(got) == 3 and got[0][1] == box and np.isfinite([b for _, b in got]).all()
    for box in [(-30, 10, 30, 30), (96, 10, 20, 20), (10, 64, 20, 20)]:  # ends at / starts on an edge
        with pytest.raises(ValueError, match=rf"first box {box[0]},{box[1]},{box[2]},{box[3]} lies outside "
                                             r"the 96x64 first frame \(a box partly outside is fine"):
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())
    for box in [(10, 10, 0, 20), (10, 10, 20, -5)]:
        with pytest.raises(ValueError, match=rf"first box 10,10,{box[2]},{box[3]} must have .* positive size"):
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())
    for box in [("a", 0, 5, 5), None, (10, 10, True, 20), (np.bool_(True), 10, 20, 20), "1234",
                torch.tensor([10, 10, 1, 20]).bool()]:  # float(True) is 1
        with pytest.raises(ValueError, match=r"first box must be \(x, y, w, h\), 4 numbers, got") as caught:
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())
        assert "polygon" not in str(caught.value)
    # VOT's groundtruth line: 8 polygon values, told the line that makes its box
    polygon = [10.5, 5.0, 40.0, 6.0, 39.0, 30.0, 9.0, 29.0]
    with pytest.raises(ValueError, match=r"4 numbers, got \[10.5, .*\]; a VOT polygon \(x1,y1,...,x4,y4\)\? the box "
                                         r"its corners span is \(9, 5, 31, 25\): "
                                         r"vidcorr.io.tracking.polygon_to_box\(np.asarray\(polygon\)\)"):
        api.track_box(frames, polygon, tracker=tracker, encoder=PatchEncoder())

    box = tuple(polygon_to_box(np.asarray(polygon)))  # the line works as given
    assert box == (9.0, 5.0, 31.0, 25.0) and len(list(api.track_box(frames, box, encoder=PatchEncoder()))) == 3


def test_a_nan_first_keypoint_is_absent_or_an_error_if_marked_visible(tmp_path):
    """NaN (None, JSON null) = no position: not visible unless marked so, which is refused at the call
    naming the keypoint (it used to be propagated as an empty channel and yielded as visible)."""
    frames, _ = _texture_video(n_frames=3)
    points = [[10.0, 12.0], [np.nan, np.nan], [50.0, 40.0]]
    got = list(api.propagate_keypoints(frames, points, encoder=PatchEncoder(), preset=_crw_small()))
    want = list(api.propagate_keypoints(frames, [[10.0, 12.0], [30.0, 30.0], [50.0, 40.0]], visible=[1, 0, 1],
                                        encoder=PatchEncoder(), preset=_crw_small()))
    assert len(got) == 3
    for (_, p, v), (_, wp, wv) in zip(got, want):
        assert v.tolist() == wv.tolist() == [True, False, True]
        np.testing.assert_array_equal(p, wp)
    with pytest.raises(InputError, match=r"keypoint 1 at \(nan, nan\) has no position \(NaN\) but is marked visible"):
        api.propagate_keypoints(frames, points, visible=[True, True, True], encoder=PatchEncoder())
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": [[10, 12], None, [50, 40]], "names": ["neck", "belly", "face"]}))
    assert [v.tolist() for _, _, v in api.propagate_keypoints(frames, first, encoder=PatchEncoder(),
                                                              preset=_crw_small())][0] == [True, False, True]
    with pytest.raises(InputError, match=r"first.json: keypoint 1 \(belly\) .* marked visible"):
        api.propagate_keypoints(frames, first, visible=[True, True, True], encoder=PatchEncoder())


def test_a_first_frame_without_any_visible_keypoint_is_refused_at_the_call(tmp_path):
    """Every keypoint absent (NaN / null) or marked not visible: nothing to propagate. It was accepted
    and yielded NaN for every keypoint on every frame without a word."""
    frames, _ = _texture_video(n_frames=2)
    nothing = r"no keypoint is visible in the first frame \(all 2 have no position or are marked not visible\): " \
              r"there is nothing to propagate"
    with pytest.raises(InputError, match="^" + nothing):
        api.propagate_keypoints(frames, [[np.nan, np.nan], [np.nan, np.nan]], encoder=PatchEncoder())
    with pytest.raises(InputError, match="^" + nothing):
        api.propagate_keypoints(frames, [[10.0, 12.0], [50.0, 40.0]], visible=[False, False], encoder=PatchEncoder())
    absent, hidden, shown = tmp_path / "absent.json", tmp_path / "hidden.json", tmp_path / "shown.json"
    absent.write_text(json.dumps({"keypoints": [None, None]}))
    hidden.write_text(json.dumps({"keypoints": [[10, 12], [50, 40]], "visible": [False, False]}))
    shown.write_text(json.dumps({"keypoints": [[10, 12], [50, 40]]}))
    for path in (absent, hidden):
        with pytest.raises(InputError, match=f"{path.name}: {nothing}"):
            api.propagate_keypoints(frames, path, encoder=PatchEncoder())
    with pytest.raises(InputError, match=f"{shown.name}: {nothing}"):  # the file's list replaced from Python
        api.propagate_keypoints(frames, shown, visible=[False, False], encoder=PatchEncoder())
    assert len(list(api.propagate_keypoints(frames, shown, visible=[False, True], encoder=PatchEncoder(),
                                            preset=_crw_small()))) == 2  # one visible keypoint is enough


def test_every_api_stream_can_be_closed_early_releasing_its_frames():
    """propagate_keypoints returned an itertools.chain: no close(), so a caller stopping early (or
    contextlib.closing) could not release the video it reads; the others return generators."""
    frames, masks = _texture_video(n_frames=4)
    released = []

    def video():
        try:
            yield from frames
        finally:
            released.append(True)  # the frame source closed, as open_frames closes its file

    kw = {"encoder": PatchEncoder(), "preset": _crw_small()}
    streams = [vidcorr.propagate_masks(video(), masks[0], **kw),
               vidcorr.propagate_labels(video(), masks[0].astype(np.float32), **kw),
               vidcorr.propagate_keypoints(video(), np.array([[40.0, 30.0]]), **kw),
               vidcorr.track_box(video(), (16, 8, 48, 48), encoder=PatchEncoder(), tracker="dcf")]
    for number, stream in enumerate(streams, 1):
        next(stream)
        next(stream)
        stream.close()
        assert len(released) == number, stream
