"""The commands' own wiring (propagate, match, demo, eval davis|jhmdb|vip|otb|vot, the dispatcher) on
tiny synthetic inputs: which option values reach the library, what is written under which name, what is
refused. Expected values come from the options given and the documented defaults, not from a run."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vidcorr.cli as cli
import vidcorr.cli.propagate_cmd as propagate_cmd
import vidcorr.io.jhmdb as jhmdb
import vidcorr.io.video as video_io
import vidcorr.io.vip as vip
import vidcorr.track_uvc as track_uvc
import vidcorr.viz as viz
from vidcorr.cli import build_parser, main
from vidcorr.cli.demo_cmd import DEMO_SEQUENCE, _earlier_demo
from vidcorr.cli.eval_tracking import tracker_options
from vidcorr.errors import InputError
from vidcorr.io.video import write_video
from vidcorr.track import tracker_settings

LAB = ["--features", "lab-pixels"]  # the fastest model: no weights to load


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """4 frames 64x48 of a bright square moving right on a dark ground, named f10..f13 (not 00000:
    so a name taken from a counter shows), and the first frame's 0/255 mask of the square."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(4):
        image = np.full((48, 64, 3), 30, np.uint8)
        image[16:32, 10 + 4 * t:26 + 4 * t] = (230, 200, 40)
        Image.fromarray(image).save(frames / f"f{10 + t}.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[16:32, 10:26] = 255
    Image.fromarray(mask).save(tmp_path / "first.png")
    return frames, tmp_path / "first.png"


def _tiny_video(tmp_path: Path, frames: Path) -> Path:
    video = tmp_path / "clip.mp4"
    write_video(video, (np.array(Image.open(p).convert("RGB")) for p in sorted(frames.iterdir())), 12.0)
    return video


def _capture_video(monkeypatch) -> dict:
    """Replace the overlay writer: -> what it was called with (fps, times, number of frames)."""
    seen: dict = {}

    def keep(path, frames, fps, times=None):
        seen.update(fps=fps, times=times, frames=len(list(frames)), path=Path(path).name)
        Path(path).write_bytes(b"")

    monkeypatch.setattr(video_io, "write_video", keep)
    return seen


# --------------------------------------------------------------------------- propagate


def test_propagate_names_folder_outputs_after_the_frames_and_writes_the_overlay_at_24_fps(tiny, tmp_path,
                                                                                          monkeypatch) -> None:
    # a frame folder has no times: its overlay is written at the documented 24 fps, one frame per input
    frames, mask = tiny
    seen, captions = _capture_video(monkeypatch), []
    real = viz.frame_caption
    monkeypatch.setattr(viz, "frame_caption",
                        lambda side, t, file=None: captions.append((t, file)) or real(side, t, file))
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "o"), *LAB]) == 0
    assert seen == {"fps": 24.0, "times": None, "frames": 4, "path": "overlay.mp4"}
    # numbered from 0, and named by the file after which the results are named
    assert captions == [(0, "f10.png"), (1, "f11.png"), (2, "f12.png"), (3, "f13.png")]
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == ["f10.png", "f11.png", "f12.png",
                                                                            "f13.png"]


def test_propagate_fps_sets_a_constant_rate_and_a_video_numbers_its_outputs(tiny, tmp_path, monkeypatch) -> None:
    frames, mask = tiny
    video = _tiny_video(tmp_path, frames)
    seen = _capture_video(monkeypatch)
    assert main(["propagate", str(video), "--mask", str(mask), "--out", str(tmp_path / "o"), "--fps", "10",
                 *LAB]) == 0
    assert seen["fps"] == 10.0 and seen["times"] is None  # --fps: constant rate, the input's times dropped
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert main(["propagate", str(video), "--mask", str(mask), "--out", str(tmp_path / "p"), *LAB]) == 0
    assert seen["times"] is not None and len(seen["times"]) == 4  # without --fps: each input frame's time


def test_no_video_writes_no_overlay(tiny, tmp_path, monkeypatch) -> None:
    frames, mask = tiny
    seen = _capture_video(monkeypatch)
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "o"), "--no-video",
                 *LAB]) == 0
    assert seen == {} and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["masks"]


