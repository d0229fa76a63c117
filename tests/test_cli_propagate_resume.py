"""`propagate --resume`: a run stopped by Ctrl-C, SIGTERM or SIGKILL, continued, ends as an
uninterrupted run does (every result file bit-identical, the overlay's frames and times), on the first
10 frames of DAVIS car-shadow at --size 120; and the refusals (another run's folder, nothing to resume)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tqdm
from cli_helpers import sigterm_default_raises
from video_helpers import CUT_CLIP, write_cut_folder

import vidcorr.cli.propagate_resume as propagate_resume
import vidcorr.io.masks as masks_io
import vidcorr.io.video as video_io
import vidcorr.keypoints as keypoints
from vidcorr.cli import main
from vidcorr.cli.propagate_resume import STATE, load_state
from vidcorr.io.video import open_frames
from vidcorr.models.floors import random_resnet18
from vidcorr.propagate import Propagator
from vidcorr.track_uvc import UVCTracker

_REAL_DECODE, _REAL_SAVE, _REAL_WRITE = keypoints.HeatmapCodec.decode, np.save, masks_io.write_indexed_png
SEQ = "car-shadow"
# 10 frames: the stop after frame 5 keeps frames 0-4 (states are taken at a 4-frame batch's end),
# and the resumed run crosses the next batch end (frame 8) before it finishes
RUN = ["--size", "120", "--max-frames", "10", "--context", "3"]
CAR = [[380.0, 250.0], [470.0, 240.0], [560.0, 260.0]]  # first-frame keypoints on the car


@pytest.fixture(scope="module")
def clip(davis2016_root) -> tuple[Path, Path]:
    return davis2016_root / "JPEGImages" / "480p" / SEQ, davis2016_root / "Annotations" / "480p" / SEQ / "00000.png"


def _first(kind: str, clip, tmp: Path) -> list[str]:
    """The first-frame annotation option of ``kind``, its file written under ``tmp`` where needed."""
    frames, mask = clip
    if kind in ("mask", "track"):  # UVC-track: its boxes are in the state and drawn on the overlay
        return ["--mask", str(mask)] + (["--track"] if kind == "track" else [])
    if kind == "keypoints":
        (tmp / "kp.json").write_text(json.dumps({"keypoints": CAR}))
        return ["--keypoints", str(tmp / "kp.json")]
    ids = masks_io.read_mask(mask).astype(np.float32)  # the car: id 1
    np.save(tmp / "first.npy", np.stack([1.0 - ids, ids]).astype(np.float32))
    return ["--labels", str(tmp / "first.npy"), "--labels-dtype", "float16"]


def _stop_after_frame(monkeypatch, module, name: str, frame: int, stop) -> None:
    """``stop()`` as ``module.name`` is about to write the result of frame ``frame + 1``."""
    real = getattr(module, name)

    def write(path, *args, **kwargs):
        if re.search(rf"0*{frame + 1}\.(png|npy)$", str(path)):
            stop()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, write)


def _ctrl_c():
    raise KeyboardInterrupt


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _summary(text: str) -> str:
    return re.sub(r"in [\d.]+s \([\d.]+ frames/s\)", "in T", text)


@pytest.fixture
def encoded(monkeypatch) -> list[list[str]]:
    """Per video written in this process, in order: the SHA-256 of each frame given to the encoder."""
    real, seen = video_io.write_video, []

    def write_video(path, frames, *args, **kwargs):
        seen.append(digests := [])
        return real(path, (digests.append(hashlib.sha256(f.tobytes()).hexdigest()) or f for f in frames),
                    *args, **kwargs)

    monkeypatch.setattr(video_io, "write_video", write_video)
    return seen


def _same_as_uninterrupted(full: Path, resumed: Path, encoded: list[list[str]]) -> None:
    """Every result file the same bytes, overlay.mp4 included (the same frames encode to the same
    bytes: `vidcorr.io.video_pyav.write_pyav`), and the encoder given the same frames."""
    assert _files(resumed) == _files(full)  # names and bytes of every result file
    assert len(encoded[0]) == 10 and encoded[-1] == encoded[0]  # the uninterrupted run's video, the resumed one's


@pytest.mark.parametrize("kind, stop, code", [("mask", _ctrl_c, 130), ("labels", _sigterm, 143),
                                              ("keypoints", _ctrl_c, 130), ("track", _sigterm, 143)])
def test_a_stopped_run_resumed_ends_as_an_uninterrupted_one(clip, tmp_path, monkeypatch, capsys, encoded, kind, stop,
                                                            code):
    frames, _ = clip
    argv = ["propagate", str(frames), *_first(kind, clip, tmp_path), *RUN, "--features", "lab-pixels"]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    summary = _summary(capsys.readouterr().out.replace(str(tmp_path / "full"), "OUT"))
    if kind == "keypoints":  # one file at the end: frame 6's heatmap decoding is where it stops
        real, calls = keypoints.HeatmapCodec.decode, []

        def decode(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 6:
                stop()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(keypoints.HeatmapCodec, "decode", decode)
    elif kind == "labels":
        _stop_after_frame(monkeypatch, np, "save", 5, stop)
    else:
        _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 5, stop)
    capsys.readouterr()
    out = tmp_path / "out"
    with sigterm_default_raises(), pytest.raises(SystemExit) as stopped:
        main([*argv, "--out", str(out)])
    assert stopped.value.code == code
    partial = tmp_path / "out.partial"
    assert "after 6 of 10 frames (0:0" in (err := capsys.readouterr().err)
    assert f"kept in {partial} (frames 0 to 4): add --resume to continue" in err and not out.exists()
    assert load_state(partial / STATE)["frames_done"] == 5
    _undo_stop(monkeypatch, kind)

    # without --resume the partial folder is refused, not reused or thrown away
    assert main([*argv, "--out", str(out)]) == 2
    assert f"{partial}: holds a stopped `vidcorr propagate`'s results so far: add --resume" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert _summary(capsys.readouterr().out.replace(str(out), "OUT")) == summary
    assert not partial.exists() and not (out / STATE).exists()
    _same_as_uninterrupted(tmp_path / "full", out, encoded)
    # resumed again once finished: refused without advising to remove the results
    assert main([*argv, "--out", str(out), "--resume"]) == 2
    assert f"{out}: output folder exists and is not empty: nothing to resume (a finished run's results are kept in " \
           "it, a stopped run's in out.partial); keep them" in capsys.readouterr().err
    _same_as_uninterrupted(tmp_path / "full", out, encoded)


def _undo_stop(monkeypatch, kind: str) -> None:
    """The stop put in for the first run taken out again (``encoded``'s patch stays)."""
    if kind == "keypoints":
        monkeypatch.setattr(keypoints.HeatmapCodec, "decode", _REAL_DECODE)
    elif kind == "labels":
        monkeypatch.setattr(np, "save", _REAL_SAVE)
    else:
        monkeypatch.setattr(masks_io, "write_indexed_png", _REAL_WRITE)


def test_a_run_killed_outright_resumes_from_its_last_save(clip, tmp_path, encoded):
    """SIGKILL: no clean-up runs. The process saves at every batch end here (the save period patched to
    0) and sleeps after its second save, frames 0-8, where it is killed; a kill while a result or the
    state is being written leaves a temporary file, which the resume removes."""
    frames, mask = clip
    argv = ["propagate", str(frames), "--mask", str(mask), *RUN, "--features", "lab-pixels"]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    out, partial = tmp_path / "out", tmp_path / "out.partial"
    script = textwrap.dedent(f"""
        import time, sys
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # this process's: another count sums in another order
        import vidcorr.cli.propagate_resume as resume
        from vidcorr.cli import main
        resume.SAVE_SECONDS = 0
        real = resume.StateSaver.save
        def save(self):
            real(self)
            if self.saved_frames == 9:
                time.sleep(600)
        resume.StateSaver.save = save
        main({[*argv, "--out", str(out)]!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ((partial / STATE).is_file() and load_state(partial / STATE)["frames_done"] == 9):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists() and partial.is_dir()
    (partial / "masks" / ".00009.png.abcd1234.tmp.png").write_bytes(b"half a PNG")  # as a kill in a write leaves
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    _same_as_uninterrupted(tmp_path / "full", out, encoded)
    assert len(encoded) == 2  # the uninterrupted and the resumed run's (the killed one ran in another process)


def _run_until(propagator: Propagator, frames: list[np.ndarray], first: torch.Tensor, until: int) -> dict:
    propagator.start(frames[0], first)
    for t, _ in enumerate(propagator.follow(frames[1:]), start=1):
        if t == until:
            return propagator.state()
    raise AssertionError("too few frames")


@pytest.mark.parametrize("tracker", [False, True])
def test_a_resumed_propagator_holds_the_context_features_of_an_uninterrupted_one(clip, tracker):
    """The features a resume embeds again, in the first run's batches, are bitwise those the first
    run held (a conv encoder on this machine), and so are the labels, boxes and every later frame's
    output; UVC-track's boxes are part of the state."""
    frames_dir, mask = clip
    # a quarter of the size each way (120 x 214): as --size 120 propagates, minus the resizing
    frames = [np.ascontiguousarray(frame[::4, ::4]) for frame in open_frames(frames_dir).head(10)]
    ids = masks_io.read_mask(mask)[::4, ::4].astype(np.float32)
    first = torch.from_numpy(np.stack([1.0 - ids, ids]).astype(np.float32))
    torch.manual_seed(0)
    encoder = random_resnet18()
    # crw for both: uvc's preset is 40x slower here, and the tracker's state is the same either way
    make = (lambda: UVCTracker(encoder, "crw", batch_size=4)) if tracker else (lambda: Propagator(
        encoder, "crw", batch_size=4))
    full = make()
    state = _run_until(full, frames, first, 8)
    later = [soft.clone() for _, soft in full.follow(frames[9:])]  # frame 9 after an uninterrupted 0..8

    resumed = make()
    resumed.resume(state)
    resumed.start(frames[0], first)
    outputs = [soft for _, soft in resumed.follow(frames[1:])]
    assert resumed.frames_taken == 9 and len(outputs) == 1
    torch.testing.assert_close(outputs[0], later[0], rtol=0, atol=0)
    # the ring buffer after frame 9, features embedded again in frames 1-8's batches included
    assert [m.frame for m in resumed._context] == [m.frame for m in full._context]
    for memory, uninterrupted in zip(resumed._context, full._context):
        assert torch.equal(memory.feats, uninterrupted.feats) and torch.equal(memory.labels, uninterrupted.labels)
        assert getattr(memory, "boxes", None) == getattr(uninterrupted, "boxes", None)
    assert resumed.cuts.state() == full.cuts.state() and resumed.match_score == full.match_score
    if tracker:
        assert resumed.boxes == full.boxes


def test_resume_refuses_another_run_naming_what_differs(clip, tmp_path, monkeypatch, capsys):
    frames, mask = clip
    argv = ["propagate", str(frames), "--mask", str(mask), *RUN, "--features", "lab-pixels", "--out",
            str(out := tmp_path / "out")]
    assert main([*argv, "--resume"]) == 2
    assert f"{out}: nothing to resume: no {tmp_path / 'out.partial'}" in capsys.readouterr().err
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 5, _ctrl_c)
    with pytest.raises(SystemExit):
        main(argv)
    monkeypatch.undo()
    partial = tmp_path / "out.partial"
    before = sorted(p.name for p in partial.rglob("*"))
    for change, said in [(["--size", "96"], "other preset knobs (size 120 -> 96)"),
                         (["--max-frames", "9"], "max_frames 10 -> 9"),
                         (["--features", "random-resnet18"], "another model (lab-pixels -> random-resnet18)"),
                         (["--no-video"], "video true -> false")]:
        assert main([*argv, *change, "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"{partial}: holds a stopped propagation with" in err and said in err, err
        assert "other input" not in err, err  # --max-frames 9 named as the input's frames too, until 2026-12-08
    other_mask = mask.parent / "00003.png"  # another mask of the same size
    assert main([*[str(other_mask) if a == str(mask) else a for a in argv], "--resume"]) == 2
    assert f"other annotation (file {mask} -> {other_mask}, sha256 " in capsys.readouterr().err
    assert main(["propagate", str(frames), "--box", "300,200,200,80", "--out", str(out), "--resume"]) == 2
    assert "--resume continues masks, keypoints and soft labels, not --box" in capsys.readouterr().err
    assert sorted(p.name for p in partial.rglob("*")) == before and not out.exists()  # nothing changed
    # a result of the frames before the stop deleted: a resume does not write it again
    (partial / "masks" / "00003.png").rename(partial / "00003.png")
    assert main([*argv, "--resume"]) == 2
    assert f"{partial / 'masks' / '00003.png'}: missing: the stopped run wrote it, one of the results of frames 0 " \
           "to 4 (1 gone)" in capsys.readouterr().err
    assert load_state(partial / STATE)["frames_done"] == 5 and not out.exists()
    (partial / "00003.png").rename(partial / "masks" / "00003.png")

    def disk_full():
        raise OSError(28, "No space left on device")

    # an error in a resumed run keeps what the runs before it saved (a fresh run's error leaves nothing);
    # the mask moved elsewhere, its bytes the same: the same annotation, resumed
    (moved := tmp_path / "moved.png").write_bytes(mask.read_bytes())
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 6, disk_full)
    with pytest.raises(OSError, match="No space left"):
        main([*[str(moved) if a == str(mask) else a for a in argv], "--resume"])
    assert load_state(partial / STATE)["frames_done"] == 5 and not out.exists()
    (partial / STATE).unlink()  # as a kill before the first save leaves it
    assert main([*argv, "--resume"]) == 2
    assert f"{partial}: holds no saved progress" in capsys.readouterr().err
    assert main(argv) == 2
    assert f"{partial}: holds what a `vidcorr propagate` killed before its first save left (nothing to resume): " \
           "delete it to start again" in capsys.readouterr().err


def test_a_resumed_run_does_not_warn_again_of_a_cut_before_its_stop(data_dir, tmp_path, monkeypatch, caplog):
    """The trailer's cut at frame 80 (docs/propagation.md), here frame 4 of its frames 76-85: warned of
    by the run that propagated it, not again by a resume from a state taken after it (frame 8)."""
    frames = list(itertools.islice(iter(open_frames(data_dir / CUT_CLIP).head(86)), 76, None))
    folder, mask = write_cut_folder(frames, 76, tmp_path)
    argv = ["propagate", str(folder), "--mask", str(mask), "--out", str(tmp_path / "out"),
            "--features", "lab-pixels", "--size", "120", "--context", "3", "--no-video"]
    real = masks_io.write_indexed_png

    def write(path, *args, **kwargs):
        if Path(path).name == "00085.png":  # frame 9: the state after frame 8 is the last taken
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(masks_io, "write_indexed_png", write)
    with caplog.at_level("WARNING"), pytest.raises(SystemExit):
        main(argv)
    assert [r.getMessage() for r in caplog.records if "shot cut" in r.getMessage()] == [
        f"{folder}: frame 4 (00080.png) looks like a shot cut (its best matches to the frames before it are far "
        "weaker than before): the labels after it may follow other objects"]
    assert load_state(tmp_path / "out.partial" / STATE)["propagator"]["cuts"]["flagged"] == [4]
    monkeypatch.setattr(masks_io, "write_indexed_png", real)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*argv, "--resume"]) == 0
    assert [r.getMessage() for r in caplog.records if "shot cut" in r.getMessage()] == []


