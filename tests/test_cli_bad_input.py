"""The command line's bad-input contract: a clear message naming the file, exit 2, no partial output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import FAST, _fails
from PIL import Image

from vidcorr.cli import build_parser, main
from vidcorr.io.video import open_frames


def test_bad_inputs_name_the_file_and_leave_no_output(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "out"

    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(small)
    _fails(["propagate", str(frames), "--mask", str(small), "--out", str(out), *FAST], capsys,
           "small.png", "is 20x10 but frames are 854x480")

    rgb = tmp_path / "rgb.png"
    Image.open(mask).convert("RGB").save(rgb)
    _fails(["propagate", str(frames), "--mask", str(rgb), "--out", str(out), *FAST], capsys, "rgb.png", "RGB")

    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((480, 854), np.uint8)).save(empty)
    _fails(["propagate", str(frames), "--mask", str(empty), "--out", str(out), *FAST], capsys,
           "empty.png", "empty")

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 not a video" * 100)
    _fails(["propagate", str(broken), "--mask", str(mask), "--out", str(out), *FAST], capsys, "broken.mp4")

    _fails(["propagate", str(tmp_path / "missing"), "--mask", str(mask), "--out", str(out), *FAST], capsys,
           "missing")

    # one image was read as a video of one frame: "propagated 1 frames"
    _fails(["propagate", str(frames / "00000.jpg"), "--mask", str(mask), "--out", str(out), *FAST], capsys,
           f"{frames / '00000.jpg'}: is one image: give the folder of frames (or a video file)")

    _fails(["propagate", str(frames), "--box", "10,10,50,50", "--track", "--out", str(out), *FAST], capsys,
           "--track", "needs --mask")

    weights = tmp_path / "corrupt.safetensors"
    weights.write_bytes(b"garbage" * 50)
    _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--weights", str(weights),
            "--size", "120"], capsys, "corrupt.safetensors")

    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_unusable_output_paths_are_refused_before_any_work(two_clips, tmp_path, capsys):
    """A file where --out's folder goes (or among its parents), or a folder given for a score JSON,
    ended propagate/match/eval in a raw FileExistsError and score (after scoring) in an
    IsADirectoryError."""
    frames = _synthetic_folder(tmp_path / "frames", ["0.jpg", "1.jpg"])
    mask = tmp_path / "mask.png"
    Image.fromarray((np.array(Image.open(frames / "0.jpg"))[..., 0] > 128).astype(np.uint8)).save(mask)
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for out in (taken, taken / "out"):
        expected = "is a file, not a folder" if out == taken else f"cannot be created: {taken} is a file"
        _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--features", "lab-pixels"],
               capsys, str(out), expected)
        _fails(["match", str(frames / "0.jpg"), str(frames / "1.jpg"), "--out", str(out),
                "--features", "lab-pixels"], capsys, str(out), expected)
        _fails(["eval", "davis", "--root", str(two_clips), "--out", str(out), *FAST], capsys, str(out), expected)
        _fails(["score", "davis", "--root", str(two_clips), "--results", str(tmp_path), "--out", str(out / "s.json")],
               capsys, str(out / "s.json"), f"cannot be created: {taken} is a file")
    _fails(["score", "davis", "--root", str(two_clips), "--results", str(tmp_path), "--out", str(frames)],
           capsys, str(frames), "is a folder; expected a file name")
    assert taken.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "mask.png", "taken.txt"]


def test_a_used_output_folder_is_refused_before_the_input_is_read(tmp_path, capsys):
    """propagate / match / eval jhmdb|vip|otb read their input and loaded the model before saying
    that --out was taken (a missing input was reported first)."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    missing = tmp_path / "missing"
    for argv in (["propagate", str(missing), "--mask", str(missing / "m.png")],
                 ["match", str(missing / "a.jpg"), str(missing / "b.jpg")],
                 ["eval", "jhmdb", "--root", str(missing)], ["eval", "vip", "--root", str(missing)],
                 ["eval", "otb", "--root", str(missing)]):
        _fails([*argv, "--out", str(used), "--features", "lab-pixels"], capsys,
               f"{used}: output folder exists and is not empty")
    assert [p.name for p in used.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder_is_refused(tmp_path, capsys):
    frames = _synthetic_folder(tmp_path / "frames", ["0.jpg", "1.jpg"])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    _fails(["match", str(frames / "0.jpg"), str(frames / "1.jpg"), "--out", str(locked / "out"),
            "--features", "lab-pixels"], capsys, f"cannot be created: folder {locked} is not writable")


def test_keypoints_path_that_is_a_folder_is_refused(tmp_path, capsys):
    frames = _synthetic_folder(tmp_path / "frames", ["0.jpg", "1.jpg"])
    _fails(["propagate", str(frames), "--keypoints", str(tmp_path), "--out", str(tmp_path / "out"),
            "--features", "lab-pixels"], capsys, f"{tmp_path}: cannot read keypoints file")
    assert not (tmp_path / "out").exists()


def _synthetic_folder(folder: Path, names: list[str]) -> Path:
    """64x48 frames (a bright square moving right) saved under the given file names, in order."""
    folder.mkdir()
    for t, name in enumerate(names):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[16:32, 4 + 3 * t:20 + 3 * t] = (230, 30, 30)
        Image.fromarray(frame).save(folder / name)
    return folder


def test_frames_sharing_a_name_are_refused_not_overwritten(tmp_path, capsys):
    """0003.jpg and 0003.png both map to masks/0003.png: one result silently replaced the other. Refused
    when the folder is opened (one frame number twice), before the model is loaded."""
    frames = _synthetic_folder(tmp_path / "frames", ["0000.jpg", "0001.jpg", "0002.jpg", "0002.png"])
    mask = tmp_path / "mask.png"
    Image.fromarray((np.array(Image.open(frames / "0000.jpg"))[..., 0] > 128).astype(np.uint8) * 255).save(mask)
    out = tmp_path / "out"
    _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--features", "lab-pixels"],
           capsys, f"{frames}: 1 frame(s) named more than once (0002.jpg and 0002.png)")
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("flags", [["--size", "0"], ["--size", "-5"], ["--topk", "0"], ["--context", "-1"],
                                   ["--radius", "0"], ["--temperature", "0"], ["--temperature", "-1"],
                                   ["--batch-size", "0"], ["--fps", "-3"], ["--device", "nodevice"]])