def test_track_reaches_the_propagator_and_the_size_advice_is_for_masks_only(tiny, tmp_path, monkeypatch) -> None:
    frames, mask = tiny
    tracks, advised = [], []
    real = track_uvc.mask_propagator
    monkeypatch.setattr(track_uvc, "mask_propagator", lambda enc, preset, track, **kw: tracks.append(track) or
                        real(enc, preset, track, **kw))
    monkeypatch.setattr(propagate_cmd, "_advise_on_size", lambda *a: advised.append(a[0]))
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(tmp_path / "t"), "--track",
                 "--no-video", *LAB]) == 0
    assert tracks == [True] and advised == [frames]
    assert main(["propagate", str(frames), "--box", "10,16,16,16", "--out", str(tmp_path / "b"), "--no-video",
                 *LAB]) == 0
    assert advised == [frames]  # a box is tracked on crops: no advice about the frames' size


def test_box_and_keypoints_files_keep_the_first_frames_fractional_coordinates(tiny, tmp_path) -> None:
    # frame 0 is the annotation itself: its fractions must survive the files' rounding (2 and 3 places)
    frames, _ = tiny
    assert main(["propagate", str(frames), "--box", "10.5,16.25,16,15.75", "--out", str(tmp_path / "b"),
                 "--no-video", *LAB]) == 0
    boxes = json.loads((tmp_path / "b" / "boxes.json").read_text())
    assert boxes["tracker"] == "localise" and boxes["frames"][0] == {"frame": "f10", "box": [10.5, 16.25, 16.0, 15.75]}
    assert [f["frame"] for f in boxes["frames"]] == ["f10", "f11", "f12", "f13"]
    first = tmp_path / "kp.json"
    first.write_text(json.dumps({"keypoints": [[12.125, 20.5], [20.25, 24.0]]}))
    assert main(["propagate", str(frames), "--keypoints", str(first), "--out", str(tmp_path / "k"), "--no-video",
                 *LAB]) == 0
    kps = json.loads((tmp_path / "k" / "keypoints.json").read_text())
    assert kps["frames"][0] == {"frame": "f10", "keypoints": [[12.125, 20.5], [20.25, 24.0]]}
    assert len(kps["frames"]) == 4


def test_a_float16_labels_limit_is_where_the_cast_overflows(tiny, tmp_path, capsys) -> None:
    # float16's largest value is 65504, and the cast rounds anything below 65520 to it: 65519 is kept
    # (written as 65504), 65520 would be written as inf and is refused, as is 70000
    frames, _ = tiny
    first = tmp_path / "soft.npy"
    argv = ["propagate", str(frames), "--labels", str(first), "--labels-dtype", "float16", "--no-video", *LAB]
    for value, out in ((70000.0, "x"), (65520.0, "z")):
        np.save(first, np.full((48, 64), value, np.float32))
        assert main([*argv, "--out", str(tmp_path / out)]) == 2
        assert f"values up to {value:g}, beyond float16's range" in capsys.readouterr().err
        assert not (tmp_path / out).exists()
    np.save(first, np.full((48, 64), 65519.0, np.float32))
    assert main([*argv, "--out", str(tmp_path / "y")]) == 0
    written = np.load(tmp_path / "y" / "labels" / "f13.npy")
    assert written.dtype == np.float16 and np.isfinite(written).all() and written.max() == 65504


