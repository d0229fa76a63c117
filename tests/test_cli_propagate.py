"""`propagate` end to end on real frames: masks, soft labels (float32 / float16), the size advice, boxes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import FAST, _fails, sigterm_after_writes, sigterm_default_raises
from PIL import Image
from video_helpers import write_test_video

import vidcorr.io.video as video_io
import vidcorr.viz as viz
from vidcorr.cli import main
from vidcorr.cli.propagate_cmd import _box, _frame_names
from vidcorr.io import masks as masks_io
from vidcorr.io.masks import DAVIS_PALETTE
from vidcorr.io.video import open_frames, write_video
from vidcorr.labels import one_hot_labels


def test_propagate_mask_on_a_frame_folder(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "prop"
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST, "--context", "3",
                 "--no-window-first"]) == 0
    captured = capsys.readouterr()
    # the summary names the preset with what the command line changed in it
    assert "preset crw (--size 120 --context 3 --no-window-first), in" in captured.out
    assert "propagate:" in captured.err and "/6 [" in captured.err  # a bar: it was silent till the end
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(6)]
    first = np.array(Image.open(pngs[0]))
    assert Image.open(pngs[3]).mode == "P" and first.max() == 1
    assert (out / "overlay.mp4").stat().st_size > 0


def test_propagate_soft_labels_on_a_frame_folder(short_clip, tmp_path, capsys):
    """--labels FIRST.npy: one float32 .npy per frame, the argmax of a one-hot mask's channels being
    --mask's PNGs; a malformed labels file exits 2 naming it, nothing written."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    first = tmp_path / "first.npy"
    np.save(first, one_hot_labels(np.array(Image.open(mask)) // 255).numpy())
    out, masks = tmp_path / "soft", tmp_path / "masks"
    assert main(["propagate", str(frames), "--labels", str(first), "--out", str(out), *FAST]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "overlay.mp4").stat().st_size > 0
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(masks), "--no-video", *FAST]) == 0
    files = sorted((out / "labels").glob("*.npy"))
    assert [f.name for f in files] == [f"{i:05d}.npy" for i in range(6)]
    for f in files:
        labels = np.load(f)
        assert labels.shape == (2, 480, 854) and labels.dtype == np.float32
        np.testing.assert_array_equal(labels.argmax(axis=0), np.array(Image.open(masks / "masks" / f"{f.stem}.png")))
    capsys.readouterr()
    channels_last = ("first.npy: labels are 2x854 but frames are 854x480; this looks like channels-last (H, W, K) = "
                     "(480, 854, 2): labels are channels-first (K, H, W), e.g. np.moveaxis(labels, -1, 0)")
    for bad, message in [(np.zeros((2, 48, 60), np.float32), "first.npy: labels are 60x48 but frames are 854x480\n"),
                         (np.zeros((480, 854, 2), np.float32), channels_last),
                         (np.zeros((2, 240, 427), np.float32), "first.npy: labels are 427x240 but frames are 854x480; "
                          "they have the frames' shape at 0.5x their size: resize them, np.save(path, "),
                         (np.full((480, 854), np.inf), "first.npy: labels hold NaN or infinite values")]:
        np.save(first, bad)
        assert main(["propagate", str(frames), "--labels", str(first), "--out", str(tmp_path / "x"), *FAST]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "x").exists()
    first.write_text("not an array")  # numpy's message told to load it with allow_pickle=True
    assert main(["propagate", str(frames), "--labels", str(first), "--out", str(tmp_path / "x"), *FAST]) == 2
    assert f"{first}: is not a .npy file (no NumPy header)" in (err := capsys.readouterr().err) and "pickle" not in err
    first.write_bytes(b"")  # was an EOFError traceback
    assert main(["propagate", str(frames), "--labels", str(first), "--out", str(tmp_path / "x"), *FAST]) == 2
    assert f"{first}: is not a .npy file (no NumPy header)" in capsys.readouterr().err
    np.save(first, np.zeros((480, 854), np.float32))
    first.write_bytes(first.read_bytes()[:200])  # truncated
    assert main(["propagate", str(frames), "--labels", str(first), "--out", str(tmp_path / "x"), *FAST]) == 2
    assert f"{first}: cannot read labels as a .npy array" in capsys.readouterr().err
    archive = tmp_path / "first.npz"  # was read as "dtype <U1"
    np.savez(archive, labels=np.zeros((480, 854), np.float32))
    assert main(["propagate", str(frames), "--labels", str(archive), "--out", str(tmp_path / "x"), *FAST]) == 2
    assert f"{archive}: is an .npz archive of arrays, not one .npy array" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_propagate_soft_labels_as_float16(short_clip, tmp_path, capsys):
    """--labels-dtype float16: half the bytes, the float32 run's values to float16's precision."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = np.array(Image.open(short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png")) // 255
    first = tmp_path / "first.npy"
    np.save(first, np.stack([1.0 - mask, 0.7 * mask]).astype(np.float32))  # soft, not one-hot
    runs = {}
    for dtype in ("float32", "float16"):
        out = tmp_path / dtype
        assert main(["propagate", str(frames), "--labels", str(first), "--labels-dtype", dtype, "--out", str(out),
                     "--no-video", *FAST]) == 0
        runs[dtype] = [np.load(f) for f in sorted((out / "labels").glob("*.npy"))]
    assert len(runs["float16"]) == len(runs["float32"]) == 6
    for half, single in zip(runs["float16"], runs["float32"], strict=True):
        assert half.dtype == np.float16 and single.dtype == np.float32 and half.shape == single.shape
        np.testing.assert_allclose(half.astype(np.float32), single, rtol=1e-3, atol=1e-4)
    assert 0.3 < runs["float16"][-1][1].max() <= 0.7  # the 0.7 channel carried, not renormalised
    capsys.readouterr()
    np.save(first, np.full((480, 854), 1e6, np.float32))
    assert main(["propagate", str(frames), "--labels", str(first), "--labels-dtype", "float16",
                 "--out", str(tmp_path / "x"), *FAST]) == 2
    err = capsys.readouterr().err  # the file named once, as every InputError names it
    assert (f"{first}: holds values up to 1e+06, beyond float16's range (largest 65504); "
            "keep --labels-dtype float32") in err
    assert err.count(first.name) == 1
    assert main(["propagate", str(frames), "--mask", str(tmp_path / "m.png"), "--labels-dtype", "float16",
                 "--out", str(tmp_path / "x"), *FAST]) == 2
    assert "--labels-dtype sets the type of --labels' outputs: it needs --labels" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_propagate_advises_a_smaller_size_for_large_frames(short_clip, tmp_path, caplog):
    """crw propagates at native size, defined on 480p: a 540p video gets a warning and the way out."""
    big = tmp_path / "big"
    big.mkdir()
    source = short_clip / "JPEGImages" / "480p" / "car-shadow"
    for path in sorted(source.glob("*.jpg"))[:2]:
        Image.open(path).resize((960, 540)).save(big / path.name)
    mask = tmp_path / "mask.png"
    first = Image.open(short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png")
    first.resize((960, 540), Image.NEAREST).save(mask)
    argv = ["propagate", str(big), "--mask", str(mask), "--no-video", "--features", "lab-pixels"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "native")]) == 0
    advice = [r.getMessage() for r in caplog.records if "native size" in r.getMessage()]
    assert len(advice) == 1 and "960x540" in advice[0] and "1.3x the pixels" in advice[0] and "--size 480" in advice[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "sized"), "--size", "240"]) == 0
    assert not [r for r in caplog.records if "native size" in r.getMessage()]
    assert Image.open(tmp_path / "sized" / "masks" / "00001.png").size == (960, 540)  # full-size results


def test_propagate_box_on_a_video(tmp_path, data_dir, capsys):
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    out = tmp_path / "box"
    assert main(["propagate", str(video), "--box", "100,60,80,60", "--out", str(out), "--no-video",
                 "--features", "lab-pixels"]) == 0
    assert "lab-pixels (untrained floor), tracker localise, preset crw, in" in capsys.readouterr().out
    saved = json.loads((out / "boxes.json").read_text())
    assert saved["tracker"] == "localise" and saved["preset"] == "crw"  # the preset picks the feature layer
    boxes = saved["frames"]
    assert boxes[0]["box"] == [100.0, 60.0, 80.0, 60.0]
    assert all(b["box"][2] > 0 and b["box"][3] > 0 for b in boxes)
    # propagation settings: the tracker ignored them (the same boxes), now refused by name
    for flags in (["--topk", "1"], ["--size", "100"], ["--context", "1"], ["--no-window-first"]):
        _fails(["propagate", str(video), "--box", "100,60,80,60", "--out", str(tmp_path / "x"), "--features",
                "lab-pixels", *flags], capsys, f"{flags[0].replace('no-', '')} is a propagation setting and does "
                "not apply to tracking")
    assert not (tmp_path / "x").exists()


def test_propagate_box_may_start_with_a_negative_number(tmp_path, data_dir):
    """A box partly left of or above the frame is documented as accepted, but "--box -30,-20,60,60"
    failed in argparse ("expected one argument": "-30,..." taken for an option); quoted with spaces too."""
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    for i, text in enumerate(("-30,-20,60,60", "-30 -20 60 60")):
        out = tmp_path / f"box{i}"
        assert main(["propagate", str(video), "--box", text, "--out", str(out), "--no-video", "--max-frames", "3",
                     "--features", "lab-pixels"]) == 0
        boxes = json.loads((out / "boxes.json").read_text())["frames"]
        assert len(boxes) == 3 and boxes[0]["box"] == [-30.0, -20.0, 60.0, 60.0]


def test_propagate_box_format_errors_say_what_is_wrong(tmp_path, capsys):
    """Every malformed --box was "expected x,y,w,h with positive w and h": a count or a word is now
    named as such, and a VOT groundtruth.txt line (8 numbers) gets the box its corners span."""
    out = tmp_path / "x"
    for text, expected in (
        ("492.000,463.000,539.000,463.000,539.000,417.000,492.000,417.000",
         "expected 4 numbers x,y,w,h, got 8: '492.000,463.000,539.000,463.000,539.000,417.000,492.000,417.000'; "
         "a VOT polygon (x1,y1,...,x4,y4)? the box its corners span is --box 492,417,47,46"),
        ("204,150,17", "expected 4 numbers x,y,w,h, got 3: '204,150,17'"),
        ("a,b,c,d", "expected 4 numbers x,y,w,h, got 'a,b,c,d'"),
        ("204,150,0,50", "expected x,y,w,h with positive w and h, got '204,150,0,50'"),
    ):
        with pytest.raises(SystemExit) as exit_:  # argparse's usage error
            main(["propagate", str(tmp_path), "--box", text, "--out", str(out)])
        assert exit_.value.code == 2 and f"argument --box: {expected}" in capsys.readouterr().err
    assert not out.exists()


def test_propagate_box_outside_the_frame_is_refused(tmp_path, data_dir, capsys):
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    out = tmp_path / "box"
    _fails(["propagate", str(video), "--box", "600,60,80,60", "--out", str(out), "--features", "lab-pixels"],
           capsys, "--box: first box 600,60,80,60 lies outside the 456x256 first frame")
    assert not out.exists()


def test_interrupted_propagation_leaves_nothing(short_clip, tmp_path, monkeypatch):
    """An error halfway through (here: the 4th frame fails to encode) removes the partial output."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    real_write = masks_io.write_indexed_png
    calls = {"n": 0}

    def failing_write(path, labels, palette=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("disk full")
        real_write(path, labels, palette)

    monkeypatch.setattr(masks_io, "write_indexed_png", failing_write)
    out = tmp_path / "half"
    with pytest.raises(RuntimeError, match="disk full"):
        main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--no-video", *FAST])
    assert list(tmp_path.iterdir()) == []  # no half.partial either: an error is no stop to resume from


def test_a_mask_kept_among_the_frames_is_not_a_frame(short_clip, tmp_path, capsys, caplog):
    """withmask/ = the frames + first_frame.png: the mask was propagated as a frame of its own."""
    folder = tmp_path / "withmask"
    folder.mkdir()
    for path in sorted((short_clip / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg")):
        (folder / path.name).write_bytes(path.read_bytes())
    mask = folder / "first_frame.png"
    mask.write_bytes((short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png").read_bytes())
    out = tmp_path / "o"
    with caplog.at_level("INFO"):
        assert main(["propagate", str(folder), "--mask", str(mask), "--out", str(out), "--no-video", *FAST]) == 0
    assert "propagated 6 frames" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == [f"{i:05d}.png" for i in range(6)]
    said = [r.getMessage() for r in caplog.records if "first_frame.png" in r.getMessage()]
    assert len(said) == 1 and "left first_frame.png out of the frames" in said[0]


def test_a_stray_image_among_the_frames_is_refused_naming_it(short_clip, tmp_path, capsys):
    """cover.jpg, of the frames' size, beside them: it was propagated as a frame of its own."""
    folder = tmp_path / "withcover"
    folder.mkdir()
    for path in sorted((short_clip / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg")):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "cover.jpg").write_bytes((folder / "00002.jpg").read_bytes())
    mask, out = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png", tmp_path / "o"
    _fails(["propagate", str(folder), "--mask", str(mask), "--out", str(out), *FAST], capsys,
           f"{folder}: 1 image(s) not named like its 6 frames (00000.jpg, ...): cover.jpg", "move them out")
    assert not out.exists()


def test_propagated_masks_keep_the_first_masks_palette(short_clip, tmp_path, monkeypatch):
    """An indexed first mask with colours of its own: its PNGs and overlay came back in DAVIS's
    colours; a grayscale (0/255) mask has none and keeps the DAVIS palette. The mask file is opened
    once for its ids and colours (it was opened twice)."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    gray = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    ids = (np.array(Image.open(gray)) == 255).astype(np.uint8)
    own = tmp_path / "own.png"
    image = Image.fromarray(ids, mode="L").convert("P")
    image.putpalette([10, 20, 30, 0, 200, 255])  # two entries only: the rest comes from DAVIS
    image.save(own)
    runs, opened, real_open = {}, [], Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(Path(fp)) or real_open(fp, *a, **k))
    for name, mask in (("own", own), ("gray", gray)):
        out = runs[name] = tmp_path / name
        assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST]) == 0
    assert opened.count(own) == opened.count(gray) == 1
    monkeypatch.undo()
    written = Image.open(runs["own"] / "masks" / "00003.png")
    palette = np.array(written.getpalette("RGB"), np.uint8).reshape(-1, 3)
    assert palette[:2].tolist() == [[10, 20, 30], [0, 200, 255]]
    assert (palette[2:] == DAVIS_PALETTE[2:len(palette)]).all()
    assert (np.array(written) == np.array(Image.open(runs["gray"] / "masks" / "00003.png"))).all()  # same ids
    gray_palette = np.array(Image.open(runs["gray"] / "masks" / "00003.png").getpalette("RGB"), np.uint8)
    assert (gray_palette.reshape(-1, 3) == DAVIS_PALETTE[: len(gray_palette) // 3]).all()
    car = ids.astype(bool)
    first = {name: open_frames(out / "overlay.mp4").read_at([0])[0].astype(int) for name, out in runs.items()}
    blue_minus_red = {name: (f[car, 2] - f[car, 0]).mean() for name, f in first.items()}
    assert blue_minus_red["own"] > blue_minus_red["gray"] + 60  # (0, 200, 255) tint, not DAVIS's red


def test_a_feature_grid_a_few_cells_high_is_warned_about(short_clip, tmp_path, caplog):
    """--size 10 (a grid 2 cells high) propagated garbage without a word; the size the warning suggests
    says nothing. Lab pixels have stride 8: 8 cells need 64 px (until 2026-12-07 it suggested 10 / 2
    rows x 8 = 40, a grid of 5 rows, warned about again)."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    argv = ["propagate", str(frames), "--mask", str(mask), "--no-video", "--features", "lab-pixels"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "tiny"), "--size", "10"]) == 0
    said = [r.getMessage() for r in caplog.records if "feature grid" in r.getMessage()]
    assert len(said) == 1 and "cells on the short side" in said[0], said
    assert "--size 64 or more" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "fine"), "--size", "64"]) == 0
    assert not [r for r in caplog.records if "feature grid" in r.getMessage()]


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_a_video_of_one_frame_is_refused(short_clip, tmp_path, capsys, kind):
    """One frame leaves nothing to propagate to: it wrote the first mask back and exited 0."""
    first = short_clip / "JPEGImages" / "480p" / "car-shadow" / "00000.jpg"
    if kind == "folder":
        one = tmp_path / "one"
        one.mkdir()
        (one / first.name).write_bytes(first.read_bytes())
    else:
        one = write_video(tmp_path / "one.mp4", [np.array(Image.open(first))], 24.0)
    mask, out = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png", tmp_path / "o"
    _fails(["propagate", str(one), "--mask", str(mask), "--out", str(out), *FAST], capsys,
           f"{one}: holds 1 frame: no frame to propagate the first-frame annotation to")
    assert not out.exists() and not list(tmp_path.glob(".o.partial-*"))


def test_a_palette_mask_whose_object_is_index_255_is_told_how_to_renumber_it(short_clip, tmp_path, capsys):
    """A drawing tool that gave the object palette index 255 (void) got the API's hint to read the
    file with read_mask, which the command had done; it is told to renumber the object, and that
    fix works."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    binary = np.array(Image.open(short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"))
    mask = tmp_path / "first.png"
    drawn = Image.fromarray(binary).convert("P")
    drawn.putpalette([0, 0, 0] * 255 + [255, 255, 255])
    drawn.save(mask)
    out = tmp_path / "prop"
    err = _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST], capsys,
                 "first.png: mask is empty", "its object is palette index 255, which means void")
    assert "read_mask" not in err and not out.exists()
    Image.open(mask).point(lambda v: 1 if v == 255 else v).save(mask)  # the fix the message gives
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--no-video", *FAST]) == 0


@pytest.mark.parametrize("text", ["120,80,64,48", "120 80 64 48", "120\t80\t64\t48", "(120, 80, 64, 48)",
                                  "[120,80,64,48]"])
def test_box_takes_commas_spaces_or_a_printed_tuple(text):
    """A box pasted from an OTB ground-truth line (spaces or tabs) or a printed tuple was refused."""
    assert _box(text) == (120.0, 80.0, 64.0, 48.0)


@pytest.mark.parametrize("text", ["120,80,64", "a,b,c,d", "120,80,0,48", "", "1,2,3,4,5"])
def test_a_box_that_is_not_four_numbers_with_a_positive_size_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected (4 numbers x,y,w,h|x,y,w,h with positive w and h)"):
        _box(text)


def test_sigterm_halfway_leaves_nothing_and_exits_143(short_clip, tmp_path, monkeypatch, capsys):
    """`kill` or `timeout` (SIGTERM) ended the process at once and left a hidden .OUT.partial-*
    folder of half the masks; it unwinds as Ctrl-C does, says so, and exits 143."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    calls = sigterm_after_writes(monkeypatch, masks_io, 3)
    with sigterm_default_raises() as unhandled:
        with pytest.raises(SystemExit) as stop:
            main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "half"), *FAST])
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    err = capsys.readouterr().err
    assert stop.value.code == 143
    assert "vidcorr propagate: stopped by SIGTERM after " in err and "nothing written: " in err
    assert len(calls) == 3 and [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("command", ["propagate", "match"])
def test_sigterm_as_the_model_loads_says_nothing_was_done(short_clip, tmp_path, monkeypatch, capsys, command):
    """SIGTERM after parsing, before the command's own handler (`sigterm_cleans_up`): the command
    line's start-up handler was given back at parsing's end, and SIGTERM's default ended the command
    with exit 143 and not a word. It is held until the command's handler takes over."""
    import vidcorr.cli.match_cmd as match_cmd
    import vidcorr.cli.propagate_cmd as propagate_cmd

    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    argv = {"propagate": ["propagate", str(frames), "--mask", str(mask)],
            "match": ["match", str(frames), "--frames", "0,1"]}[command]
    owner = {"propagate": propagate_cmd, "match": match_cmd}[command]
    monkeypatch.setattr(owner, "load_model", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))
    with sigterm_default_raises() as unhandled:
        assert main([*argv, "--out", str(tmp_path / "out"), *FAST]) == 143
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    assert capsys.readouterr().err == "vidcorr: interrupted by SIGTERM while starting; nothing was done\n"
    assert list(tmp_path.iterdir()) == []


def test_max_frames_propagates_the_first_frames_of_a_video_only(tmp_path, data_dir, capsys):
    """A quick look at a long video had to be cut into a copy first; --max-frames N stops after N
    frames: N masks, an overlay of N frames at their own times, a summary that says so."""
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    height, width = open_frames(video).size
    mask = np.zeros((height, width), np.uint8)
    mask[height // 3:height // 2, width // 3:width // 2] = 1
    Image.fromarray(mask).save(tmp_path / "first.png")
    out = tmp_path / "quick"
    assert main(["propagate", str(video), "--mask", str(tmp_path / "first.png"), "--out", str(out), "--max-frames", "4",
                 *FAST]) == 0
    assert f"propagated the first 4 frames (--max-frames) of {video}" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:05d}.png" for i in range(4)]
    overlay = open_frames(out / "overlay.mp4")
    assert len(list(overlay)) == 4 and overlay.frame_times() == open_frames(video).frame_times()[:4]


def test_max_frames_beyond_a_folder_takes_every_frame_and_below_2_is_refused(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "all"
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--no-video", "--max-frames", "50",
                 *FAST]) == 0
    assert f"propagated 6 frames of {frames}" in capsys.readouterr().out and len(list((out / "masks").iterdir())) == 6
    with pytest.raises(SystemExit):
        main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "x"), "--max-frames", "1"])
    assert "--max-frames: expected a number of frames >= 2" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_propagate_numbers_the_overlay_frames(short_clip, tmp_path, monkeypatch):
    """The overlay video's frames had no number: each has "frame t" (0-based) in its top-left corner."""
    drawn = []

    def keep(path, frames, fps, times=None):
        drawn.extend(frames)
        Path(path).write_bytes(b"")

    monkeypatch.setattr(video_io, "write_video", keep)
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "o"), "--max-frames", "3",
                 *FAST]) == 0
    assert len(drawn) == 3
    for overlay in drawn:  # a black box with white text on the bright building at the top left
        corner = overlay[:20, :60]
        assert (corner == 0).all(axis=2).mean() > 0.4 and (corner == 255).all(axis=2).any()
    assert (drawn[1][:20, :60] != drawn[2][:20, :60]).any()  # "frame 1", "frame 2"


