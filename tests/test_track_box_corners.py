"""A first box given as (x1, y1, x2, y2) corners where (x, y, w, h) is wanted: both are 4 numbers, so
it was tracked as a box reaching past the frame, without a word. `corner_box_warning` says so
when the box runs past the right or bottom edge and its corners reading fits in the frame."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

import vidcorr
from vidcorr.cli import main
from vidcorr.io.tracking import read_otb_boxes, read_vot_boxes
from vidcorr.track import corner_box_warning

# Crossing's first ground-truth line "205 151 17 50" (1-based), as --box takes it (0-based)
CROSSING_BOX = (204.0, 150.0, 17.0, 50.0)
CROSSING_CORNERS = (204.0, 150.0, 221.0, 200.0)  # the same box as x1,y1,x2,y2


def _sequences(data_dir):
    """(name, frame (H, W), ground-truth boxes (T, 4) 0-based x, y, w, h) of the shared OTB and VOT sequences."""
    otb, vot = data_dir / "tracking" / "otb", data_dir / "tracking" / "vot2015"
    for name in ("Soccer", "Crossing"):
        size = Image.open(otb / name / "img" / "0001.jpg").size
        yield name, size[::-1], read_otb_boxes(otb / name / "groundtruth_rect.txt")
    for name in ("ball1", "car1"):
        size = Image.open(vot / name / "00000001.jpg").size
        yield name, size[::-1], read_vot_boxes(vot / name / "groundtruth.txt")


def test_no_ground_truth_box_is_taken_for_corners(data_dir):
    """Objects leave the frame in OTB and VOT: none of their 869 real boxes is warned about, while
    each one's corners that run past the frame is, naming the box itself as the fix."""
    warned = 0
    for name, frame_hw, boxes in _sequences(data_dir):
        height, width = frame_hw
        for x, y, w, h in boxes:
            assert corner_box_warning((x, y, w, h), frame_hw) is None, (name, x, y, w, h)
            corners = (x, y, x + w, y + h)
            message = corner_box_warning(corners, frame_hw, flag="--box")
            if 2 * x + w > width or 2 * y + h > height:  # read as x,y,w,h the corners pass an edge
                warned += 1
                fix = ",".join(f"{v:g}" for v in (x, y, (x + w) - x, (y + h) - y))
                assert message is not None and message.endswith(f"give --box {fix}"), (name, message)
            else:
                assert message is None
    assert warned > 300  # the check is exercised on most of the real boxes, not on a few


def test_propagate_warns_about_corners_and_tracks_the_box_as_given(tmp_path, data_dir, caplog):
    frames = data_dir / "tracking" / "otb" / "Crossing" / "img"
    argv = ["propagate", str(frames), "--max-frames", "2", "--no-video", "--features", "lab-pixels"]
    text = ",".join(f"{v:g}" for v in CROSSING_CORNERS)
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--box", text, "--out", str(tmp_path / "corners")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["--box 204,150,221,200 is x,y,w,h (top-left corner, width, height): it reaches "
                        "(425, 350), past the edge of the 360x240 frame. If 221,200 is its bottom-right corner "
                        "(x1,y1,x2,y2), give --box 204,150,17,50"]
    saved = json.loads((tmp_path / "corners" / "boxes.json").read_text())["frames"]
    assert saved[0]["box"] == list(CROSSING_CORNERS)  # a warning: the box is still tracked as given
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--box", "204,150,17,50", "--out", str(tmp_path / "box")]) == 0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("box, warned", [(CROSSING_CORNERS, True), (CROSSING_BOX, False)])
def test_track_box_warns_about_corners_at_the_call(data_dir, caplog, box, warned):
    frames = np.zeros((2, 240, 360, 3), np.uint8)  # Crossing's frame size: no frame need be read
    with caplog.at_level(logging.WARNING, logger="vidcorr.api"):
        vidcorr.track_box(list(frames), box, encoder=vidcorr.encoder_for(features="lab-pixels")).close()
    messages = [r.getMessage() for r in caplog.records if r.name == "vidcorr.api"]
    if warned:
        assert messages == ["track_box: box (204, 150, 221, 200) is x,y,w,h (top-left corner, width, height): "
                            "it reaches (425, 350), past the edge of the 360x240 frame. If 221,200 is its "
                            "bottom-right corner (x1,y1,x2,y2), give (204, 150, 17, 50)"]
    else:
        assert messages == []