@pytest.mark.parametrize("extra, said", [
    (["--fps", "10", "--no-video"], "--fps sets the overlay video's frame rate: it does nothing with --no-video"),
    (["--track", "--labels", "LABELS"], "--track (UVC-track) carries masks: it needs --mask"),
    (["--tracker", "dcf", "--mask", "MASK"], "--tracker chooses how a box is tracked: it needs --box"),
])
def test_propagate_refuses_option_pairs_that_do_nothing(extra, said, tiny, tmp_path, capsys) -> None:
    frames, mask = tiny
    np.save(tmp_path / "l.npy", np.zeros((48, 64), np.float32))
    extra = [str(mask) if e == "MASK" else str(tmp_path / "l.npy") if e == "LABELS" else e for e in extra]
    if "--mask" not in extra and "--labels" not in extra:
        extra += ["--mask", str(mask)]
    assert main(["propagate", str(frames), *extra, "--out", str(tmp_path / "x"), *LAB]) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_used_output_folder_is_refused_naming_it(tiny, tmp_path, capsys) -> None:
    frames, mask = tiny
    out = tmp_path / "used"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), *LAB]) == 2
    assert str(out) in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_the_first_frame_mask_kept_in_the_frames_folder_is_no_frame(tiny, tmp_path) -> None:
    frames, mask = tiny
    kept = frames / "zz_mask.png"  # sorts after the frames: it would be read as a 5th frame
    kept.write_bytes(mask.read_bytes())
    assert main(["propagate", str(frames), "--mask", str(kept), "--out", str(tmp_path / "o"), "--no-video",
                 *LAB]) == 0
    assert len(list((tmp_path / "o" / "masks").iterdir())) == 4


# --------------------------------------------------------------------------- match


def _match(tmp_path: Path, capsys, *argv: str) -> tuple[int, str]:
    code = main(["match", *argv, *LAB])
    return code, capsys.readouterr().err


def test_match_defaults_and_what_reaches_the_drawing(tiny, tmp_path, monkeypatch, capsys) -> None:
    frames, _ = tiny
    drawn = {}
    real = viz.draw_matches
    monkeypatch.setattr(viz, "draw_matches", lambda *a, **kw: drawn.update(kw) or real(*a, **kw))
    code, err = _match(tmp_path, capsys, str(frames), "--out", str(tmp_path / "x"))
    # 4 frames: the default pair 0,10 is refused, saying what it needs
    assert code == 2 and "has 4 frames, and the default --frames 0,10 needs 11" in err
    assert main(["match", str(frames), "--frames", "0,3", "--out", str(tmp_path / "o"), "--max-lines", "7",
                 "--show-rejected", *LAB]) == 0
    assert drawn["max_lines"] == 7 and drawn["show_rejected"] is True
    summary = json.loads((tmp_path / "o" / "matches.json").read_text())
    assert summary["step"] == 2 and summary["a"] == f"{frames}#0" and summary["b"] == f"{frames}#3"


@pytest.mark.parametrize("extra, said", [
    (["--frames", "-1,2"], "--frames: frame indices must be >= 0"),
    (["--frames", "0,2", "--step", "0"], "--step and --max-lines must be positive"),
    (["--frames", "0,9"], "frames"),  # beyond the clip: a given pair is not replaced
])
def test_match_refuses_bad_indices_and_steps(extra, said, tiny, tmp_path, capsys) -> None:
    frames, _ = tiny
    code, err = _match(tmp_path, capsys, str(frames), *extra, "--out", str(tmp_path / "x"))
    assert code == 2 and said in err and "default --frames" not in err and not (tmp_path / "x").exists()


def test_match_refuses_frames_with_two_images_and_a_mask_of_another_size(tiny, tmp_path, capsys) -> None:
    frames, mask = tiny
    a, b = sorted(frames.iterdir())[:2]
    code, err = _match(tmp_path, capsys, str(a), str(b), "--frames", "0,1", "--out", str(tmp_path / "x"))
    assert code == 2 and "with two images A B, leave it out" in err
    small = tmp_path / "small.png"
    Image.fromarray(np.full((24, 32), 255, np.uint8)).save(small)
    code, err = _match(tmp_path, capsys, str(a), str(b), "--mask", str(small), "--out", str(tmp_path / "x"))
    assert code == 2 and f"{small}: mask is 32x24 but frame A is 64x48" in err and not (tmp_path / "x").exists()


def test_match_mask_queries_its_objects_only_not_void(tiny, tmp_path, capsys) -> None:
    # a palette mask whose only non-zero pixels are 255 (void, DAVIS's convention) has no object to query
    frames, _ = tiny
    a, b = sorted(frames.iterdir())[:2]
    void = tmp_path / "void.png"
    ids = np.zeros((48, 64), np.uint8)
    ids[8:40, 8:56] = 255
    picture = Image.fromarray(ids, "P")
    picture.putpalette([0, 0, 0] * 255 + [255, 255, 255])
    picture.save(void)
    code, err = _match(tmp_path, capsys, str(a), str(b), "--mask", str(void), "--out", str(tmp_path / "x"))
    assert code == 2 and "no point of frame A to match" in err


