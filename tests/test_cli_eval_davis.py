"""`eval davis` end to end on real data: results, resume, frame names, resolution, input checks, --track, presets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import FAST, _fails, interrupt_on_call, sigterm_default_raises
from PIL import Image
from torch import nn

import vidcorr
from vidcorr.cli import build_parser, main
from vidcorr.cli.common import resolve_preset
from vidcorr.errors import InputError
from vidcorr.evaluate import davis as davis_eval
from vidcorr.evaluate import ranks as ranks_module
from vidcorr.evaluate.davis import run_davis
from vidcorr.io.video import open_frames
from vidcorr.metrics.davis import GLOBAL_KEYS
from vidcorr.models import build_encoder, save_weights
from vidcorr.models.floors import lab_pixels
from vidcorr.presets import customised_preset


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
        object_area = annotation[30:]
        assert (moved & ~object_area).mean() < 0.02 and (moved & object_area).sum() > 0.5 * object_area.sum()
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--sequences", "blackswan", *FAST]) == 0
    done = (out / "blackswan" / "00000.png").stat().st_mtime_ns
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume", *FAST]) == 0
    resumed, expected = (json.loads((d / "results.json").read_text()) for d in (out, full))
    assert resumed["per_sequence"] == expected["per_sequence"] and resumed["J&F-Mean"] == expected["J&F-Mean"]
    # the timing is the whole run's: blackswan's 4 frames from the first session, car-shadow's 4 from this one
    assert resumed["timing"]["kept_from_earlier_run"] == ["blackswan"] and resumed["timing"]["frames"] == 8
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
    new = ["eval", "davis", "--root", str(two_clips), "--out", str(out), "--features", "random-resnet18",
           "--size", "120"]
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
    assert main(["eval", "davis", "--root", str(root), "--out", str(out), "--resolution", "Full-Resolution",
                 *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["resolution"] == "Full-Resolution" and len(list((out / "car-shadow").glob("*.png"))) == 6
    assert main(["score", "davis", "--root", str(root), "--results", str(out), "--resolution", "Full-Resolution"]) == 0
    assert json.loads((out / "score.json").read_text())["J&F-Mean"] == results["J&F-Mean"]
    shutil.copytree(root / "JPEGImages" / "Full-Resolution", root / "JPEGImages" / "480p")
    shutil.copytree(root / "Annotations" / "Full-Resolution", root / "Annotations" / "480p")
    capsys.readouterr()
    assert main(["eval", "davis", "--root", str(root), "--out", str(out), "--resume", *FAST]) == 2
    assert "holds a run with another resolution (Full-Resolution -> 480p): cannot resume it" in capsys.readouterr().err


def test_crw_on_frames_above_480p_warns_that_it_is_not_crws_protocol(davis2016_root, tmp_path, caplog):
    """crw propagates at the frames' own size; its protocol (CRW test.py --cropSize -1) reads 480p.
    Full-Resolution frames (here 960x540, 3 frames) are run but warned about, naming --size 480;
    with --size the preset is no longer native-size and nothing is said."""
    root = _davis_root(tmp_path / "davis", davis2016_root, "car-shadow", ["00000", "00001", "00002"])
    for kind in ("JPEGImages", "Annotations"):
        full = root / kind / "Full-Resolution" / "car-shadow"
        (root / kind / "480p").rename(full.parent)
        for path in full.iterdir():
            image = Image.open(path)
            image.resize((960, 540), Image.NEAREST if kind == "Annotations" else Image.BILINEAR).save(path)
    argv = ["eval", "davis", "--root", str(root), "--resolution", "Full-Resolution", "--features", "lab-pixels"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "native")]) == 0
    said = [r.getMessage() for r in caplog.records if "protocol" in r.getMessage()]
    assert len(said) == 1 and "preset 'crw'" in said[0] and "car-shadow: 960x540" in said[0] and "--size 480" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "sized"), "--size", "120"]) == 0
    assert not [r for r in caplog.records if "protocol" in r.getMessage()]


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
    (seq.parents[2] / "ImageSets" / "2016" / "val.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00garbage")  # \xff\xfe: UTF-16
    return "val.txt: unreadable split file of sequence names"


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
    args = build_parser().parse_args(["eval", "davis", "--root", "r", "--out", "o", *flags])
    preset = resolve_preset(args)
    knobs = {"n_previous": preset.n_previous, "window_first": preset.window_first, "k": preset.topk.k,
             "radius": preset.topk.radius, "temperature": preset.topk.temperature}
    assert {name: knobs[name] for name in expected} == expected


@pytest.mark.parametrize("preset, flag", [("uvc", "--window-first"), ("timecycle", "--no-window-first")])
@pytest.mark.parametrize("command", ["eval davis", "eval jhmdb", "propagate"])
def test_window_first_is_refused_with_a_preset_that_has_no_window(data_dir, tmp_path, capsys, command, preset, flag):
    """uvc and timecycle take a full softmax over each context frame (METHODS.md §5): --window-first
    changed nothing there, yet was recorded and a resume without it refused as another run. It is
    refused before anything is written, by eval (a square variant too) and propagate alike; with
    --radius, which gives those presets a window, it applies."""
    blackswan = data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan"
    inputs = {"eval davis": ["--root", str(data_dir / "davis2016")], "eval jhmdb": ["--root", str(data_dir / "jhmdb")],
              "propagate": [str(blackswan), "--mask", str(data_dir / "davis2016" / "Annotations" / "480p" /
                                                        "blackswan" / "00000.png")]}[command]
    out = tmp_path / "out"
    _fails([*command.split(), *inputs, "--out", str(out), *FAST, "--preset", preset, flag], capsys,
           f"error: {flag} sets whether the local window covers the first frame, but preset {preset} has no window")
    assert not out.exists()
    args = build_parser().parse_args(["eval", "davis", "--root", "r", "--out", "o", "--preset", preset, flag,
                                      "--radius", "6"])
    assert resolve_preset(args).window_first == (flag == "--window-first")


def test_interrupted_eval_davis_says_how_to_continue(two_clips, tmp_path, monkeypatch, capsys):
    """Ctrl-C during the second sequence: exit 130, the first sequence kept, and the message names
    --resume (it said only "interrupted"); the resumed run finishes."""
    interrupt_on_call(monkeypatch, davis_eval, "write_mask_sequence")
    out = tmp_path / "out"
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), *FAST]) == 130
    err = capsys.readouterr().err
    assert f"the sequences finished so far are kept in {out}; the same command with --resume continues" in err
    assert (out / "blackswan").is_dir() and not (out / "car-shadow").exists()
    assert main(["eval", "davis", "--root", str(two_clips), "--out", str(out), "--resume", *FAST]) == 0
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == ["blackswan"]


def test_a_refused_resume_names_the_knobs_that_changed(short_clip, tmp_path, capsys):
    """Another --size (or --topk, --context ...) was refused as "a run with another preset", the
    --preset the user had not changed: the changed knobs are named, a changed preset as such."""
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), "--resume", "--features", "lab-pixels"]
    assert main([*argv, "--size", "120"]) == 0
    refused = f"{out}: holds a run with %s: cannot resume it; choose a new --out or drop --resume"
    _fails([*argv, "--size", "96"], capsys, refused % "other preset knobs (size 120 -> 96)")
    _fails([*argv, "--size", "120", "--topk", "5", "--context", "3", "--window-first", "--temperature", "0.1"],
           capsys, refused % ("other preset knobs (topk.k 10 -> 5, topk.temperature 0.05 -> 0.1, n_previous 20 -> 3, "
                              "window_first false -> true)"))
    _fails([*argv, "--preset", "stt", "--size", "120"], capsys, refused % "another preset (crw -> stt)")
    _fails([*argv[:-1], "random-resnet18", "--size", "96"], capsys,
           refused % "another model (lab-pixels -> random-resnet18) and other preset knobs (size 120 -> 96)")
    assert main([*argv, "--size", "120"]) == 0  # the same run resumes


@pytest.mark.parametrize("option, knob, whole, fraction", [("--radius", "radius", "6", "4.5"),
                                                            ("--temperature", "temperature", "1", "0.5")])
def test_a_whole_number_is_recorded_as_typed_and_a_record_of_its_float_still_resumes(
        option, knob, whole, fraction, short_clip, tmp_path):
    """--radius 6 was recorded as 6.0 (in the run record and results.json's preset_knobs), beside the
    preset's own radius 12, and --temperature 1 as 1.0: the record did not read as the command line.
    A record written so still resumes (compared as numbers); a fraction stays as typed."""
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), *FAST, option, whole]
    assert main(argv) == 0
    record = json.loads((out / ".run.json").read_text())
    knobs = json.loads((out / "results.json").read_text())["preset_knobs"]
    assert repr(record["preset"]["topk"][knob]) == repr(knobs["topk"][knob]) == whole
    record["preset"]["topk"][knob] = float(whole)  # as the earlier version wrote it
    (out / ".run.json").write_text(json.dumps(record))
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == ["car-shadow"]
    args = build_parser().parse_args(["eval", "davis", "--root", "r", "--out", "o", option, fraction])
    assert repr(getattr(resolve_preset(args).topk, knob)) == fraction


def test_an_encoder_file_is_recorded_by_its_absolute_path(short_clip, tmp_path, monkeypatch, capsys):
    """--encoder my_enc.py:build was recorded as typed: a resume from another folder with the same
    relative path continued the run with another file, one naming the same file by its absolute path
    was refused. The record holds the resolved path; a record of the typed relative one (an earlier
    version's) still resumes from its folder."""
    for folder in ("a", "b"):  # two files of one name, in two folders
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "my_enc.py").write_text("from vidcorr.models import build_encoder\n\n\ndef build():\n"
                                                     "    return build_encoder('lab-pixels')\n")
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), "--size", "96", "--encoder"]
    monkeypatch.chdir(tmp_path / "a")
    assert main([*argv, "my_enc.py:build"]) == 0
    mine = f"{(tmp_path / 'a' / 'my_enc.py').resolve()}:build"
    record = json.loads((out / ".run.json").read_text())
    assert record["model"]["encoder"] == mine
    assert json.loads((out / "results.json").read_text())["model"]["encoder"] == mine
    assert main([*argv, mine, "--resume"]) == 0
    record["model"]["encoder"] = "my_enc.py:build"  # as an earlier version recorded it
    (out / ".run.json").write_text(json.dumps(record))
    assert main([*argv, "my_enc.py:build", "--resume"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    _fails([*argv, "my_enc.py:build", "--resume"], capsys,
           f"another model ({mine} -> {(tmp_path / 'b' / 'my_enc.py').resolve()}:build)")


def test_weights_are_compared_by_sha256_on_resume(short_clip, tmp_path, monkeypatch, capsys):
    """--weights was compared as typed: the same file named by its absolute path (or through a link:
    test_eval_runs_golden) was refused as another model. The sha256 decides; weights with other bytes are
    refused, shown by their absolute paths."""
    monkeypatch.chdir(tmp_path)
    encoder = build_encoder("resnet18", out_layer="layer2")
    save_weights(encoder, tmp_path / "w.safetensors")
    with torch.no_grad():
        next(encoder.parameters()).add_(1.0)
    save_weights(encoder, tmp_path / "other.safetensors")  # other bytes
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), "--size", "64", "--weights"]
    assert main([*argv, "w.safetensors"]) == 0
    assert main([*argv, str(tmp_path / "w.safetensors"), "--resume"]) == 0
    capsys.readouterr()
    _fails([*argv, "other.safetensors", "--resume"], capsys,
           f"another model ({(tmp_path / 'w.safetensors').resolve()} -> {(tmp_path / 'other.safetensors').resolve()})")




