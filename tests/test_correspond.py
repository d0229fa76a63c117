"""Correspondences between two frames (`vidcorr.correspond`, `viz.draw_matches`, `vidcorr match`):
exact on a synthetic shift, on the object on real DAVIS frames, and bad input refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from synthetic import PatchEncoder
from test_propagate import _texture_video

import vidcorr
from vidcorr.cli import main
from vidcorr.correspond import match_frames
from vidcorr.io.masks import read_mask
from vidcorr.io.video import open_frames
from vidcorr.presets import customised_preset
from vidcorr.propagate import Propagator
from vidcorr.viz import draw_matches


def test_a_whole_cell_shift_is_matched_exactly_and_both_ways():
    frames, _ = _texture_video(n_frames=2, step=8)  # frame 1 = frame 0 moved 8 px (one cell) right
    prop = Propagator(PatchEncoder(), customised_preset("crw"))
    m = match_frames(prop, frames[0], frames[1], step=1)
    assert len(m) == (64 // 8) * (96 // 8)
    seen = m.points_a[:, 0] < 96 - 8  # the last column of A has left the frame in B
    np.testing.assert_allclose(m.points_b[seen] - m.points_a[seen], [[8.0, 0.0]] * int(seen.sum()))
    assert m.mutual[seen].all()
    np.testing.assert_allclose(m.points_a[:2], [[3.5, 3.5], [11.5, 3.5]])  # cell centres in pixels


def test_frames_in_the_apis_other_forms_give_the_uint8_frames_matches():
    """A float frame in [0, 1] was divided by 255 again: a near-black frame, matched silently."""
    frames, _ = _texture_video(n_frames=2)
    prop = Propagator(PatchEncoder(), customised_preset("crw"))
    want = match_frames(prop, frames[0], frames[1], step=1)
    for a, b in ((frames[0] / 255.0, frames[1] / 255.0), (torch.from_numpy(frames[0]), frames[1].astype(np.float32))):
        got = match_frames(prop, a, b, step=1)
        np.testing.assert_array_equal(got.points_b, want.points_b)
        np.testing.assert_allclose(got.similarity, want.similarity, rtol=1e-5)
    with pytest.raises(vidcorr.errors.InputError, match=r"frame B has shape \(3, 64, 96\)"):
        match_frames(prop, frames[0], frames[1].transpose(2, 0, 1))


def test_the_mask_and_step_choose_the_query_points():
    frames, masks = _texture_video(n_frames=2)
    prop = Propagator(PatchEncoder(), customised_preset("crw"))
    m = match_frames(prop, frames[0], frames[1], step=2, mask_a=masks[0])
    px = m.points_a.round().astype(int)
    assert len(m) > 0 and (masks[0][px[:, 1], px[:, 0]] == 1).all()
    assert len(match_frames(prop, frames[0], frames[1], step=2)) == 4 * 6
    with pytest.raises(ValueError, match="mask is 10x5"):
        match_frames(prop, frames[0], frames[1], mask_a=np.ones((5, 10), bool))


def test_trained_weights_match_the_car_onto_the_car(davis2016_root):
    """Real frames 0 and 10 of car-shadow at 240p: the default weights send >85 % of the car's
    points onto the car (its mask in frame 10, 8 px of slack), the Lab-pixel floor well under half."""
    frames = open_frames(davis2016_root / "JPEGImages" / "480p" / "car-shadow").read_at([0, 10])
    masks = [read_mask(davis2016_root / "Annotations" / "480p" / "car-shadow" / f"{t:05d}.png") for t in (0, 10)]
    on_car = ndimage.binary_dilation(masks[1] > 0, iterations=8)

    def share_on_car(encoder) -> tuple[float, float]:
        m = match_frames(Propagator(encoder, customised_preset("crw", size=240)), *frames, step=1, mask_a=masks[0] > 0)
        px = m.points_b.round().astype(int)
        return float(on_car[px[:, 1], px[:, 0]].mean()), float(m.mutual.mean())

    trained, trained_mutual = share_on_car(vidcorr.encoder_for("crw"))
    floor, _ = share_on_car(vidcorr.encoder_for(features="lab-pixels"))
    assert trained > 0.85 and floor < 0.5, (trained, floor)
    assert trained_mutual > 0.5


def test_draw_matches_puts_the_frames_side_by_side():
    frames, _ = _texture_video(n_frames=2, step=8)
    m = match_frames(Propagator(PatchEncoder(), customised_preset("crw")), frames[0], frames[1], step=1)
    half = frames[1][::2, ::2]  # B at half size is scaled to A's height
    picture = draw_matches(frames[0], half, m, gap=4)
    assert picture.shape == (64, 96 + 4 + 96, 3)
    no_lines = draw_matches(frames[0], half, dataclasses.replace(m, mutual=np.zeros_like(m.mutual)), gap=4)
    np.testing.assert_array_equal(no_lines[:, :96], frames[0])  # rejected matches are not drawn by default
    assert (no_lines[:, 96:100] == 255).all()  # the white gap
    assert (picture != no_lines).any(axis=2).sum() > 500  # the mutual matches' lines
    one = draw_matches(frames[0], half, m, gap=4, max_lines=1)
    assert (one != no_lines).any(axis=2).sum() < (picture != no_lines).any(axis=2).sum() / 10


def test_draw_matches_labels_the_two_frames():
    """match.png did not say which frame was A and which B: each is captioned in its corner."""
    frames, _ = _texture_video(n_frames=2, step=8)
    m = match_frames(Propagator(PatchEncoder(), customised_preset("crw")), frames[0], frames[1], step=1)
    plain = draw_matches(frames[0], frames[1], m, gap=4)
    labelled = draw_matches(frames[0], frames[1], m, gap=4, captions=("A · frame 0", "B · frame 9"))
    changed = (plain != labelled).any(axis=2)
    rows, cols = np.nonzero(changed)
    assert rows.max() < 25 and changed[:, :96].any() and changed[:, 100:].any() and not changed[:, 96:100].any()


def test_match_command_writes_the_picture_and_the_matches(davis2016_root, tmp_path, capsys):
    seq = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    mask = davis2016_root / "Annotations" / "480p" / "blackswan" / "00000.png"
    out = tmp_path / "m"
    assert main(["match", str(seq), "--frames", "0,5", "--mask", str(mask), "--out", str(out),
                 "--features", "lab-pixels", "--size", "240"]) == 0
    saved = json.loads((out / "matches.json").read_text())
    assert saved["points"] == len(saved["matches"]) > 0 and saved["preset"] == "crw"
    assert saved["mutual"] == sum(m["mutual"] for m in saved["matches"])
    picture = np.asarray(Image.open(out / "matches.png").convert("RGB"))
    assert picture.shape == (480, 854 * 2 + 8, 3)
    for x in (0, 854 + 8):  # each frame labelled ("A · frame 0", "B · frame 5") in its corner, black on white
        corner = picture[:20, x:x + 80]
        assert (corner == 0).all(axis=2).mean() > 0.4 and (corner == 255).all(axis=2).any()
    printed = capsys.readouterr().out  # the changed size is named, as propagate names it
    assert "matched both ways" in printed and printed.splitlines()[0].endswith("preset crw (--size 240)")
    # two images give the same as one video with --frames
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, frame in zip(images, open_frames(seq).read_at([0, 5])):
        Image.fromarray(frame).save(path)
    assert main(["match", *map(str, images), "--mask", str(mask), "--out", str(tmp_path / "m2"),
                 "--features", "lab-pixels", "--size", "240"]) == 0
    assert json.loads((tmp_path / "m2" / "matches.json").read_text())["matches"] == saved["matches"]


def test_match_command_leaves_the_mask_kept_in_the_frame_folder_out(davis2016_root, tmp_path, capsys):
    """`first_frame.png` beside the JPEGs, given as --mask: propagate leaves it out of the frames, match
    refused the folder ("1 image(s) not named like its 6 frames ...: first_frame.png")."""
    seq = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    folder = tmp_path / "clip"
    folder.mkdir()
    for path in sorted(seq.glob("*.jpg"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    mask = folder / "first_frame.png"
    mask.write_bytes((davis2016_root / "Annotations" / "480p" / "blackswan" / "00000.png").read_bytes())
    out = tmp_path / "m"
    assert main(["match", str(folder), "--frames", "0,5", "--mask", str(mask), "--out", str(out),
                 "--features", "lab-pixels", "--size", "120"]) == 0, capsys.readouterr().err
    saved = json.loads((out / "matches.json").read_text())
    assert saved["b"] == f"{folder}#5" and saved["points"] > 0
    mask_a = read_mask(mask) == 1  # every query point of frame A lies on the mask's object
    assert all(mask_a[round(y), round(x)] for x, y in (m["a"] for m in saved["matches"]))


def test_match_command_warns_when_the_feature_grid_is_a_few_cells(davis2016_root, tmp_path, caplog):
    """match --size 16 drew a 2-point result without a word; propagate already warned."""
    seq = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    for size, warned in (("16", True), ("120", False)):
        caplog.clear()
        assert main(["match", str(seq), "--out", str(tmp_path / size), "--features", "lab-pixels",
                     "--size", size]) == 0
        said = [r.getMessage() for r in caplog.records if "feature grid" in r.getMessage()]
        if warned:  # 16 px high at stride 8: 2 cells; 64 px gives 8
            assert said == [f"{seq}: the feature grid is only 4x2 cells (the input 28x16): each cell covers a "
                            "large part of the frame, so the results are coarse and mostly wrong. --size 64 or "
                            "more gives at least 8 cells on the short side."]
        else:
            assert not said


def test_match_counts_the_suggested_size_with_the_encoders_own_stride(davis2016_root, tmp_path, caplog):
    """A padded stride-8 ResNet rounds a 12 px side up to 2 cells (6 px a cell by the ratio): the
    suggestion is 8 cells x 8 px = 64, as propagate says; 48 gave 6 cells and the warning again."""
    seq = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    assert main(["match", str(seq), "--out", str(tmp_path / "m"), "--features", "random-resnet18",
                 "--size", "12"]) == 0
    said = [r.getMessage() for r in caplog.records if "feature grid" in r.getMessage()]
    assert len(said) == 1 and "3x2 cells (the input 21x12)" in said[0] and "--size 64 or more" in said[0]


@pytest.mark.parametrize("extra, message", [
    (["--frames", "0,500"], "frame 500 requested but there are only"),
    (["--frames", "zero,5"], "--frames expects two indices"),
    (["--mask", "SMALL"], "small.png: mask is 20x10 but frame A is 854x480"),  # the file named once
    (["--mask", "EMPTY"], "no point of frame A to match"),
])
def test_match_command_refuses_bad_input(davis2016_root, tmp_path, capsys, extra, message):
    small, empty = tmp_path / "small.png", tmp_path / "empty.png"
    Image.fromarray(np.ones((10, 20), np.uint8)).save(small)
    Image.fromarray(np.zeros((480, 854), np.uint8)).save(empty)
    extra = [str(small) if e == "SMALL" else str(empty) if e == "EMPTY" else e for e in extra]
    out = tmp_path / "m"
    assert main(["match", str(davis2016_root / "JPEGImages" / "480p" / "blackswan"), *extra, "--out", str(out),
                 "--features", "lab-pixels", "--size", "120"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_match_command_names_a_missing_image(tmp_path, capsys):
    assert main(["match", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(tmp_path / "m"),
                 "--features", "lab-pixels"]) == 2
    assert "a.png: no such image file" in capsys.readouterr().err


def test_match_command_takes_no_propagation_knobs(tmp_path, capsys):
    """Matching embeds two frames: top-k, context and window options would do nothing, so they are refused."""
    with pytest.raises(SystemExit):
        main(["match", "a.png", "b.png", "--out", str(tmp_path / "m"), "--topk", "5"])
    assert "unrecognized arguments: --topk 5" in capsys.readouterr().err


def test_match_command_refuses_frames_it_cannot_use(davis2016_root, tmp_path, capsys):
    """--frames with two images was ignored without a word; one image failed as "frame 10 requested
    but there are only 1 frames"; a negative index, "--frames -1,10", as "--frames: expected one
    argument"."""
    seq = davis2016_root / "JPEGImages" / "480p" / "blackswan"
    out = tmp_path / "m"
    short = tmp_path / "eight"
    short.mkdir()
    for path in sorted(seq.glob("*.jpg"))[:8]:
        (short / path.name).write_bytes(path.read_bytes())
    for inputs, extra, message in [
        ([seq / "00000.jpg", seq / "00005.jpg"], ["--frames", "0,5"],
         "vidcorr: error: --frames picks two frames of one video or frame folder; with two images A B, leave it out\n"),
        ([seq / "00000.jpg"], [], f"vidcorr: error: {seq / '00000.jpg'}: is one image: match needs two images (A B) or "
                                  "one video or frame folder with --frames I,J\n"),
        ([seq], ["--frames", "-1,10"], "vidcorr: error: --frames: frame indices must be >= 0 (0 is the first frame), "
                                       "got -1,10\n"),
        ([seq], ["--frames=3,-2"], "vidcorr: error: --frames: frame indices must be >= 0 (0 is the first frame), "
                                   "got 3,-2\n"),
        # the default 0,10 on 8 frames read "frame 10 requested but there are only 8 frames"
        ([short], [], f"vidcorr: error: {short}: has 8 frames, and the default --frames 0,10 needs 11; pass "
                      "--frames I,J with indices below 8\n"),
        ([short], ["--frames", "0,9"], f"vidcorr: error: {short}: frame 9 requested but there are only 8 frames "
                                       "(indices 0..7)\n"),
    ]:
        assert main(["match", *map(str, inputs), *extra, "--out", str(out), "--features", "lab-pixels"]) == 2
        assert capsys.readouterr().err.endswith(message)
    assert not out.exists()