def test_a_folders_overlay_frames_name_their_files_where_numbers_have_gaps(short_clip, tmp_path, monkeypatch):
    """A folder numbered 00000, 00002, 00005: its results are masks/00002.png and masks/00005.png,
    but the overlay said "frame 1" and "frame 2" only, which named no result file."""
    source = short_clip / "JPEGImages" / "480p" / "car-shadow"
    frames = tmp_path / "gaps"
    frames.mkdir()
    for name in ("00000.jpg", "00002.jpg", "00005.jpg"):
        shutil.copy(source / name, frames / name)
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    texts = []
    real_caption = viz.caption
    monkeypatch.setattr(viz, "caption", lambda image, text: texts.append(text) or real_caption(image, text))
    out = tmp_path / "o"
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00002.png", "00005.png"]
    assert texts == ["frame 0 · 00000.jpg", "frame 1 · 00002.jpg", "frame 2 · 00005.jpg"]


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("stop_it, said, code", [(_ctrl_c, "interrupted", 130), (_sigterm, "stopped by SIGTERM", 143)])
def test_a_stop_halfway_says_how_far_it_got_and_that_nothing_was_written(short_clip, tmp_path, monkeypatch, capsys,
                                                                        stop_it, said, code):
    """Ctrl-C after the 2nd of 6 masks said only "vidcorr: interrupted", and SIGTERM only "stopped by
    SIGTERM; nothing written": a user who stopped a long video near its end was left to look for the
    masks done so far. The one line says how many frames were done of how many, that none was kept
    and that a new run starts again; exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    real_write, written = masks_io.write_indexed_png, []

    def write_then_stop(path, labels, palette=None):
        if len(written) == 2:
            stop_it()
        real_write(path, labels, palette)
        written.append(path)

    monkeypatch.setattr(masks_io, "write_indexed_png", write_then_stop)
    with sigterm_default_raises(), pytest.raises(SystemExit) as stop:
        main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "half"), *FAST])
    err = capsys.readouterr().err
    assert stop.value.code == code and f"vidcorr propagate: {said} after 2 of 6 frames (0:0" in err
    assert f"nothing written: {tmp_path / 'half'} appears only once every frame is done" in err
    assert err.count("vidcorr") == 1 and list(tmp_path.iterdir()) == []  # one line: no "vidcorr: interrupted" after


@pytest.mark.parametrize("no_video", [[], ["--no-video"]])
def test_the_bar_of_a_matroska_video_has_a_total_and_an_eta(tmp_path, capsys, no_video):
    """A Matroska / WebM header gives no frame count, and the bar showed frames done only, no total
    and no time left, through a long video; its packets give the count (demuxing only)."""
    video = tmp_path / "clip.mkv"
    write_test_video(video, 5, fps=10, size=(96, 64), audio_seconds=0.5)  # with a sound track, as a camera's
    assert open_frames(video).num_frames is None  # else this test would not test the fallback
    Image.fromarray(np.pad(np.ones((20, 30), np.uint8), ((20, 24), (30, 36)))).save(tmp_path / "first.png")
    assert main(["propagate", str(video), "--mask", str(tmp_path / "first.png"), "--out", str(tmp_path / "o"),
                 "--features", "lab-pixels", *no_video]) == 0
    assert "| 0/5 [" in capsys.readouterr().err and len(list((tmp_path / "o" / "masks").iterdir())) == 5


def test_a_videos_result_names_sort_in_frame_order_past_100000_frames(tmp_path):
    """A video's results were named f"{t:05d}": frame 100000 of a long video (an hour at 30 frames/s)
    became 100000.png, which sorts before 10001.png. The names are as wide as the last frame's number."""
    write_test_video(tmp_path / "clip.mp4", 3)
    source = open_frames(tmp_path / "clip.mp4")
    assert [_frame_names(source)[t] for t in (0, 2)] == ["00000", "00002"]  # DAVIS's 5 digits up to 99,999 frames
    source.num_frames = 100_001  # what an hour-long video's header says
    names = [_frame_names(source)[t] for t in (9, 10_001, 99_999, 100_000)]
    assert names == ["000009", "010001", "099999", "100000"] and sorted(names) == names
    assert _frame_names(open_frames(tmp_path / "clip.mp4").head(2))[1] == "00001"
