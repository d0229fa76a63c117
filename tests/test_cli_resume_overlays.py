"""`eval davis --resume`: --overlays covers the kept sequences too, a killed run's temporary
files are deleted, and the timing is the whole run's. The summaries and refusals of propagate,
demo, match and eval jhmdb|vip|otb|vot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import FAST, interrupt_on_call

from vidcorr.cli import main
from vidcorr.evaluate import davis as davis_eval
from vidcorr.io.video import open_frames


def _eval(root: Path, out: Path, *extra: str) -> int:
    return main(["eval", "davis", "--root", str(root), "--out", str(out), *extra, *FAST])


def test_resume_with_overlays_draws_the_kept_sequences_from_their_masks(two_clips, tmp_path, capsys):
    """A run made without --overlays, resumed with it, said "overlay videos in OUT/overlays" but had
    none for the sequences it kept. They are drawn from the result PNGs: the same video as one
    written while propagating, frame for frame, and the PNGs are not written again."""
    full, out = tmp_path / "full", tmp_path / "out"
    assert _eval(two_clips, full, "--overlays") == 0
    assert _eval(two_clips, out, "--sequences", "blackswan") == 0 and not (out / "overlays").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "blackswan").iterdir()}
    capsys.readouterr()
    assert _eval(two_clips, out, "--resume", "--overlays") == 0
    assert f"overlay videos in {out / 'overlays'}" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["blackswan.mp4", "car-shadow.mp4"]
    for seq in ("blackswan", "car-shadow"):
        drawn, expected = (open_frames(d / "overlays" / f"{seq}.mp4").read_all() for d in (out, full))
        assert drawn.shape == (4, 480, 854 + 8 + 854, 3) and np.array_equal(drawn, expected), seq
    assert {p.name: p.stat().st_mtime_ns for p in (out / "blackswan").iterdir()} == kept
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == ["blackswan"]
    # an overlay a kept sequence has is kept as it is
    made = (out / "overlays" / "blackswan.mp4").stat().st_mtime_ns
    assert _eval(two_clips, out, "--resume", "--overlays") == 0
    assert (out / "overlays" / "blackswan.mp4").stat().st_mtime_ns == made


def test_resume_of_a_finished_run_keeps_its_times(two_clips, tmp_path, monkeypatch):
    """A --resume with nothing left to propagate rewrote results.json's timing to zeros. The run
    record keeps what each sequence took, so the timing is the whole run's, summed over its sessions:
    the finished run's, unchanged, and an interrupted one's with both sessions' sequences."""
    out = tmp_path / "out"
    assert _eval(two_clips, out) == 0
    finished = json.loads((out / "results.json").read_text())["timing"]
    times = json.loads((out / ".run.json").read_text())["timing"]
    assert list(times) == ["blackswan", "car-shadow"] and finished["frames"] == 8 and finished["seconds"] > 0
    assert finished["seconds"] == round(sum(t["seconds"] for t in times.values()), 3)
    assert _eval(two_clips, out, "--resume") == 0
    resumed = json.loads((out / "results.json").read_text())["timing"]
    measures = ("frames", "seconds", "frames_per_second", "feature_seconds", "propagation_seconds")
    assert {k: resumed[k] for k in measures} == {k: finished[k] for k in measures}
    assert resumed["kept_from_earlier_run"] == ["blackswan", "car-shadow"]

    # interrupted in its second sequence, then resumed: blackswan timed in the first session
    interrupt_on_call(monkeypatch, davis_eval, "write_mask_sequence")
    stopped = tmp_path / "stopped"
    assert _eval(two_clips, stopped) == 130
    first = json.loads((stopped / ".run.json").read_text())["timing"]
    assert list(first) == ["blackswan"] and first["blackswan"]["frames"] == 4
    assert _eval(two_clips, stopped, "--resume") == 0
    times = json.loads((stopped / ".run.json").read_text())["timing"]
    assert times["blackswan"] == first["blackswan"]  # kept, not timed again
    timing = json.loads((stopped / "results.json").read_text())["timing"]
    assert timing["frames"] == 8 and timing["seconds"] == round(sum(t["seconds"] for t in times.values()), 3)
    assert timing["feature_seconds"] == round(sum(t["feature_seconds"] for t in times.values()), 3)


