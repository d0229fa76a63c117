"""The core commands end to end on real data at reduced size: eval davis, propagate (mask, box),
demo, and the bad-input contract (clear message naming the file, exit 2, no partial output)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidcorr.cli import main
from vidcorr.io.video import open_frames
from vidcorr.metrics.davis import GLOBAL_KEYS

FAST = ["--features", "lab-pixels", "--size", "120"]


def test_eval_davis_resume_keeps_finished_sequences_of_the_same_run_only(two_clips, tmp_path, capsys):
    """An interrupted run (here: one sequence done) continues with --resume; the results equal an
    uninterrupted run's. Another model's folder is refused, and so is a plain run into a used folder."""
    full, out = tmp_path / "full", tmp_path / "out"
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(full), "--overlays", *FAST]) == 0
    for seq in ("blackswan", "car-shadow"):  # overlays beside, not inside, the folders the scorer reads
        video = open_frames(full / "overlays" / f"{seq}.mp4").read_all()
        assert video.shape == (4, 480, 854 + 8 + 854, 3)  # propagated | annotation
        assert {p.suffix for p in (full / seq).iterdir()} == {".png"}
        # the right half is the annotation drawn on the frame: tinted exactly where the mask is
        annotation = np.array(Image.open(two_clips / "Annotations" / "480p" / seq / "00003.png")) > 0
        frame = next(iter(open_frames(two_clips / "JPEGImages" / "480p" / seq).read_at([3])))
        moved = np.abs(video[3, 30:, 862:].astype(int) - frame[30:].astype(int)).sum(axis=2) > 60
        assert (moved & ~annotation[30:]).mean() < 0.02 and (moved & annotation[30:]).sum() > 0.5 * annotation[30:].sum()
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--sequences", "blackswan", *FAST]) == 0
    done = (out / "blackswan" / "00000.png").stat().st_mtime_ns
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume", *FAST]) == 0
    resumed, expected = (json.loads((d / "results.json").read_text()) for d in (out, full))
    assert resumed["per_sequence"] == expected["per_sequence"] and resumed["J&F-Mean"] == expected["J&F-Mean"]
    assert resumed["timing"]["kept_from_earlier_run"] == ["blackswan"] and resumed["timing"]["frames"] == 4
    assert (out / "blackswan" / "00000.png").stat().st_mtime_ns == done
    capsys.readouterr()
    other = ["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume",
             "--features", "random-resnet18", "--size", "120"]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "model" in err and "cannot resume" in err
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume", *FAST, "--topk", "5"]) == 2
    assert "preset" in capsys.readouterr().err
    # a plain run of another model into it is refused: it replaced car-shadow and left blackswan's
    # masks of the earlier model beside it, which `score davis` then scored together
    new = ["eval", "davis", "--root", str(two_clips), "--out", str(out), "--features", "random-resnet18", "--size", "120"]
    assert main(new + ["--sequences", "car-shadow"]) == 2
    assert f"{out}: output folder exists and is not empty: --resume continues" in capsys.readouterr().err
    missing = tmp_path / "missing.safetensors"  # refused before the model loads
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--weights", str(missing)]) == 2
    assert f"{out}: output folder exists and is not empty: --resume continues" in capsys.readouterr().err
    assert (out / "blackswan" / "00000.png").stat().st_mtime_ns == done
    assert json.loads((out / "results.json").read_text())["J&F-Mean"] == expected["J&F-Mean"]


def test_eval_davis_writes_pngs_results_and_table(short_clip, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "davis", "--root", str(short_clip), "--out", str(out), *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    for key in ("J&F-Mean", "J-Mean", "F-Mean", "per_sequence", "per_object", "preset", "preset_knobs", "timing"):
        assert key in results
    assert results["preset"] == "crw" and 0.0 <= results["J&F-Mean"] <= 1.0
    assert results["preset_knobs"]["n_previous"] == 20 and results["preset_knobs"]["topk"]["k"] == 10
    timing = results["timing"]
    assert timing["frames"] == 6 and timing["torch_threads"] >= 1
    if sys.platform.startswith("linux"):  # peak memory of the process: at least the loaded model
        assert timing["peak_rss_mib"] > 50
    assert len(list((out / "car-shadow").glob("*.png"))) == 6
    assert (out / "j_per_frame.png").is_file()  # per-frame J goes into the plot, not the JSON
    assert set(results["per_object"]["car-shadow_1"]) == set(GLOBAL_KEYS)
    assert not list(out.glob(".*partial*"))
    assert "car-shadow" in capsys.readouterr().out
    # `score` on the same PNGs gives the same numbers
    assert main(["score", "davis", "--root", str(short_clip), "--results", str(out), "--out",
                 str(tmp_path / "rescored.json")]) == 0
    rescored = json.loads((tmp_path / "rescored.json").read_text())
    assert rescored["J&F-Mean"] == pytest.approx(results["J&F-Mean"], abs=1e-12)


def _davis_root(root: Path, davis2016_root: Path, seq: str, names: list[str]) -> Path:
    """A one-sequence DAVIS root: the first len(names) frames and masks of ``seq`` saved as ``names``."""
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        dst = root / kind / "480p" / seq
        dst.mkdir(parents=True)
        for f, name in zip(sorted((davis2016_root / kind / "480p" / seq).glob(f"*.{ext}")), names):
            shutil.copy(f, dst / f"{name}.{ext}")
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text(f"{seq}\n")
    return root


def test_eval_davis_names_each_prediction_after_its_own_frame(davis2016_root, tmp_path):
    """Frames were decoded from every image of the folder in natural order but named from the
    sorted *.jpg list: with unpadded names (0, 1, 10, 2, ...) or a stray PNG among the frames the
    prediction of one frame was written, and scored, under another frame's name."""
    padded = _davis_root(tmp_path / "padded", davis2016_root, "car-shadow", [f"{t:05d}" for t in range(11)])
    plain = _davis_root(tmp_path / "plain", davis2016_root, "car-shadow", [str(t) for t in range(11)])
    shutil.copy(plain / "Annotations" / "480p" / "car-shadow" / "3.png", plain / "JPEGImages" / "480p" / "car-shadow")
    for root in (padded, plain):
        assert main(["eval", "davis", "--root", str(root), "--out", str(tmp_path / f"out-{root.name}"), *FAST]) == 0
    for t in range(11):
        expected = np.array(Image.open(tmp_path / "out-padded" / "car-shadow" / f"{t:05d}.png"))
        assert np.array_equal(np.array(Image.open(tmp_path / "out-plain" / "car-shadow" / f"{t}.png")), expected), t


