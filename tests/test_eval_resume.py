"""`eval jhmdb|vip|otb|vot --resume`: a run stopped after its first video or sequence continues where it
stopped, its results equal an uninterrupted run's (the times aside), and a resume with another
configuration or into another command's folder is refused, naming what differs. Tiny real data:
the JHMDB clip and the VIPSeg snippet each copied under two names, OTB / VOT at --max-frames 6.
(`eval davis --resume`: test_cli_eval_davis.py, test_cli_resume_overlays.py.)"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import interrupt_on_call
from jhmdb_helpers import jhmdb_tree

from vidcorr.cli import main
from vidcorr.cli.eval_runs import resume_hint
from vidcorr.evaluate import tracking
from vidcorr.evaluate.runs import RANK_RECORD, RUN_STAMP, RunRecord, write_item_folder
from vidcorr.evaluate.timing import run_timing

VIPSEG_VIDEO = "12_1mWNahzcsAc"
FLOOR = ["--features", "lab-pixels"]


def _jhmdb_root(data_dir: Path, tmp_path: Path) -> Path:
    """The real clip's first 6 frames under two video names (catch/a, catch/b)."""
    return jhmdb_tree(tmp_path, data_dir / "jhmdb", 6, videos=("a", "b"))


def _vipseg_root(data_dir: Path, tmp_path: Path) -> Path:
    """The VIPSeg snippet's video under two names (a, b), in its own layout (images/, source/)."""
    root = tmp_path / "vipseg"
    for video in ("a", "b"):
        for folder in ("images", "source"):
            shutil.copytree(data_dir / "vipseg-snippet" / folder / VIPSEG_VIDEO, root / folder / video)
    return root


# task -> (root, the options of the run, the module and per-item function the interrupt is raised
# from, the first item's output, a changed option and what the refusal names)
CASES = {
    "jhmdb": (_jhmdb_root, ["--size", "64"], "vidcorr.evaluate.jhmdb", "propagate_video",
              "predictions/catch/a.json", ["--size", "80"], "other preset knobs (size 64x64 -> 80x80)"),
    "vip": (_vipseg_root, ["--size", "64"], "vidcorr.evaluate.vip", "write_video", "a/00001255.png",
            ["--size", "64", "--preset", "uvc"], "another preset (crw -> uvc)"),
    "otb": (lambda data, _: data / "tracking" / "otb", ["--max-frames", "6"], "vidcorr.evaluate.tracking",
            "track_sequence", "Crossing.txt", ["--max-frames", "6", "--set", "search_scale=3"],
            "other settings (search_scale 2 -> 3)"),
    "vot": (lambda data, _: data / "tracking" / "vot2015", ["--max-frames", "6", "--protocol", "vot-baseline"],
            "vidcorr.evaluate.tracking", "run_supervised", "baseline/ball1/ball1_001.txt",
            ["--max-frames", "7", "--protocol", "vot-baseline"], "another max_frames (6 -> 7)"),
}


def _without_times(results: dict) -> dict:
    """results.json less what differs between two runs of the same configuration: the times."""
    kept = {k: v for k, v in results.items() if k != "timing"}
    if "per_sequence" in kept and isinstance(next(iter(kept["per_sequence"].values())), dict):
        kept["per_sequence"] = {name: {k: v for k, v in s.items() if k not in ("seconds", "frames_per_second")}
                                for name, s in kept["per_sequence"].items()}
    return kept