# --------------------------------------------------------------------------- demo's replaceable output


def test_the_demo_replaces_only_its_own_earlier_output(tmp_path) -> None:
    out = tmp_path / "demo"
    (out / DEMO_SEQUENCE).mkdir(parents=True)
    (out / DEMO_SEQUENCE / "00000.png").write_bytes(b"")
    (out / "results.json").write_text(json.dumps({"per_sequence": {DEMO_SEQUENCE: {}}}))
    assert len(_earlier_demo(sorted(out.iterdir()))) == 2
    (out / DEMO_SEQUENCE / "holiday.png").write_bytes(b"")  # a PNG that no demo names
    with pytest.raises(InputError, match=DEMO_SEQUENCE):
        _earlier_demo(sorted(out.iterdir()))
    (out / DEMO_SEQUENCE / "holiday.png").unlink()
    (out / "results.json").write_text(json.dumps({"per_sequence": {"blackswan": {}}}))  # another run's results
    with pytest.raises(InputError, match="results.json"):
        _earlier_demo(sorted(out.iterdir()))


# --------------------------------------------------------------------------- eval: options reaching the runs


def _capture_run(monkeypatch, module: str, name: str) -> dict:
    """Replace ``module.name`` (an eval's run function) by one that records its keywords and returns
    None, as a rank other than 0 does: the command then ends with 0 without a report."""
    seen: dict = {}
    monkeypatch.setattr(importlib.import_module(module), name,
                        lambda *a, **kw: seen.update(kw, positional=a) or None)
    return seen


def test_eval_davis_passes_its_defaults_and_flags_to_the_run(tmp_path, monkeypatch) -> None:
    seen = _capture_run(monkeypatch, "vidcorr.evaluate.davis", "run_davis")
    assert main(["eval", "davis", "--root", str(tmp_path), "--out", str(tmp_path / "o"), *LAB]) == 0
    assert (seen["split"], seen["resolution"], seen["overlays"], seen["track"], seen["resume"]) == \
        ("val", "480p", False, False, False)
    assert main(["eval", "davis", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--overlays", "--track",
                 "--resolution", "Full-Resolution", "--split", "train", "--context", "3", *LAB]) == 0
    assert (seen["split"], seen["resolution"], seen["overlays"], seen["track"]) == \
        ("train", "Full-Resolution", True, True)
    assert seen["positional"][1].n_previous == 3


def test_eval_jhmdb_and_vip_square_size_and_overrides_win_over_the_variant(tmp_path, monkeypatch) -> None:
    datasets: dict = {}
    monkeypatch.setattr(jhmdb, "JhmdbDataset", lambda root, **kw: datasets.update(jhmdb=kw) or "jhmdb-data")
    monkeypatch.setattr(vip, "VipDataset", lambda root, **kw: datasets.update(vip=kw) or "vip-data")
    seen = _capture_run(monkeypatch, "vidcorr.evaluate.jhmdb", "run_jhmdb")
    split_file = tmp_path / "walk_test_split1.txt"
    assert main(["eval", "jhmdb", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--size", "200",
                 "--topk", "7", "--split-file", str(split_file), *LAB]) == 0
    preset = seen["positional"][1]
    assert (preset.size.mode, preset.size.size, preset.topk.k) == ("square", 200, 7)
    assert seen["skip_first_frame"] is True and datasets["jhmdb"]["splits"] == [split_file]
    assert main(["eval", "jhmdb", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--include-first-frame",
                 *LAB]) == 0
    assert seen["skip_first_frame"] is False and seen["positional"][1].size.size == 320  # JHMDB's own square

    seen = _capture_run(monkeypatch, "vidcorr.evaluate.vip", "run_vip")
    assert main(["eval", "vip", "--root", str(tmp_path), "--out", str(tmp_path / "v"), "--layout", "vipseg",
                 "--context", "2", *LAB]) == 0
    assert seen["skip_first_frame"] is False and datasets["vip"]["layout"] == "vipseg"
    preset = seen["positional"][1]
    assert (preset.size.size, preset.n_previous) == (560, 2)
    assert main(["eval", "vip", "--root", str(tmp_path), "--out", str(tmp_path / "v"), "--skip-first-frame",
                 *LAB]) == 0
    assert seen["skip_first_frame"] is True and datasets["vip"]["layout"] == "auto"