def test_eval_and_score_davis_at_full_resolution(davis2016_root, tmp_path, capsys):
    """--resolution Full-Resolution reads JPEGImages/ and Annotations/Full-Resolution (the 480p files
    under that name here) and scores the same as 480p; it is recorded, and a --resume of a 480p run
    in the same folder is refused (another run)."""
    root = _davis_root(tmp_path / "davis", davis2016_root, "car-shadow", [f"{t:05d}" for t in range(6)])
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "480p").rename(root / kind / "Full-Resolution")
    out = tmp_path / "out"
    assert main(["eval", "davis", "--root", str(root), "--out", str(out), *FAST]) == 2
    assert "480p/car-shadow" in capsys.readouterr().err and not out.exists()
    assert main(["eval", "davis", "--root", str(root), "--out", str(out), "--resolution", "Full-Resolution", *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["resolution"] == "Full-Resolution" and len(list((out / "car-shadow").glob("*.png"))) == 6
    assert main(["score", "davis", "--root", str(root), "--results", str(out), "--resolution", "Full-Resolution"]) == 0
    assert json.loads((out / "score.json").read_text())["J&F-Mean"] == results["J&F-Mean"]
    shutil.copytree(root / "JPEGImages" / "Full-Resolution", root / "JPEGImages" / "480p")
    shutil.copytree(root / "Annotations" / "Full-Resolution", root / "Annotations" / "480p")
    capsys.readouterr()
    assert main(["eval", "davis", "--root", str(root), "--out", str(out), "--resume", *FAST]) == 2
    assert "holds a run with another resolution: cannot resume it" in capsys.readouterr().err


def _drop_frame(seq: Path) -> str:
    (seq.parents[2] / "JPEGImages" / "480p" / seq.name / "00002.jpg").unlink()
    return "00002.jpg: frame not found, but its annotation 00002.png is scored"


def _small_annotation(seq: Path) -> str:
    Image.open(seq / "00002.png").resize((427, 240), Image.NEAREST).save(seq / "00002.png")
    return "00002.png: mask is 427x240 but frames are 854x480"


def _rgb_annotation(seq: Path) -> str:
    Image.open(seq / "00002.png").convert("RGB").save(seq / "00002.png")
    return "00002.png: is an RGB image"


def _small_frame(seq: Path) -> str:
    frame = seq.parents[2] / "JPEGImages" / "480p" / seq.name / "00002.jpg"
    Image.open(frame).resize((427, 240)).save(frame)
    return "00002.jpg: frame is 427x240 but 00000.jpg is 854x480"


def _late_first_annotation(seq: Path) -> str:
    (seq / "00000.png").unlink()
    return "00001.png: the first annotation 00001.png is not of the first frame 00000.jpg"


def _two_annotations(seq: Path) -> str:
    for name in ("00002.png", "00003.png"):
        (seq / name).unlink()
    return "2 annotated frame(s)"


def _empty_first_annotation(seq: Path) -> str:
    Image.fromarray(np.zeros((480, 854), np.uint8)).save(seq / "00000.png")
    return "00000.png: the first annotation of sequence 'car-shadow' holds no object id"


def _binary_split_file(seq: Path) -> str:
    (seq.parents[2] / "ImageSets" / "2016" / "val.txt").write_bytes(b"\xff\xfe\x00garbage")
    return "val.txt: not a text file of sequence names"


@pytest.mark.parametrize("damage", [_drop_frame, _small_annotation, _rgb_annotation, _small_frame,
                                    _late_first_annotation, _two_annotations, _empty_first_annotation,
                                    _binary_split_file])
def test_eval_davis_checks_every_sequence_before_propagating(damage, two_clips, tmp_path, capsys):
    """A bad file in a later sequence failed only after the earlier ones had been propagated (hours
    on DAVIS), leaving OUT behind; a first annotation of a later frame was carried from frame 0."""
    root = tmp_path / "root"
    shutil.copytree(two_clips, root)
    expected = damage(root / "Annotations" / "480p" / "car-shadow")
    out = tmp_path / "out"
    _fails(["eval", "davis", "--root", str(root), "--out", str(out), *FAST], capsys, expected)
    assert not out.exists()


def test_eval_davis_with_uvc_track(short_clip, tmp_path, capsys):
    """--track on real frames with the shipped weights: UVC-track's PNGs are the API's tracked
    masks, results.json records the tracking, and neither kind of run resumes the other's folder."""
    import vidcorr

    out = tmp_path / "track"
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), "--preset", "uvc", "--size", "240"]
    assert main(argv + ["--track"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["track"]["locate_margin"] == 1.0 and results["track"]["size_smoothing"] == 0.1
    assert results["J&F-Mean"] > 0.75  # 0.799 on these 6 frames when written
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    first = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    tracked = vidcorr.propagate_masks(frames, first, preset="uvc", size=240, track=True)
    assert main(["propagate", str(frames), "--mask", str(first), "--out", str(tmp_path / "prop"), "--no-video",
                 "--preset", "uvc", "--size", "240", "--track"]) == 0
    for path, (_, mask) in zip(sorted((out / "car-shadow").glob("*.png")), tracked, strict=True):
        np.testing.assert_array_equal(np.array(Image.open(path)), mask, err_msg=path.name)
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "prop" / "masks" / path.name)), mask)
    capsys.readouterr()
    _fails(argv + ["--resume"], capsys, str(out), "track", "cannot resume")
    plain = tmp_path / "plain"
    assert main(["eval", "davis", "--root", str(short_clip), "--out", str(plain), *FAST]) == 0
    capsys.readouterr()
    _fails(["eval", "davis", "--root", str(short_clip), "--out", str(plain), *FAST, "--track", "--resume"],
           capsys, "track", "cannot resume")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {"n_previous": 20, "window_first": False, "k": 10, "radius": 12, "temperature": 0.05}),
        (["--context", "5", "--window-first", "--topk", "3", "--radius", "4.5", "--temperature", "0.1"],
         {"n_previous": 5, "window_first": True, "k": 3, "radius": 4.5, "temperature": 0.1}),
        (["--preset", "stt", "--no-window-first"], {"window_first": False, "radius": 12, "temperature": 0.07}),
    ],
)
def test_preset_overrides_from_the_command_line(flags, expected):
    from vidcorr.cli import build_parser
    from vidcorr.cli.common import resolve_preset

    args = build_parser().parse_args(["eval", "davis", "--root", "r", "--out", "o", *flags])
    preset = resolve_preset(args)
    knobs = {"n_previous": preset.n_previous, "window_first": preset.window_first, "k": preset.topk.k,
             "radius": preset.topk.radius, "temperature": preset.topk.temperature}
    assert {name: knobs[name] for name in expected} == expected