@pytest.mark.parametrize("task", list(CASES))
def test_a_stopped_run_resumes_to_an_uninterrupted_runs_results(task, data_dir, tmp_path, monkeypatch, capsys):
    make_root, options, module, function, first_output, changed, named = CASES[task]
    root = make_root(data_dir, tmp_path)
    args = ["eval", task, "--root", str(root), *FLOOR]
    full, out = tmp_path / "full", tmp_path / "out"
    assert main([*args, "--out", str(full), *options]) == 0
    expected = json.loads((full / "results.json").read_text())

    runner = importlib.import_module(module)
    real = interrupt_on_call(monkeypatch, runner, function)  # in the second video or sequence
    assert main([*args, "--out", str(out), *options]) == 130
    assert "finished so far are kept in" in capsys.readouterr().err
    record = json.loads((out / ".run.json").read_text())
    assert record["command"] == f"eval {task}" and len(record["finished"]) == 1
    assert (out / first_output).is_file() and not (out / "results.json").exists()
    done = (out / first_output).stat().st_mtime_ns
    monkeypatch.setattr(runner, function, real)

    # a changed configuration is refused, naming what changed, and the folder is left as it was
    assert main([*args, "--out", str(out), *changed, "--resume"]) == 2
    assert f"{out}: holds a run with {named}: cannot resume it" in capsys.readouterr().err
    assert json.loads((out / ".run.json").read_text()) == record

    assert main([*args, "--out", str(out), *options, "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert _without_times(resumed) == _without_times(expected)
    assert resumed["timing"]["kept_from_earlier_run"] == record["finished"]
    assert resumed["timing"]["frames"] == expected["timing"]["frames"]
    assert (out / first_output).stat().st_mtime_ns == done  # kept, not written again
    assert len(json.loads((out / ".run.json").read_text())["finished"]) == 2


def test_an_unrecorded_prediction_is_never_trusted(data_dir, tmp_path, monkeypatch):
    """A sequence's file that the run record does not name (a run killed between writing it and
    recording it, or anyone's file of that name) is tracked again, not scored as it is."""
    root, out = data_dir / "tracking" / "otb", tmp_path / "out"
    args = ["eval", "otb", "--root", str(root), *FLOOR, "--max-frames", "6", "--out", str(out)]
    real = interrupt_on_call(monkeypatch, tracking, "track_sequence")
    assert main(args) == 130
    monkeypatch.setattr(tracking, "track_sequence", real)
    (out / "Soccer.txt").write_text("1,1,1,1\n" * 6)  # not recorded: would score 0
    assert main([*args, "--resume"]) == 0
    assert main(args[:-2] + ["--out", str(tmp_path / "full")]) == 0
    resumed, full = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "full"))
    assert _without_times(resumed) == _without_times(full) and (out / "Soccer.txt").read_text() != "1,1,1,1\n" * 6


def test_resume_refuses_another_commands_run_and_a_folder_without_one(data_dir, tmp_path, capsys):
    """An `eval otb` folder is no `eval vot` run to continue; a used folder without a run record
    (another command's output before run records, one's own files) is refused and left as it was."""
    out = tmp_path / "out"
    otb = ["eval", "otb", "--root", str(data_dir / "tracking" / "otb"), *FLOOR, "--max-frames", "3",
           "--sequences", "Soccer"]
    assert main([*otb, "--out", str(out)]) == 0
    vot = ["eval", "vot", "--root", str(data_dir / "tracking" / "vot2015"), *FLOOR, "--max-frames", "3", "--resume"]
    assert main([*vot, "--out", str(out)]) == 2
    assert f"{out}: holds a run of `eval otb`, not of `eval vot`: cannot resume it" in capsys.readouterr().err
    # without --resume a used folder is refused, naming the command whose run it holds
    assert main([*otb, "--out", str(out)]) == 2
    assert "output folder exists and is not empty: --resume continues the `eval otb` run" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.json").write_text("{}\n")
    assert main([*vot, "--out", str(mine)]) == 2
    assert f"{mine}: holds no `eval vot` run to resume (no .run.json" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["results.json"]


def test_run_timing_sums_the_kept_and_new_items_times(tmp_path):
    """results.json's timing of a resumed propagating run (eval davis|jhmdb|vip): every finished
    item's recorded time summed, the kept ones listed; an item without a time adds nothing."""
    kept = {"a": {"frames": 10, "seconds": 2.0, "feature_seconds": 1.5, "propagation_seconds": 0.25}}
    record = RunRecord(tmp_path, {"command": "eval vip"}, ["a", "old"], kept)
    record.finish("b", {"frames": 30, "seconds": 3.0, "feature_seconds": 2.0, "propagation_seconds": 0.5})
    timing = run_timing(record, "cpu")
    assert {k: timing[k] for k in ("frames", "seconds", "frames_per_second", "feature_seconds",
                                   "propagation_seconds", "device")} == {
        "frames": 40, "seconds": 5.0, "frames_per_second": 8.0, "feature_seconds": 3.5,
        "propagation_seconds": 0.75, "device": "cpu"}
    assert timing["kept_from_earlier_run"] == ["a", "old"] and timing["peak_rss_mib"] > 0
    assert "kept_from_earlier_run" not in run_timing(RunRecord(tmp_path, {"command": "eval vip"}, []), "cpu")



