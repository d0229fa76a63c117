"""`vidcorr score otb|vot` end to end: the same scores from saved <seq>.txt files, no model, as
`eval` gave for them; and its errors, naming the file and the line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tracking_helpers import N_FRAMES

import vidcorr.cli
import vidcorr.cli.eval_cmd
from vidcorr.metrics.tracking import PRECISION_KEY


SHARED_KEYS = ("benchmark", "protocol_name", "protocol", "success_auc", PRECISION_KEY, "average_overlap",
               "success_curve", "precision_curve", "overlap_thresholds", "error_thresholds_px")
RUN_ONLY = ("seconds", "frames_per_second")  # per-sequence timing: only a run has it


@pytest.fixture
def eval_and_score(monkeypatch):
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd", "vidcorr.cli.score_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_tracking"])
    return vidcorr.cli.main


def test_vot_baseline_is_vot_only_and_not_scored_as_ope(eval_and_score, vot_root, otb_root, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it
        eval_and_score(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels",
                        "--protocol", "vot-baseline"])
    assert exit_info.value.code == 2 and not out.exists()
    assert "unrecognized arguments: --protocol" in capsys.readouterr().err
    assert eval_and_score(["eval", "vot", "--root", str(vot_root), "--out", str(out), "--features", "lab-pixels",
                           "--protocol", "vot-baseline", "--max-frames", "12"]) == 0
    capsys.readouterr()
    assert eval_and_score(["score", "vot", "--root", str(vot_root), "--results", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds VOT baseline trajectories" in err and "score them with --protocol vot-baseline" in err
    assert not (out / "score.json").exists()
    with pytest.raises(SystemExit):  # OTB has no baseline protocol to score either
        eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(out), "--protocol", "vot-baseline"])
    capsys.readouterr()
    # `score otb` names the command that scores them: it has no --protocol option to suggest
    assert eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds VOT baseline trajectories" in err and "score them with `vidcorr score vot" in err
    assert "--protocol vot-baseline" in err and not (out / "score.json").exists()


def test_ope_boxes_scored_as_a_baseline_name_the_protocol_that_scores_them(eval_and_score, vot_root, tmp_path,
                                                                           capsys):
    """`score vot --protocol vot-baseline` on a folder of OPE boxes (`eval vot` without --protocol)
    said only "ball1_001.txt: trajectory not found", where the reverse mix-up names the option."""
    ours = tmp_path / "ope"
    ours.mkdir()
    shutil.copy(vot_root / "ball1" / "groundtruth.txt", ours / "ball1.txt")  # x,y,w,h per frame, as OPE's
    assert eval_and_score(["score", "vot", "--root", str(vot_root), "--results", str(ours),
                           "--protocol", "vot-baseline"]) == 2
    err = capsys.readouterr().err
    assert f"{ours}: holds one-pass (OPE) boxes (ball1.txt" in err and "without --protocol vot-baseline" in err, err
    assert not (ours / "score.json").exists()
    assert eval_and_score(["score", "vot", "--root", str(vot_root), "--results", str(ours)]) == 0  # as OPE, fine


def test_score_of_baseline_trajectories_equals_eval_results(eval_and_score, vot_root, tmp_path, capsys):
    """`score vot --protocol vot-baseline` on eval's trajectory files gives eval's numbers exactly,
    also for an `eval --max-frames` run (scored with the same --max-frames); a trajectory that is
    missing or has a line too few is named."""
    gt_file = vot_root / "ball1" / "groundtruth.txt"
    lines = gt_file.read_text().splitlines()
    lines[8] = "0,0,4,0,4,4,0,4"  # a failure on frame 9: codes, skipped frames and a re-initialisation to score
    gt_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert eval_and_score(["eval", "vot", "--root", str(vot_root), "--out", str(out), "--features", "lab-pixels",
                           "--protocol", "vot-baseline", "--max-frames", "20"]) == 0
    evaluated = json.loads((out / "results.json").read_text())
    assert evaluated["failures"] >= 1
    capsys.readouterr()
    score = ["score", "vot", "--root", str(vot_root), "--results", str(out), "--protocol", "vot-baseline"]
    assert eval_and_score([*score, "--max-frames", "20"]) == 0
    printed = capsys.readouterr().out
    scored = json.loads((out / "score.json").read_text())
    shared = ("benchmark", "protocol_name", "protocol", "burnin", "accuracy", "accuracy_pooled", "robustness",
              "failures", "eao", "eao_interval", "eao_interval_name", "eao_curve", "max_frames")
    assert {k: scored[k] for k in shared} == {k: evaluated[k] for k in shared}
    assert scored["per_sequence"] == {name: {k: v for k, v in seq.items() if k not in RUN_ONLY}
                                      for name, seq in evaluated["per_sequence"].items()}
    for absent in ("tracker", "settings", "model", "timing", "skip_initialize"):
        assert absent not in scored
    assert "failures" in printed and "frames/s" not in printed and "score.eao_curve.png" in printed
    assert not (out / "score.success_plot.png").exists()  # no success curves under this protocol
    assert (out / "score.eao_curve.png").is_file()
    assert eval_and_score([*score, "--max-frames", "20", "--eao-interval", "2,8",
                           "--out", str(tmp_path / "eao.json")]) == 0
    short = json.loads((tmp_path / "eao.json").read_text())
    assert short["eao_interval"] == [2, 8] and short["eao_interval_name"] is None
    assert short["eao"] == pytest.approx(np.mean(evaluated["eao_curve"][2:9]))
    capsys.readouterr()
    assert eval_and_score([*score, "--max-frames", "20", "--eao-interval", "2,500",
                           "--out", str(tmp_path / "cut.json")]) == 0
    end = len(evaluated["eao_curve"]) - 1
    assert f"(the curve ends at {end}) over lengths 2-500" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        eval_and_score([*score, "--eao-interval", "vot2014"])
    assert "unknown EAO interval 'vot2014'" in capsys.readouterr().err
    assert eval_and_score(score) == 2  # all 30 ground-truth frames, 20 trajectory lines
    assert "ball1_001.txt: 20 lines but 30 ground-truth lines in " in capsys.readouterr().err
    (out / "baseline" / "ball1" / "ball1_001.txt").unlink()
    assert eval_and_score([*score, "--max-frames", "20"]) == 2
    assert "ball1_001.txt: trajectory not found" in capsys.readouterr().err


def test_score_max_frames_scores_an_eval_max_frames_run(eval_and_score, otb_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_and_score(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels",
                           "--max-frames", "12"]) == 0
    evaluated = json.loads((out / "results.json").read_text())
    score = ["score", "otb", "--root", str(otb_root), "--results", str(out)]
    assert eval_and_score(score) == 2
    assert (f"Soccer.txt: 12 boxes but {N_FRAMES} ground-truth lines" in (err := capsys.readouterr().err)
            and "line 13 is missing (from `eval --max-frames N`? score them with --max-frames N)" in err)
    assert eval_and_score([*score, "--max-frames", "1"]) == 2
    assert "--max-frames must be at least 2, got 1" in capsys.readouterr().err
    # the cut ground truth was named as the annotation file's length ("8 ground-truth lines in
    # .../groundtruth_rect.txt; line 9 has no ground truth", a file of more lines than that)
    assert eval_and_score([*score, "--max-frames", "8"]) == 2
    assert ("Soccer.txt: 12 boxes but --max-frames 8 scores the first 8 frames of "
            in (err := capsys.readouterr().err) and "score it with --max-frames 12" in err)
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "Soccer.txt").write_text("1,1,10,10\n" * N_FRAMES)
    assert eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(whole), "--max-frames", "12"]) == 2
    assert f"{N_FRAMES} boxes but --max-frames 12 scores the first 12 frames" in (err := capsys.readouterr().err)
    assert "score it without --max-frames" in err
    (whole / "Soccer.txt").write_text("1,1,10,10\n" * (N_FRAMES + 5))  # no --max-frames fits: none is named
    assert eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(whole), "--max-frames", "12"]) == 2
    assert (f"{N_FRAMES + 5} boxes but --max-frames 12 scores the first 12 frames of "
            in (err := capsys.readouterr().err) and f"groundtruth_rect.txt, which has {N_FRAMES} lines" in err)
    assert eval_and_score([*score, "--max-frames", "12"]) == 0
    scored = json.loads((out / "score.json").read_text())
    assert scored["max_frames"] == 12 and scored["per_sequence"]["Soccer"]["frames"] == 12
    assert {k: scored[k] for k in SHARED_KEYS} == {k: evaluated[k] for k in SHARED_KEYS}


def test_score_of_hand_written_trajectories(eval_and_score, vot_root, tmp_path, capsys):
    """Another tracker's trajectories, scored without a run: one that fails on the frame after every
    initialisation has an EAO curve of one value, whose plot over the interval 0,0 divided by zero;
    one that fails before it was initialised crashed (IndexError) instead of naming the line."""
    trajectory = tmp_path / "theirs" / "baseline" / "ball1" / "ball1_001.txt"
    trajectory.parent.mkdir(parents=True)
    trajectory.write_text("1\n2\n0\n0\n0\n" * (N_FRAMES // 5))
    score = ["score", "vot", "--root", str(vot_root), "--results", str(tmp_path / "theirs"),
             "--protocol", "vot-baseline", "--eao-interval", "0,0"]
    assert eval_and_score(score) == 0
    scored = json.loads((tmp_path / "theirs" / "score.json").read_text())
    assert scored["eao_curve"] == [0.0] and scored["eao"] == 0.0 and scored["failures"] == N_FRAMES // 5
    assert (tmp_path / "theirs" / "score.eao_curve.png").is_file()
    capsys.readouterr()
    trajectory.write_text("2\n" + "0\n" * (N_FRAMES - 1))
    assert eval_and_score([*score, "--out", str(tmp_path / "second.json")]) == 2
    assert "ball1_001.txt: line 1: a failure (2) before the first initialisation" in capsys.readouterr().err
    assert not (tmp_path / "second.json").exists()


@pytest.mark.parametrize("benchmark", ["otb", "vot"])
def test_score_of_eval_boxes_equals_eval_results(eval_and_score, benchmark, otb_root, vot_root, tmp_path, capsys):
    """`score` on the <seq>.txt files `eval` wrote gives eval's numbers exactly (not to 2 decimals):
    eval scores the boxes as written, the way score and the OTB toolkit read them."""
    root = otb_root if benchmark == "otb" else vot_root
    out = tmp_path / "out"
    assert eval_and_score(["eval", benchmark, "--root", str(root), "--out", str(out), "--features", "lab-pixels"]) == 0
    evaluated = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert eval_and_score(["score", benchmark, "--root", str(root), "--results", str(out)]) == 0
    printed = capsys.readouterr().out
    scored = json.loads((out / "score.json").read_text())
    assert {k: scored[k] for k in SHARED_KEYS} == {k: evaluated[k] for k in SHARED_KEYS}
    assert scored["per_sequence"] == {name: {k: v for k, v in seq.items() if k not in RUN_ONLY}
                                      for name, seq in evaluated["per_sequence"].items()}
    for absent in ("tracker", "settings", "preset", "model", "timing"):
        assert absent not in scored
    assert scored["results"] == str(out) and scored["max_frames"] is None
    assert f"{evaluated['success_auc']:.4f}" in printed and "frames/s" not in printed
    assert json.loads((out / "results.json").read_text()) == evaluated  # eval's own file is left alone
    with Image.open(out / "score.success_plot.png") as plot:
        assert plot.size == (720, 420)


def _perfect_results(otb_root, results):
    """RESULTS/Soccer.txt = the ground truth itself (same text, so the boxes read back identical)."""
    results.mkdir()
    lines = (otb_root / "Soccer" / "groundtruth_rect.txt").read_text().splitlines()
    (results / "Soccer.txt").write_text("\n".join(lines) + "\n")
    return results / "Soccer.txt", lines


def test_score_nan_prediction_is_a_miss_in_both_curves(eval_and_score, otb_root, tmp_path):
    """A perfect track with two NaN boxes (the first line may be one too), in spaces and tabs: those
    frames miss at every success and every precision threshold; --out names the JSON and the plot."""
    path, lines = _perfect_results(otb_root, tmp_path / "results")
    lines = [line.replace(",", " \t") for line in lines]
    lines[0], lines[5] = "NaN NaN NaN NaN", "1 2 NaN 4"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores" / "mine.json"
    argv = ["score", "otb", "--root", str(otb_root), "--results", str(path.parent), "--sequences", "Soccer",
            "--out", str(out)]
    assert eval_and_score(argv) == 0
    seq = json.loads(out.read_text())["per_sequence"]["Soccer"]
    hits = (N_FRAMES - 2) / N_FRAMES
    assert seq["success_curve"] == pytest.approx([hits] * 20 + [0.0])  # IoU 1 is never > 1 (OTB's strict >)
    assert seq["precision_curve"] == pytest.approx([hits] * 51)
    assert seq["average_overlap"] == pytest.approx(hits)
    assert seq["invalid_gt_frames"] == 0
    assert (out.parent / "mine.success_plot.png").is_file() and not (path.parent / "score.json").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-1], f"Soccer.txt: {N_FRAMES - 1} boxes but {N_FRAMES} ground-truth lines in "),
        (lambda lines: lines + ["1,2,3,4"], f"line {N_FRAMES + 1} has no ground truth"),
        (lambda lines: lines[:6] + ["1,2,3"] + lines[7:], "Soccer.txt: line 7: expected 4 values, got 3"),
        (lambda lines: lines[:6] + ["1,2,lost,4"] + lines[7:], "Soccer.txt: line 7: cannot parse '1,2,lost,4'"),
        (lambda lines: lines[:6] + ["1,2,inf,4"] + lines[7:], "Soccer.txt: line 7: infinite value"),
        (lambda lines: lines[:6] + [""] + lines[7:], "Soccer.txt: line 7: empty line inside the results file"),
        (lambda lines: [], "Soccer.txt: results file is empty"),
        (None, "Soccer.txt: results file not found"),
    ],
)
def test_score_bad_results_file_exits_2_naming_file_and_line(eval_and_score, otb_root, tmp_path, capsys,
                                                             edit, message):
    path, lines = _perfect_results(otb_root, tmp_path / "results")
    if edit is None:
        path.unlink()
    else:
        path.write_text("".join(f"{line}\n" for line in edit(lines)))
    argv = ["score", "otb", "--root", str(otb_root), "--results", str(path.parent)]
    assert eval_and_score(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in path.parent.iterdir()) == ([] if edit is None else ["Soccer.txt"])  # nothing written


def test_score_missing_results_folder_and_unknown_sequence(eval_and_score, otb_root, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(missing)]) == 2
    assert f"{missing}: results folder not found" in capsys.readouterr().err and not missing.exists()
    path, _ = _perfect_results(otb_root, tmp_path / "results")
    argv = ["score", "otb", "--root", str(otb_root), "--results", str(path.parent), "--sequences", "Crossing"]
    assert eval_and_score(argv) == 2
    assert "unknown sequence(s) Crossing" in capsys.readouterr().err


def test_score_of_a_run_on_some_sequences_names_the_sequences_option(eval_and_score, otb_root, tmp_path, capsys):
    """Predictions of Soccer only (an `eval --sequences Soccer` run) under a root of two sequences:
    the error named the missing file and left the user to guess --sequences."""
    shutil.copytree(otb_root / "Soccer", otb_root / "Soccer2")
    path, _ = _perfect_results(otb_root, tmp_path / "results")
    assert eval_and_score(["score", "otb", "--root", str(otb_root), "--results", str(path.parent)]) == 2
    err = capsys.readouterr().err
    assert "Soccer2.txt: results file not found" in err and "score them with --sequences Soccer" in err
    argv = ["score", "otb", "--root", str(otb_root), "--results", str(path.parent), "--sequences", "Soccer"]
    assert eval_and_score(argv) == 0