def test_propagate_mask_on_a_frame_folder(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "prop"
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *FAST, "--context", "3",
                 "--no-window-first"]) == 0
    # the summary names the preset with what the command line changed in it
    assert "preset crw (--size 120 --context 3 --no-window-first), in" in capsys.readouterr().out
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(6)]
    first = np.array(Image.open(pngs[0]))
    assert Image.open(pngs[3]).mode == "P" and first.max() == 1
    assert (out / "overlay.mp4").stat().st_size > 0


def test_propagate_soft_labels_on_a_frame_folder(short_clip, tmp_path, capsys):
    """--labels FIRST.npy: one float32 .npy per frame, the argmax of a one-hot mask's channels being
    --mask's PNGs; a malformed labels file exits 2 naming it, nothing written."""
    from vidcorr.labels import one_hot_labels

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
    for bad, message in [(np.zeros((2, 48, 85), np.float32), "first.npy: labels are 85x48 but frames are 854x480"),
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
    assert "hold values up to 1e+06, beyond float16's 65504" in capsys.readouterr().err
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
    Image.open(short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png").resize((960, 540), Image.NEAREST).save(mask)
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
    assert "lab-pixels (untrained floor), tracker localise, in" in capsys.readouterr().out
    boxes = json.loads((out / "boxes.json").read_text())["frames"]
    assert boxes[0]["box"] == [100.0, 60.0, 80.0, 60.0]
    assert all(b["box"][2] > 0 and b["box"][3] > 0 for b in boxes)
    # propagation settings: the tracker ignored them (the same boxes), now refused by name
    for flags in (["--topk", "1"], ["--size", "100"], ["--context", "1"], ["--no-window-first"]):
        _fails(["propagate", str(video), "--box", "100,60,80,60", "--out", str(tmp_path / "x"), "--features",
                "lab-pixels", *flags], capsys, f"{flags[0].replace('no-', '')} is a propagation setting and does "
                "not apply to tracking")
    assert not (tmp_path / "x").exists()


def test_propagate_box_outside_the_frame_is_refused(tmp_path, data_dir, capsys):
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    out = tmp_path / "box"
    _fails(["propagate", str(video), "--box", "600,60,80,60", "--out", str(out), "--features", "lab-pixels"],
           capsys, "--box: first box 600,60,80,60 lies outside the 456x256 first frame")
    assert not out.exists()


def _fails(argv, capsys, *expected) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    return err


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
    assert taken.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["frames", "mask.png", "taken.txt"]


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
    """0003.jpg and 0003.png both map to masks/0003.png: one result silently replaced the other."""
    frames = _synthetic_folder(tmp_path / "frames", ["0000.jpg", "0001.jpg", "0002.jpg", "0002.png"])
    mask = tmp_path / "mask.png"
    Image.fromarray((np.array(Image.open(frames / "0000.jpg"))[..., 0] > 128).astype(np.uint8) * 255).save(mask)
    out = tmp_path / "out"
    _fails(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--features", "lab-pixels"],
           capsys, "0002.png", "0002.jpg", "overwrite")
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("flags", [["--size", "0"], ["--size", "-5"], ["--topk", "0"], ["--context", "-1"],
                                   ["--radius", "0"], ["--temperature", "0"], ["--temperature", "-1"],
                                   ["--batch-size", "0"], ["--fps", "-3"], ["--device", "nodevice"]])
def test_meaningless_numbers_and_devices_are_refused_by_the_parser(flags, capsys):
    """These reached torch as raw tracebacks (--size 0, --radius 0, --device nodevice) or ran and
    wrote wrong masks without a word (--topk 0, --temperature -1)."""
    from vidcorr.cli import build_parser

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


def test_interrupted_eval_davis_says_how_to_continue(two_clips, tmp_path, monkeypatch, capsys):
    """Ctrl-C during the second sequence: exit 130, the first sequence kept, and the message names
    --resume (it said only "interrupted"); the resumed run finishes."""
    from vidcorr.evaluate import davis as davis_eval

    real_write = davis_eval.write_mask_sequence
    calls = {"n": 0}

    def interrupted_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(davis_eval, "write_mask_sequence", interrupted_write)
    out = tmp_path / "out"
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), *FAST]) == 130
    err = capsys.readouterr().err
    assert f"the sequences finished so far are kept in {out}; the same command with --resume continues" in err
    assert (out / "blackswan").is_dir() and not (out / "car-shadow").exists()
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume", *FAST]) == 0
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == ["blackswan"]