def _killed_while_writing(*paths: Path) -> list[str]:
    """Enter `atomic_file` for each path in a process that then dies at once (as under SIGKILL: no
    cleanup runs); -> the names of the temporary files it left."""
    code = ("import os, sys\nfrom vidcorr.io.atomic import atomic_file\n"
            "open_ = [atomic_file(p) for p in sys.argv[1:]]\n"  # held: a collected one would clean up
            "for block in open_:\n    print(block.__enter__().name, flush=True)\nos._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_resume_deletes_the_temporary_files_a_killed_run_left(two_clips, tmp_path, caplog):
    """A run killed while writing an overlay (or its results) left `.NAME.XXXXXXXX.tmp.EXT` files that
    no later run removed. A resume deletes exactly those, says so, and leaves everything else."""
    out = tmp_path / "out"
    assert _eval(two_clips, out, "--sequences", "blackswan", "--overlays") == 0
    left = _killed_while_writing(out / "overlays" / "car-shadow.mp4", out / "results.json", out / ".run.json")
    assert (out / "overlays" / left[0]).is_file() and (out / left[1]).is_file() and (out / left[2]).is_file()
    others = ["overlays/.car-shadow.mp4.tmp.mp4",  # not mkstemp's random part
              "overlays/.car-shadow.mp4.abcd1234.tmp.mkv",  # not the name's own suffix
              ".notes.abcd1234.tmp.txt", "mine.tmp.mp4", "overlays/notes.txt"]
    for name in others:
        (out / name).write_text("not ours")
    caplog.set_level("INFO", logger="vidcorr.evaluate")  # davis and runs
    assert _eval(two_clips, out, "--resume", "--overlays") == 0
    assert "removed 3 temporary file(s) left by a killed run" in caplog.text and left[0] in caplog.text
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        [".car-shadow.mp4.tmp.mp4", ".car-shadow.mp4.abcd1234.tmp.mkv", "notes.txt", "blackswan.mp4", "car-shadow.mp4"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".notes.abcd1234.tmp.txt", "mine.tmp.mp4", ".run.json", "blackswan", "car-shadow", "overlays",
         "results.json", "j_per_frame.png"])


def test_resume_into_a_folder_that_held_no_run_deletes_nothing(two_clips, tmp_path):
    """Only a folder with our run record is cleaned: --resume into a user's folder deleted their
    files of the same pattern (another program's live temporary). Such a folder holds no run to
    resume and is now refused outright, left as it was."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".thesis.tex.ab12cd34.tmp.tex").write_text("precious")
    assert _eval(two_clips, out, "--resume", "--sequences", "blackswan") == 2
    assert [p.name for p in out.iterdir()] == [".thesis.tex.ab12cd34.tmp.tex"]
    assert (out / ".thesis.tex.ab12cd34.tmp.tex").read_text() == "precious"


# --------------------------------------------------------------------------- summaries and refusals


@pytest.mark.parametrize("first", [["--mask", "MASK"], ["--labels", "LABELS"], ["--keypoints", "KEYPOINTS"]])
@pytest.mark.parametrize("tracker", ["dcf", "localise"])
def test_propagate_refuses_a_tracker_without_a_box(first, tracker, short_clip, tmp_path, capsys):
    """--tracker with --mask, --labels or --keypoints ran without it, exit 0; an explicit
    `--tracker localise` (the box's default) too."""
    files = {"MASK": short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png",
             "LABELS": tmp_path / "first.npy", "KEYPOINTS": tmp_path / "first.json"}
    out = tmp_path / "out"
    args = ["propagate", str(short_clip / "JPEGImages" / "480p" / "car-shadow"), first[0], str(files[first[1]]),
            "--tracker", tracker, "--out", str(out), *FAST]
    assert main(args) == 2
    assert "--tracker chooses how a box is tracked: it needs --box" in capsys.readouterr().err
    assert not out.exists()


def test_propagate_tracks_a_box_with_localise_by_default(short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    assert main(["propagate", str(frames), "--box", "300,150,100,80", "--out", str(tmp_path / "out"),
                 "--features", "lab-pixels", "--no-video"]) == 0
    assert "tracker localise" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "boxes.json").read_text())["tracker"] == "localise"


def test_demo_names_a_changed_size_beside_its_score(demo_run):
    """`demo --size 240` printed "J&F-Mean = 0.7267 (preset crw; ...)", easily set against the
    README's full-size 0.786. (demo_run: `demo --size 96 --features lab-pixels`, shared.)"""
    assert demo_run.code == 0
    lines = demo_run.stdout.splitlines()
    assert ", preset crw (--size 96), UNTRAINED FLOOR" in lines[0]
    assert lines[-1].startswith("J&F-Mean = ") and "(preset crw (--size 96); UNTRAINED FLOOR" in lines[-1]


@pytest.mark.parametrize("size, preset", [([], "preset crw"), (["--size", "96"], "preset crw (--size 96)")])
def test_match_names_a_changed_size(size, preset, short_clip, tmp_path, capsys):
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    assert main(["match", str(frames), "--frames", "0,5", "--out", str(tmp_path / "m"), "--features", "lab-pixels",
                 *size]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"with lab-pixels (untrained floor), {preset}")


@pytest.mark.parametrize("task, data", [
    ("jhmdb", ["jhmdb", "--size", "64"]),
    ("vip", ["vipseg-snippet", "--size", "64"]),
    ("otb", ["tracking/otb", "--sequences", "Soccer", "--max-frames", "5"]),
    ("vot", ["tracking/vot2015", "--sequences", "ball1", "--max-frames", "5"]),
])
def test_every_eval_names_its_model_as_eval_davis_does(task, data, data_dir, tmp_path, capsys):
    """eval jhmdb|vip|otb|vot printed "model: {json}" where eval davis prints "model: LABEL {json}"."""
    root, *extra = data
    assert main(["eval", task, "--root", str(data_dir / root), "--out", str(tmp_path / "out"),
                 "--features", "lab-pixels", *extra]) == 0
    printed = capsys.readouterr().out
    assert 'model: lab-pixels (untrained floor) {"features": "lab-pixels", "trained": false}' in printed, printed