def test_resume_refuses_a_used_folder_that_holds_no_davis_run(short_clip, tmp_path, capsys):
    """--resume into another command's output (an `eval jhmdb` folder: results.json, predictions/)
    wrote the DAVIS masks beside them and replaced its results.json; a folder without the run record
    is refused, untouched, from the command line and from Python. An empty or new folder still starts
    a run."""
    out = tmp_path / "jhmdb-out"
    (out / "predictions").mkdir(parents=True)
    (out / "results.json").write_text('{"PCK@0.1": 0.5}\n')
    argv = ["eval", "davis", "--root", str(short_clip), "--out", str(out), "--resume", *FAST]
    _fails(argv, capsys, f"{out}: holds no `eval davis` run to resume (no .run.json")
    with pytest.raises(InputError, match="holds no `eval davis` run to resume"):
        run_davis(lab_pixels(), "crw", short_clip, out, resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["predictions", "results.json"]
    assert (out / "results.json").read_text() == '{"PCK@0.1": 0.5}\n'
    (tmp_path / "empty").mkdir()
    assert main(["eval", "davis", "--root", str(short_clip), "--out", str(tmp_path / "empty"), "--resume", *FAST]) == 0


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_run_that_ends_before_its_first_sequence_leaves_no_folder(short_clip, tmp_path, error):
    """A run that failed (an encoder of one's own raising on the first real frame) or was stopped
    before any sequence was finished left OUT holding only .run.json, so the same command, rerun,
    was refused as "output folder exists and is not empty". Nothing is left to resume, so nothing is
    left; an empty folder given as OUT stays, empty."""
    class FailsOnFrames(nn.Module):  # fine on the 112 x 112 probe, not on 214 x 120 frames
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 8, 8)

        def forward(self, rgb: torch.Tensor) -> torch.Tensor:
            if rgb.shape[-1] != rgb.shape[-2]:
                raise error("square frames only")
            return self.patch(rgb)

    out, empty = tmp_path / "new" / "out", tmp_path / "empty"
    empty.mkdir()
    for folder in (out, empty):
        with pytest.raises(KeyboardInterrupt if error is KeyboardInterrupt else Exception, match="square frames only"):
            run_davis(FailsOnFrames(), customised_preset("crw", size=120), short_clip, folder, overlays=True)
    assert not out.exists() and list(empty.iterdir()) == []
    assert main(["eval", "davis", "--root", str(short_clip), "--out", str(out), *FAST]) == 0  # the rerun goes


@pytest.mark.parametrize("world_size", [None, "2"], ids=["one process", "torchrun"])
def test_sigterm_before_the_eval_takes_over_is_said_by_a_process_alone(two_clips, tmp_path, monkeypatch, capsys,
                                                                       world_size):
    """SIGTERM after parsing, before `eval_ranks`' own handler (as the ranks join): alone, the start-up
    handler is held until then and says so (exit 143 and not a word, until 2026-12-08); under torchrun a
    rank ended before the ranks meet dies silently, by design (docs/metrics.md), so it is not held."""
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setattr(ranks_module, "join", lambda device: os.kill(os.getpid(), signal.SIGTERM))
    argv = ["eval", "davis", "--root", str(two_clips), "--out", str(tmp_path / "out"), *FAST]
    with sigterm_default_raises() as unhandled:
        if world_size is None:
            assert main(argv) == 143
            assert capsys.readouterr().err == "vidcorr: interrupted by SIGTERM while starting; nothing was done\n"
        else:
            with pytest.raises(RuntimeError, match="SIGTERM reached the default handler"):
                main(argv)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    assert list(tmp_path.iterdir()) == []