def test_a_resumed_run_stopped_again_says_the_time_of_every_session(clip, tmp_path, monkeypatch, capsys):
    """The stop line counts the frames done by every session, so its time too: the state written by
    the first stop is given 10 minutes spent, which the second stop's line includes."""
    frames, mask = clip
    argv = ["propagate", str(frames), "--mask", str(mask), *RUN, "--features", "lab-pixels", "--no-video",
            "--out", str(tmp_path / "out")]
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 5, _ctrl_c)
    with pytest.raises(SystemExit):
        main(argv)
    state_file = tmp_path / "out.partial" / STATE
    state = load_state(state_file)
    assert state["elapsed"] < 60
    torch.save({**state, "elapsed": 600.0}, state_file)
    monkeypatch.setattr(masks_io, "write_indexed_png", _REAL_WRITE)
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 8, _ctrl_c)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*argv, "--resume"])
    assert "interrupted after 9 of 10 frames (10:0" in capsys.readouterr().err


def test_a_second_ctrl_c_while_the_first_is_saving_is_ignored(clip, tmp_path, monkeypatch, capsys):
    """Ctrl-C pressed twice: the second comes as the first's state is being saved (at its sync), and
    the state is written and the stop line says what was kept, as for one Ctrl-C."""
    frames, mask = clip
    out = tmp_path / "out"
    monkeypatch.setattr(os, "sync", lambda: os.kill(os.getpid(), signal.SIGINT))
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 5, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(SystemExit) as stopped:
        main(["propagate", str(frames), "--mask", str(mask), *RUN, "--features", "lab-pixels", "--no-video", "--out",
              str(out)])
    assert stopped.value.code == 130
    assert f"kept in {tmp_path / 'out.partial'} (frames 0 to 4): add --resume" in capsys.readouterr().err
    assert load_state(tmp_path / "out.partial" / STATE)["frames_done"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C stops the next command again


def _stopped(clip, tmp_path: Path, monkeypatch, *options: str) -> list[str]:
    """The command line of a mask run on RUN's frames into tmp_path / "out", run and stopped by Ctrl-C
    as it writes frame 6 (frames 0-4 kept in out.partial)."""
    frames, mask = clip
    argv = ["propagate", str(frames), "--mask", str(mask), *RUN, "--features", "lab-pixels", *options,
            "--out", str(tmp_path / "out")]
    _stop_after_frame(monkeypatch, masks_io, "write_indexed_png", 5, _ctrl_c)
    with pytest.raises(SystemExit):
        main(argv)
    monkeypatch.setattr(masks_io, "write_indexed_png", _REAL_WRITE)
    return argv


def test_the_bar_of_a_resumed_run_leaves_the_context_re_embedding_out_of_its_time(clip, tmp_path, monkeypatch):
    """The first frame after the stop waits for the context frames to be embedded again (0.5 s here,
    ~10 s at 480p): the bar's clock starts after it, which its rate and time left were computed with."""
    argv = _stopped(clip, tmp_path, monkeypatch, "--no-video")
    real_restore, bars = Propagator._restore, []

    def restore(self, *args):
        time.sleep(0.5)
        return real_restore(self, *args)

    class Bar(tqdm.tqdm):
        def close(self):
            if not self.disable:  # closed again when collected
                bars.append(self.format_dict)
            super().close()

    monkeypatch.setattr(Propagator, "_restore", restore)
    monkeypatch.setattr(tqdm, "tqdm", Bar)
    assert main([*argv, "--resume"]) == 0
    (bar,) = bars
    assert bar["n"] == 10 and bar["elapsed"] < 0.5, bar  # frames 6-9 at this size: milliseconds


def test_a_stop_in_a_resumed_runs_final_overlay_pass_says_the_video_was_being_written(clip, tmp_path, monkeypatch,
                                                                                     capsys):
    """Every frame done, the overlay video drawn at the end (the third frame's overlay is where it stops):
    the line says what was under way, not only "after 10 of 10 frames"."""
    import vidcorr.masks

    argv = _stopped(clip, tmp_path, monkeypatch)
    real, calls = vidcorr.masks.mask_overlay, []

    def overlay(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(vidcorr.masks, "mask_overlay", overlay)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--resume"])
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted after 10 of 10 frames, while writing overlay.mp4 (0:0" in err, err
    assert f"kept in {tmp_path / 'out.partial'} (frames 0 to 8): add --resume" in err, err


@pytest.mark.parametrize("where", ["load_model", "mask_propagator"])
def test_ctrl_c_before_a_resume_starts_says_the_partial_folder_is_kept(clip, tmp_path, monkeypatch, capsys, where):
    """Ctrl-C as the model loads (before the output folder is opened), or as the propagator is made
    (before the state is taken up): the stopped run's folder is kept unchanged, and the line says so."""
    import vidcorr.cli.propagate_cmd as propagate_cmd
    import vidcorr.track_uvc as track_uvc

    argv = _stopped(clip, tmp_path, monkeypatch, "--no-video")
    partial = tmp_path / "out.partial"
    before = _files(partial)
    monkeypatch.setattr(propagate_cmd if where == "load_model" else track_uvc, where, lambda *a, **k: _ctrl_c())
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--resume"])
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    if where == "load_model":
        assert f"vidcorr propagate: interrupted before resuming; {partial} kept as it was: add --resume to " \
               "continue" in err, err
    else:  # was "nothing written ... nothing saved to resume from"
        assert "interrupted after 5 of 10 frames (0:0" in err, err
        assert f"; kept in {partial} (frames 0 to 4): add --resume to continue" in err, err
    assert _files(partial) == before and not (tmp_path / "out").exists()


def test_sigterm_before_a_resume_starts_says_the_partial_folder_is_kept(clip, tmp_path, monkeypatch, capsys):
    """SIGTERM as the model loads: the command line's start-up handler was given back after parsing,
    and SIGTERM's default ended the resume with exit 143 and not a word of the kept folder."""
    import vidcorr.cli.propagate_cmd as propagate_cmd

    argv = _stopped(clip, tmp_path, monkeypatch, "--no-video")
    partial = tmp_path / "out.partial"
    before = _files(partial)
    monkeypatch.setattr(propagate_cmd, "load_model", lambda *a, **k: _sigterm())
    capsys.readouterr()
    with sigterm_default_raises() as unhandled:
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--resume"])
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    assert stopped.value.code == 143
    assert capsys.readouterr().err == f"vidcorr propagate: stopped by SIGTERM before resuming; {partial} kept as " \
                                      "it was: add --resume to continue\n"
    assert _files(partial) == before and not (tmp_path / "out").exists()


def test_a_save_syncs_this_runs_new_results_not_every_file_system(tmp_path, monkeypatch):
    """A state on disk must not name results a power cut can lose: each save fsyncs the result files
    written since the last one and the folders naming them, not the whole system (os.sync until 2026-12-08)."""
    partial = tmp_path / "out.partial"
    (partial / "masks").mkdir(parents=True)
    synced: list[str] = []
    real = propagate_resume._fsync
    monkeypatch.setattr(propagate_resume, "_fsync", lambda path: synced.append(Path(path).name) or real(path))
    monkeypatch.setattr(os, "sync", lambda: pytest.fail("os.sync() waits for every file system"))
    saver = propagate_resume.StateSaver(partial, {"command": "propagate"}, [])
    for t in range(3):
        (partial / "masks" / f"{t:05d}.png").write_bytes(b"a mask")
    saver.take({"frames_taken": 2, "context": []})
    saver.save()
    files = [name for name in synced if name.endswith(".png")]
    assert sorted(files) == ["00000.png", "00001.png", "00002.png"] and {"masks", "out.partial"} <= set(synced)
    synced.clear()
    (partial / "masks" / "00003.png").write_bytes(b"a mask")
    saver.take({"frames_taken": 3, "context": []})
    saver.save()
    assert [name for name in synced if name.endswith(".png")] == ["00003.png"]  # the earlier ones once only
    assert load_state(partial / STATE)["frames_done"] == 4
