"""`vidcorr demo`: its results on the shipped sequence, and what it replaces or refuses in its output folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from cli_helpers import sigterm_after_writes, sigterm_default_raises

import vidcorr.metrics.davis as davis_metrics
from vidcorr.cli import main
from vidcorr.metrics.davis import GLOBAL_KEYS


def test_demo_runs_on_the_shipped_sequence(demo_run, tmp_path, capsys):
    assert demo_run.code == 0
    text = demo_run.stdout
    assert "J&F-Mean" in text and "UNTRAINED FLOOR" in text
    assert "propagate:" in demo_run.stderr and "/40 [" in demo_run.stderr  # minutes at 480p: it was silent
    out = tmp_path / "demo"
    shutil.copytree(demo_run.out, out)  # the shared run's output, to be replaced below
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["J&F-Mean"] <= 1.0 and results["preset_knobs"]["size"]["size"] == 96
    timing = results["timing"]  # as eval's: what the demo's time went to, on how many threads, at what memory
    assert timing["frames"] == 40 and timing["torch_threads"] >= 1 and timing["peak_rss_mib"] > 0
    assert 0 < timing["feature_seconds"] + timing["propagation_seconds"] <= timing["seconds"]
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


def test_an_interrupted_demo_keeps_the_earlier_output(demo_run, tmp_path, monkeypatch, capsys):
    """A second demo run deleted the first one's output before it began: interrupted, the folder was
    left empty. Now the earlier output gives way only to a complete new one."""
    out = tmp_path / "demo"
    assert demo_run.code == 0
    shutil.copytree(demo_run.out, out)  # a complete earlier demo's output
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


@pytest.mark.parametrize("when", ["model", "masks"])
def test_sigterm_leaves_nothing_and_says_so(tmp_path, monkeypatch, capsys, when):
    """SIGTERM as the model loads ended the demo with exit 143 and not a word; halfway through the
    masks it also left a hidden .demo.partial-* folder of the masks so far beside OUT."""
    import vidcorr.cli.demo_cmd as demo_cmd
    import vidcorr.evaluate.davis as davis

    if when == "model":
        monkeypatch.setattr(demo_cmd, "load_model", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))
    else:
        written = sigterm_after_writes(monkeypatch, davis, 3)
    argv = ["demo", "--out", str(tmp_path / "demo"), "--size", "96", "--features", "lab-pixels"]
    with sigterm_default_raises() as unhandled:
        if when == "model":
            assert main(argv) == 143
        else:
            with pytest.raises(SystemExit) as stop:
                main(argv)
            assert stop.value.code == 143 and len(written) == 3
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == ("vidcorr: interrupted by SIGTERM while starting; nothing was done" if when == "model"
                   else "vidcorr demo: stopped by SIGTERM; nothing written")
    assert list(tmp_path.iterdir()) == []