def _tracking_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["eval", "otb", "--root", "r", "--out", "o", *extra])


def test_tracker_settings_from_set_keep_their_fields_types() -> None:
    options = tracker_options(_tracking_args("--set", "topk=8", "--set", "calibrate=no", "--set",
                                             "search_scale=3"))
    assert options == {"topk": 8, "calibrate": False, "search_scale": 3.0}
    assert type(options["topk"]) is int and type(options["search_scale"]) is float
    assert tracker_options(_tracking_args("--set", "calibrate=yes"))["calibrate"] is True
    assert tracker_options(_tracking_args("--set", "calibrate=1"))["calibrate"] is True


def test_a_setting_of_the_other_tracker_is_named_as_such(capsys) -> None:
    dcf_only = sorted({f.name for f in dataclasses.fields(type(tracker_settings("dcf")))}
                      - {f.name for f in dataclasses.fields(type(tracker_settings("localise")))})[0]
    assert main(["eval", "otb", "--root", "r", "--out", "o", "--set", f"{dcf_only}=1", *LAB]) == 2
    assert f"--set {dcf_only}: a setting of the dcf tracker, not of localise" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["1,2,3", "vot2015,4", "x,y"])
def test_eao_interval_is_a_challenge_or_two_numbers(text, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "vot", "--root", "r", "--out", "o", "--eao-interval", text])
    assert "--eao-interval" in capsys.readouterr().err


def test_tracking_max_frames_needs_a_box_and_one_frame(tmp_path, capsys) -> None:
    assert main(["eval", "otb", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--max-frames", "1",
                 *LAB]) == 2
    assert "--max-frames must be at least 2, got 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- the dispatcher


def test_propagating_commands_bound_memory_and_verbose_logs_debug(tiny, tmp_path, monkeypatch, capsys) -> None:
    frames, mask = tiny
    bounded, levels = [], []
    monkeypatch.setattr(cli, "bound_cpu_memory", lambda: bounded.append(1))
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    missing = str(tmp_path / "missing")
    assert main(["-v", "propagate", missing, "--mask", str(mask), "--out", str(tmp_path / "o"), *LAB]) == 2
    assert bounded == [1] and levels == [logging.DEBUG]
    assert main(["match", missing, "--out", str(tmp_path / "o"), *LAB]) == 2  # embeds two frames: no bound
    assert bounded == [1] and levels == [logging.DEBUG, logging.INFO]
    assert missing in capsys.readouterr().err


def test_a_misspelt_option_is_told_by_the_innermost_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "davis", "--root", "r", "--out", "o", "--overlyas"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "usage: vidcorr eval davis" in err and "did you mean --overlays?" in err
    with pytest.raises(SystemExit):
        main(["propagate", "in", "--mask", "m", "--out", "o", "--bogus"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and "did you mean" not in err


def test_a_failed_command_keeps_its_status_when_stdout_s_reader_is_gone(monkeypatch, tmp_path) -> None:
    # the pipe's reader left (`| head`) after the command had failed: its own status 2, not 141
    class GonePipe:
        def __init__(self) -> None:
            self.fd = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT)

        def fileno(self) -> int:
            return self.fd

        def flush(self) -> None:
            raise BrokenPipeError

    pipe = GonePipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    monkeypatch.setattr(cli, "_stdout_reader_gone", lambda: True)
    monkeypatch.setattr(cli, "_run", lambda argv: 2)
    assert main(["score"]) == 2
    monkeypatch.setattr(cli, "_run", lambda argv: 0)
    assert main(["score"]) == cli.BROKEN_PIPE_EXIT
    os.close(pipe.fd)
