"""`vidcorr.match_frames`: what `vidcorr match A B` finds, from Python. The API had no way to it short
of building a `Propagator` by hand, where every other command has its function."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

import vidcorr
from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.io.masks import read_mask


@pytest.fixture(scope="module")
def lab():
    return vidcorr.encoder_for(features="lab-pixels")


def _blackswan(davis2016_root):
    images = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    mask = davis2016_root / "Annotations" / "480p" / "blackswan" / "00000.png"
    return images / "00000.jpg", images / "00005.jpg", mask


def test_match_frames_gives_the_commands_matches(davis2016_root, tmp_path, lab):
    """Real blackswan frames 0 and 5 with the swan's mask, at 240p: the matches.json of `vidcorr match`
    (pixels to 0.1, similarity to 1e-4), from the paths and from the frames as arrays alike."""
    a, b, mask = _blackswan(davis2016_root)
    out = tmp_path / "m"
    assert main(["match", str(a), str(b), "--mask", str(mask), "--out", str(out), "--features", "lab-pixels",
                 "--size", "240"]) == 0
    saved = json.loads((out / "matches.json").read_text())["matches"]
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in (a, b)]
    for got in (vidcorr.match_frames(a, b, mask_a=mask, encoder=lab, size=240),
                vidcorr.match_frames(str(a), frames[1], mask_a=read_mask(mask), encoder=lab, size=240),
                vidcorr.match_frames(*frames, mask_a=Image.open(mask), encoder=lab, size=240)):
        assert got.to_dict()["matches"] == saved and len(saved) > 20
        assert got.grid_a == (30, 54)  # 240 x 427 input, stride 8 (ceil)


def test_match_frames_queries_only_the_masks_objects(davis2016_root, lab):
    """Every query point lies on the swan (its 0/255 mask read as object 1); the whole frame has
    many more (step 2 of 30 x 54 cells: 15 x 27)."""
    a, b, mask = _blackswan(davis2016_root)
    swan = read_mask(mask) == 1
    masked = vidcorr.match_frames(a, b, mask_a=mask, encoder=lab, size=240)
    px = masked.points_a.round().astype(int)
    assert swan[px[:, 1], px[:, 0]].all()
    assert len(vidcorr.match_frames(a, b, encoder=lab, size=240)) == 15 * 27 > len(masked)


def test_match_frames_refuses_bad_masks_and_warns_on_a_coarse_grid(davis2016_root, tmp_path, lab, caplog):
    a, b, mask = _blackswan(davis2016_root)
    with pytest.raises(InputError, match="mask is 427x240 but frames are 854x480"):
        vidcorr.match_frames(a, b, mask_a=np.ones((240, 427), np.uint8), encoder=lab)
    with pytest.raises(InputError, match="no object"):
        vidcorr.match_frames(a, b, mask_a=np.zeros((480, 854), np.uint8), encoder=lab)
    dot = np.zeros((480, 854), np.uint8)
    dot[0, 0] = 1  # on no cell centre at step 2
    with pytest.raises(InputError, match="no point of frame A to match: the mask covers no feature cell centre"):
        vidcorr.match_frames(a, b, mask_a=dot, encoder=lab, size=240)
    with pytest.raises(InputError, match="no such image file"):
        vidcorr.match_frames(tmp_path / "missing.jpg", b, encoder=lab)
    with caplog.at_level(logging.WARNING):
        vidcorr.match_frames(a, b, encoder=lab, size=32)  # 4 x 8 cells
    assert any("size=" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
