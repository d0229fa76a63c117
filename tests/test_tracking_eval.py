"""`vidcorr eval otb` / `eval vot` end to end on reduced copies of real sequences, and their errors.
`score` of the files they write: test_tracking_score.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tracking_helpers import N_FRAMES

import vidcorr.cli
import vidcorr.cli.eval_cmd
from vidcorr.evaluate.tracking import run_tracking
from vidcorr.io.tracking import OTB_ANNOTATED_RANGES, read_otb_boxes, read_vot_polygons
from vidcorr.io.vot_trajectory import VOT_FAILED, read_vot_trajectory
from vidcorr.metrics.tracking import PRECISION_KEY, score_sequence
from vidcorr.metrics.vot import score_supervised
from vidcorr.models import build_encoder
from vidcorr.track import tracker_settings


@pytest.fixture
def cli(monkeypatch):
    """`vidcorr.cli.main` with only `eval otb` / `eval vot` registered (other tasks may not exist yet)."""
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_tracking"])
    return vidcorr.cli.main


def test_eval_otb_end_to_end(cli, otb_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "Soccer" in printed and "success_auc" in printed and "average" in printed
    assert "\x1b[A" not in captured.err  # nested, the per-frame bar is for terminals (inner_bar_options)
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "otb" and results["tracker"] == "localise" and results["protocol_name"] == "ope"
    assert results["model"] == {"features": "lab-pixels", "trained": False} and results["preset"] == "crw"
    assert results["settings"]["search_scale"] == 2.0 and results["settings"]["topk"] == 4
    for key in ("success_auc", PRECISION_KEY, "average_overlap"):
        assert 0.0 <= results[key] <= 1.0
    assert len(results["success_curve"]) == 21 and len(results["precision_curve"]) == 51
    seq = results["per_sequence"]["Soccer"]
    assert seq["frames"] == N_FRAMES and seq["success_auc"] == results["success_auc"]
    assert results["timing"]["frames"] == N_FRAMES
    boxes = read_otb_boxes(out / "Soccer.txt")
    gt = read_otb_boxes(otb_root / "Soccer" / "groundtruth_rect.txt")
    assert boxes.shape == (N_FRAMES, 4)
    np.testing.assert_allclose(boxes[0], gt[0], atol=0.005)  # first box written back unchanged
    with Image.open(out / "success_plot.png") as plot:
        assert plot.size == (720, 420)
    assert sorted(p.name for p in out.iterdir()) == [".run.json", "Soccer.txt", "results.json", "success_plot.png"]


def test_eval_otb_scores_frames_without_ground_truth(cli, otb_root, tmp_path, capsys):
    """A NaN row and an all-zero row (frames without a box) no longer stop the run: they are scored as
    the OTB toolkit does and reported."""
    gt_file = otb_root / "Soccer" / "groundtruth_rect.txt"
    lines = gt_file.read_text().splitlines()
    lines[4], lines[7] = "NaN,NaN,NaN,NaN", "0,0,0,0"
    gt_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = ["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels", "--max-frames", "10"]
    assert cli(args) == 0
    assert "Soccer: 2 frame(s) without a valid ground-truth box" in capsys.readouterr().out
    seq = json.loads((out / "results.json").read_text())["per_sequence"]["Soccer"]
    assert seq["invalid_gt_frames"] == 2 and seq["frames"] == 10
    expected = score_sequence(read_otb_boxes(gt_file)[:10], read_otb_boxes(out / "Soccer.txt"))
    assert seq["success_auc"] == pytest.approx(expected["success_auc"], abs=1e-3)  # boxes written to 2 decimals
    assert seq[PRECISION_KEY] == pytest.approx(expected[PRECISION_KEY], abs=1e-3)


def test_eval_vot_dcf_with_settings(cli, vot_root, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "vot", "--root", str(vot_root), "--out", str(out), "--features", "lab-pixels",
            "--tracker", "dcf", "--set", "input_size=128", "--set", "subcell=false", "--max-frames", "12"]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "vot" and results["tracker"] == "dcf" and results["max_frames"] == 12
    assert results["settings"]["input_size"] == 128 and results["settings"]["subcell"] is False
    assert results["settings"]["lam"] == 1e-4 and results["per_sequence"]["ball1"]["frames"] == 12
    assert read_otb_boxes(out / "ball1.txt").shape == (12, 4)
    assert results["protocol_name"] == "ope"  # the default protocol


def test_eval_vot_baseline_reinitialises_after_a_failure(cli, vot_root, tmp_path, capsys):
    """Frame 13's ground truth is moved into the top-left corner, away from the ball: the prediction
    there overlaps it nowhere, so the tracker fails on frame 13 (index 12), skips 4 frames and is
    re-initialised on frame 18. Scores are those of the trajectory file as written."""
    gt_file = vot_root / "ball1" / "groundtruth.txt"
    lines = gt_file.read_text().splitlines()
    lines[12] = "0,0,4,0,4,4,0,4"
    gt_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = ["eval", "vot", "--root", str(vot_root), "--out", str(out), "--features", "lab-pixels",
            "--protocol", "vot-baseline"]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert "failures" in printed and "protocol: vot-baseline" in printed
    assert "EAO not computed (the curve ends before the interval) over lengths 108-371 (vot2015)" in printed
    trajectory = out / "baseline" / "ball1" / "ball1_001.txt"
    assert sorted(p.name for p in out.iterdir()) == [".run.json", "baseline", "eao_curve.png", "results.json"]
    codes = trajectory.read_text().splitlines()
    assert len(codes) == N_FRAMES and codes[0] == "1"
    assert codes[12:18] == ["2", "0", "0", "0", "0", "1"]
    results = json.loads((out / "results.json").read_text())
    assert results["protocol_name"] == "vot-baseline" and results["eao"] is None  # 30 frames < 108
    assert results["eao_interval"] == [108, 371] and results["eao_interval_name"] == "vot2015"
    assert len(results["eao_curve"]) == 30 - 17  # the longest fragment: the re-initialisation on to the end
    assert results["skip_initialize"] == 5 and results["burnin"] == 10 and results["tracker"] == "localise"
    seq = results["per_sequence"]["ball1"]
    status, boxes = read_vot_trajectory(trajectory)
    expected = score_supervised(status, boxes, read_vot_polygons(gt_file), (320, 180))
    assert {k: seq[k] for k in expected} == expected
    assert seq["failures"] == codes.count("2") == int((status == VOT_FAILED).sum()) >= 1
    assert results["failures"] == seq["failures"] and results["robustness"] == seq["failures"]
    assert results["accuracy"] == seq["accuracy"] > 0.3


RUN_KEYS = ["benchmark", "protocol_name", "protocol", "tracker", "settings", "preset", "model", "max_frames"]


@pytest.mark.parametrize(("benchmark", "protocol", "scores_from"), [
    ("otb", "ope", "success_auc"), ("vot", "vot-baseline", "skip_initialize")])
def test_results_json_reads_run_then_scores_then_timing(data_dir, tmp_path, benchmark, protocol, scores_from):
    """Both sequences of each shared benchmark, 4 frames each: results.json (as returned) opens with
    the run's fields, then the protocol's scores, and ends with ``timing``, the sequences' frames and
    seconds summed, with no ``kept_from_earlier_run`` in a run that kept nothing."""
    root = data_dir / "tracking" / ("otb" if benchmark == "otb" else "vot2015")
    out = tmp_path / "out"
    results = run_tracking(build_encoder("lab-pixels"), root, out, benchmark=benchmark, protocol=protocol,
                           settings=tracker_settings("dcf", input_size=64), max_frames=4, preset="crw")
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    keys = list(results)
    assert keys[:len(RUN_KEYS)] == RUN_KEYS and keys[len(RUN_KEYS)] == scores_from and keys[-1] == "timing"
    assert (results["protocol_name"], results["tracker"], results["max_frames"]) == (protocol, "dcf", 4)
    per_sequence = results["per_sequence"].values()
    assert len(per_sequence) == 2
    seconds = sum(s["seconds"] for s in per_sequence)
    assert results["timing"] == {"frames": 8, "seconds": round(seconds, 3),
                                 "frames_per_second": round(8 / seconds, 3)}


def test_otb_annotated_range_tracks_the_same_as_a_trimmed_copy(cli, otb_root, tmp_path, monkeypatch):
    """A sequence annotated on frames 6-25 of its 30 (as OTB-2015's David on 300-770 of 770) is
    tracked and scored exactly like a copy holding only those frames; a two-target folder
    (groundtruth_rect.1.txt, .2.txt) gives one results file per target, named as the OTB toolkit does."""
    soccer = otb_root / "Soccer"
    frames, lines = sorted((soccer / "img").glob("*.jpg")), (soccer / "groundtruth_rect.txt").read_text().splitlines()
    trimmed = tmp_path / "trimmed" / "Soccer"
    (trimmed / "img").mkdir(parents=True)
    for i, frame in enumerate(frames[5:25]):
        shutil.copy(frame, trimmed / "img" / f"{i + 1:04d}.jpg")
    (trimmed / "groundtruth_rect.txt").write_text("\n".join(lines[5:25]) + "\n")
    (soccer / "groundtruth_rect.txt").write_text("\n".join(lines[5:25]) + "\n")
    monkeypatch.setitem(OTB_ANNOTATED_RANGES, "Soccer", (N_FRAMES, 20, 6))
    runs = {}
    for name, root in (("range", otb_root), ("trimmed", tmp_path / "trimmed")):
        out = tmp_path / f"out-{name}"
        assert cli(["eval", "otb", "--root", str(root), "--out", str(out), "--features", "lab-pixels"]) == 0
        runs[name] = json.loads((out / "results.json").read_text())["per_sequence"]["Soccer"]
        runs[name].pop("seconds"), runs[name].pop("frames_per_second")
    assert runs["range"] == runs["trimmed"] and runs["range"]["frames"] == 20
    assert (tmp_path / "out-range" / "Soccer.txt").read_text() == (tmp_path / "out-trimmed" / "Soccer.txt").read_text()

    (trimmed / "groundtruth_rect.txt").rename(trimmed / "groundtruth_rect.1.txt")
    (trimmed / "groundtruth_rect.2.txt").write_text("\n".join(lines[5:25]) + "\n")
    out = tmp_path / "two-targets"
    assert cli(["eval", "otb", "--root", str(tmp_path / "trimmed"), "--out", str(out), "--features", "lab-pixels"]) == 0
    per_sequence = json.loads((out / "results.json").read_text())["per_sequence"]
    assert list(per_sequence) == ["Soccer.1", "Soccer.2"]
    assert (out / "Soccer.1.txt").read_text() == (out / "Soccer.2.txt").read_text() == (
        tmp_path / "out-range" / "Soccer.txt").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "padding=2"], "--set padding: a setting of the dcf tracker, not of localise (--tracker dcf); "
                                 "localise's: search_scale, "),
        (["--set", "paddin=2"], "--set 'paddin=2': expected NAME=VALUE"),
        (["--tracker", "dcf", "--set", "iterations=2"], "--set iterations: a setting of the localise tracker"),
        (["--set", "topk=many"], "--set topk: expected int"),
        # the value out of range is named (it was a repr of all twelve settings)
        (["--set", "search_scale=-1"], "invalid localisation settings: search_scale must be at least 1, got -1.0"),
        (["--tracker", "dcf", "--set", "lam=0", "--set", "min_scale_factor=6"],
         "invalid DCF settings: lam must be positive, got 0.0; min_scale_factor must be positive and at most "
         "max_scale_factor, got 6.0"),
        # NaN / inf passed the comparisons: the run tracked, then failed with a traceback writing its JSON
        (["--tracker", "dcf", "--set", "scale_step=nan"],
         "invalid DCF settings: scale_step = nan: expected a finite number"),
        (["--set", "search_scale=inf"], "invalid localisation settings: search_scale = inf: expected a finite number"),
        (["--topk", "5"], "--topk is a propagation setting"),
        (["--no-window-first"], "--window-first is a propagation setting"),
        (["--sequences", "Nope"], "unknown sequence"),
        (["--max-frames", "1"], "--max-frames must be at least 2"),
    ],
)
def test_bad_input_fails_cleanly(cli, otb_root, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = cli(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels", *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))  # nothing half-written


def test_bad_annotation_and_existing_output(cli, otb_root, tmp_path, capsys):
    (otb_root / "Soccer" / "groundtruth_rect.txt").write_text("1,2,3,4\n" * (N_FRAMES - 1) + "1,2,3\n")
    out = tmp_path / "out"
    assert cli(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels"]) == 2
    assert f"line {N_FRAMES}: expected 4 values, got 3" in capsys.readouterr().err
    (otb_root / "Soccer" / "groundtruth_rect.txt").write_text("NaN,NaN,NaN,NaN\n" + "1,2,3,4\n" * (N_FRAMES - 1))
    assert cli(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels"]) == 2
    assert "line 1: the first frame needs a box of positive size" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert cli(["eval", "otb", "--root", str(otb_root), "--out", str(out), "--features", "lab-pixels"]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").exists()