def test_interrupted_propagation_leaves_nothing(short_clip, tmp_path, monkeypatch):
    """An error halfway through (here: the 4th frame fails to encode) removes the partial output."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    from vidcorr.io import masks as masks_io

    real_write = masks_io.write_indexed_png
    calls = {"n": 0}

    def failing_write(path, labels):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("disk full")
        real_write(path, labels)

    monkeypatch.setattr(masks_io, "write_indexed_png", failing_write)
    out = tmp_path / "half"
    with pytest.raises(RuntimeError, match="disk full"):
        main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--no-video", *FAST])
    assert not out.exists() and not list(tmp_path.glob(".half.partial-*"))


def test_demo_runs_on_the_shipped_sequence(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"]) == 0
    text = capsys.readouterr().out
    assert "J&F-Mean" in text and "UNTRAINED FLOOR" in text
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["J&F-Mean"] <= 1.0 and results["preset_knobs"]["size"]["size"] == 96
    assert len(list((out / "car-shadow").glob("*.png"))) == 40 and (out / "overlay.mp4").exists()
    assert (out / "j_per_frame.png").is_file() and set(results["per_object"]["car-shadow_1"]) == set(GLOBAL_KEYS)
    # Run again: its own earlier output is replaced. A folder with anything else is refused untouched
    # (it was deleted wholesale: --out . emptied the current folder).
    (out / "car-shadow" / "00039.png").unlink()
    assert main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"]) == 0
    assert len(list((out / "car-shadow").glob("*.png"))) == 40
    (out / ".DS_Store").write_bytes(b"")  # a file browser opened it: still the demo's own
    (out / "car-shadow" / ".DS_Store").write_bytes(b"")
    assert main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"]) == 0
    mine = tmp_path / "mine"  # named like the demo's mask folder, but no demo's results.json beside it
    (mine / "car-shadow").mkdir(parents=True)
    (mine / "car-shadow" / "00001.png").write_bytes(b"my mask")
    capsys.readouterr()
    assert main(["demo", "--out", str(mine), "--size", "96", "--features", "lab-pixels"]) == 2
    assert f"{mine}: holds car-shadow, which the demo did not write" in capsys.readouterr().err
    assert (mine / "car-shadow" / "00001.png").read_bytes() == b"my mask"
    (out / "notes.txt").write_text("mine")
    (out / "car-shadow" / "mine.txt").write_text("mine")
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"]) == 2
    assert f"{out}: holds car-shadow, notes.txt, which the demo did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "car-shadow" / "mine.txt").is_file()
    killed = tmp_path / "killed"  # a demo killed while it wrote: its temporary folder is named
    (killed / ".killed.partial-x1y2").mkdir(parents=True)
    capsys.readouterr()
    assert main(["demo", "--out", str(killed), "--size", "96", "--features", "lab-pixels"]) == 2
    assert (f"{killed}: holds .killed.partial-x1y2, which the demo did not write (.killed.partial-x1y2: left by "
            "a run that was killed)") in capsys.readouterr().err


def test_an_interrupted_demo_keeps_the_earlier_output(tmp_path, monkeypatch, capsys):
    """A second demo run deleted the first one's output before it began: interrupted, the folder was
    left empty. Now the earlier output gives way only to a complete new one."""
    import vidcorr.metrics.davis as davis_metrics

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(davis_metrics, "score_davis", interrupted)
    assert main(["demo", "--out", str(out), "--size", "64", "--features", "lab-pixels"]) == 130
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["car-shadow", "j_per_frame.png", "overlay.mp4", "results.json"]


def test_demo_into_the_current_folder(tmp_path, monkeypatch, capsys):
    """--out . : filled in place and replaced in place on a second run (the folder was removed and
    renamed over, leaving the shell in a deleted folder, and a second run emptied it and crashed)."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for _ in range(2):
        assert main(["demo", "--out", ".", "--size", "96", "--features", "lab-pixels"]) == 0
        assert Path.cwd().exists() and sorted(p.name for p in here.iterdir()) == [
            "car-shadow", "j_per_frame.png", "overlay.mp4", "results.json"]