def test_meaningless_numbers_and_devices_are_refused_by_the_parser(flags, capsys):
    """These reached torch as raw tracebacks (--size 0, --radius 0, --device nodevice) or ran and
    wrote wrong masks without a word (--topk 0, --temperature -1)."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["propagate", "v.mp4", "--mask", "m.png", "--out", "o", *flags])
    assert exit_info.value.code == 2
    assert f"argument {flags[0]}" in capsys.readouterr().err


def test_existing_output_folder_is_not_overwritten(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST], capsys,
           "exists and is not empty")
    assert (out / "keep.txt").read_text() == "mine"


def test_propagate_refuses_options_it_would_ignore(short_clip, tmp_path, capsys):
    """--batch-size with --box (the trackers embed one frame at a time; eval otb|vot likewise) and
    --fps with --no-video were accepted and did nothing."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "out"
    box = ["propagate", str(frames), "--box", "300,150,200,150", "--out", str(out), "--features", "lab-pixels"]
    for argv in (box, ["eval", "otb", "--root", str(tmp_path / "missing"), "--out", str(out), "--features",
                       "lab-pixels"]):
        for size in ("4", "8"):  # the default too, when given
            err = _fails([*argv, "--batch-size", size], capsys,
                         "--batch-size (frames per encoder call) is a propagation setting and does not apply to "
                         "tracking, which embeds one frame at a time; ")
            assert err.count("\n") == 1
    for argv in (box, ["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST]):
        err = _fails([*argv, "--no-video", "--fps", "10"], capsys,
                     "vidcorr: error: --fps sets the overlay video's frame rate: it does nothing with --no-video\n")
        assert err.count("\n") == 1
    assert not out.exists()
    # where they are used they are taken
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST, "--batch-size", "2",
                 "--fps", "10"]) == 0
    assert open_frames(out / "overlay.mp4").fps == pytest.approx(10)


@pytest.mark.parametrize("argv, said", [
    (["propagate", "a.mp4", "--mask", "m.png", "--out", "o", "--sise", "120"],
     "vidcorr propagate: error: unrecognized arguments: --sise 120; --sise: did you mean --size?"),
    (["train", "uvc", "--data", "d", "--recipie", "r.toml"],
     "vidcorr train uvc: error: unrecognized arguments: --recipie r.toml; --recipie: did you mean --recipe?"),
    (["eval", "davis", "--root", "r", "--out", "o", "--bogus"],
     "vidcorr eval davis: error: unrecognized arguments: --bogus\n"),
])
def test_a_misspelt_option_is_refused_by_its_command_with_the_closest_one(argv, said, capsys):
    """The top-level parser refused it, under `usage: vidcorr [-h] [--version] [-v] COMMAND ...`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and said in err
    assert err.startswith(f"usage: vidcorr {' '.join(argv[:2 if argv[0] != 'propagate' else 1])} ")