def test_a_run_record_is_strict_json(tmp_path):
    """NaN went into the run record as Python's NaN token, which strict JSON readers refuse: it is
    refused before writing, and the record written before stays as it was."""
    record = RunRecord(tmp_path, {"command": "eval vip", "preset": {"temperature": 0.5}}, [])
    record.finish("a", {"frames": 3, "seconds": 1.0})
    before = (tmp_path / RUN_STAMP).read_text()
    assert json.loads(before)["finished"] == ["a"]
    with pytest.raises(ValueError, match="JSON"):
        record.finish("b", {"frames": 3, "seconds": float("nan")})
    assert (tmp_path / RUN_STAMP).read_text() == before


@pytest.mark.parametrize("rank_file, kept", [(None, False), ({"finished": ["b"]}, True),
                                             ({"finished": ["b"], "year": "2017"}, False)])
def test_the_resume_hint_says_kept_only_when_a_record_names_a_finished_item(tmp_path, capsys, rank_file, kept):
    """Rank 0, left without a peer killed outright after SIGTERM, keeps a record that names no item
    (nothing merged): the hint said "the sequences finished so far are kept" all the same. It reads
    the record as --resume does, a rank's own record of the same run merged in (another run's is not)."""
    stamp = {"command": "eval davis", "year": "2016"}
    RunRecord(tmp_path, stamp, []).write()
    if rank_file is not None:
        (tmp_path / RANK_RECORD.format(1)).write_text(json.dumps({**stamp, **rank_file}))
    with pytest.raises(KeyboardInterrupt), resume_hint(tmp_path, "sequences"):
        raise KeyboardInterrupt
    err = capsys.readouterr().err
    assert ("the sequences finished so far are kept in" in err) == kept
    assert ("none of the sequences was finished; the same command with --resume starts the run again" in err) != kept
    with pytest.raises(KeyboardInterrupt), resume_hint(tmp_path, "sequences", tell=False):  # ranks but 0
        raise KeyboardInterrupt
    (tmp_path / RUN_STAMP).unlink()
    with pytest.raises(KeyboardInterrupt), resume_hint(tmp_path, "sequences"):  # the run had not started
        raise KeyboardInterrupt
    assert capsys.readouterr().err == ""


def test_a_stop_while_an_item_folder_replaces_an_earlier_one_leaves_one_of_them(tmp_path, monkeypatch):
    """A resumed run does an item again whose folder its record did not name: the old folder went
    first, and a Ctrl-C or SIGTERM before the new one was renamed into place left no <item> but a
    complete hidden .<item>.partial. Now the old one is renamed aside and comes back on a stop
    between the two renames; once the new one is in place the old one is deleted."""
    def write(folder: Path) -> int:
        folder.mkdir()
        (folder / "new.png").write_text("new")
        return 1

    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "old.png").write_text("old")
    real_rename = Path.rename

    def stopped_before_the_new_one(self, target):
        if self.name == ".seq.partial":
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", stopped_before_the_new_one)
    with pytest.raises(KeyboardInterrupt):
        write_item_folder(tmp_path, "seq", write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"] and (tmp_path / "seq" / "old.png").is_file()
    monkeypatch.setattr(Path, "rename", real_rename)
    (tmp_path / ".seq.replaced").mkdir()  # a run SIGKILLed between the renames left it: removed too
    assert write_item_folder(tmp_path, "seq", write) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]
    assert [p.name for p in (tmp_path / "seq").iterdir()] == ["new.png"]


def test_a_resume_with_the_other_tracker_names_both(data_dir, tmp_path, capsys):
    """`eval otb --resume --tracker localise` on a dcf run listed all 21 settings of both trackers as
    "(not recorded)" on one side; the trackers are named instead, another setting still one by one."""
    out = tmp_path / "out"
    args = ["eval", "otb", "--root", str(data_dir / "tracking" / "otb"), "--sequences", "Crossing", "--max-frames", "3",
            "--out", str(out), "--resume", *FLOOR]
    assert main([*args, "--tracker", "dcf"]) == 0
    capsys.readouterr()
    refused = f"{out}: holds a run with %s: cannot resume it; choose a new --out or drop --resume\n"
    assert main([*args, "--tracker", "localise"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(refused % "another tracker (dcf -> localise)") and "not recorded" not in err
    assert main([*args, "--tracker", "dcf", "--set", "lam=0.001"]) == 2
    assert capsys.readouterr().err.endswith(refused % "other settings (lam 0.0001 -> 0.001)")
