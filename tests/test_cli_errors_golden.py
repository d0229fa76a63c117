"""The command line's bad-input paths (`vidcorr.cli.common`, `vidcorr.cli.score_cmd`): each refusal
names what was given and the file or option at fault, exits 2, and writes nothing; the advice a
`score` error adds appears only where it fits. Rules hand-made mutants of those modules broke
without a failing test."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
from tracking_helpers import blank_otb_sequence

import vidcorr.cli
import vidcorr.encoders
from vidcorr.cli import build_parser
from vidcorr.cli.common import changed_knobs, load_model, preset_label, warn_if_coarse_grid
from vidcorr.defaults import BEST_FLOOR
from vidcorr.errors import VidcorrError
from vidcorr.presets import customised_preset


@pytest.fixture
def score(monkeypatch):
    """`vidcorr.cli.main` with only the score command registered."""
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.score_cmd"])
    return vidcorr.cli.main


def _otb(tmp_path: Path) -> tuple[Path, Path]:
    """An OTB root with Walk (3 blank 40 x 30 frames, box 5,5,10,10 1-based) and an empty results folder."""
    root, results = tmp_path / "otb", tmp_path / "results"
    blank_otb_sequence(root, "Walk", 3, (40, 30), "5,5,10,10\n" * 3)
    results.mkdir()
    return root, results


@pytest.mark.parametrize("flags, said", [
    (["--size", "0"], "argument --size: expected a positive integer, got 0"),
    (["--context", "-2"], "argument --context: expected an integer >= 0, got -2"),
    (["--temperature", "-0.5"], "argument --temperature: expected a positive number, got -0.5"),
])
def test_a_bad_number_is_named_with_the_value_given(flags: list[str], said: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["propagate", "v.mp4", "--mask", "m.png", "--out", "o", *flags])
    assert exit_info.value.code == 2 and said in capsys.readouterr().err


def test_a_box_starting_with_a_negative_fraction_reaches_its_parser() -> None:
    """"--box -.5,-.5,10,10" (partly left of and above the frame) is a value, not an unknown option."""
    args = build_parser().parse_args(["propagate", "v.mp4", "--box", "-.5,-.5,10,10", "--out", "o"])
    assert tuple(args.box) == (-0.5, -0.5, 10.0, 10.0)


def test_an_empty_sequence_list_is_refused_before_scoring(score, tmp_path: Path, capsys) -> None:
    root, results = _otb(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        score(["score", "otb", "--root", str(root), "--results", str(results), "--sequences", " , "])
    assert exit_info.value.code == 2 and "expected a comma-separated list" in capsys.readouterr().err
    assert list(results.iterdir()) == []


def test_score_max_frames_below_2_exits_2_naming_the_option(score, tmp_path: Path, capsys) -> None:
    root, results = _otb(tmp_path)
    (results / "Walk.txt").write_text("5,5,10,10\n")
    assert score(["score", "otb", "--root", str(root), "--results", str(results), "--max-frames", "1"]) == 2
    assert "--max-frames must be at least 2, got 1" in capsys.readouterr().err
    assert [p.name for p in results.iterdir()] == ["Walk.txt"]


def _record(results: Path, record: dict | str) -> None:
    (results / "results.json").write_text(record if isinstance(record, str) else json.dumps(record))


def test_score_hint_names_another_benchmarks_command_only_for_a_missing_prediction(score, tmp_path: Path,
                                                                                    capsys) -> None:
    """The "holds `vidcorr eval X` results: score them with `vidcorr score X`" advice is for a
    prediction missing from another benchmark's eval folder. Not for: this benchmark's own folder, a
    prediction that exists but is malformed, a path outside --results (the root), or an unreadable
    results.json; each still exits 2 naming its file, and writes no score.json."""
    root, results = _otb(tmp_path)
    argv = ["score", "otb", "--root", str(root), "--results", str(results)]
    _record(results, {"benchmark": "vot"})
    assert score(argv) == 2
    err = capsys.readouterr().err
    assert f"{results / 'Walk.txt'}: results file not found" in err and "`vidcorr score vot`" in err
    _record(results, {"protocol": {"benchmark": "DAVIS"}})  # the other tasks record it in "protocol"
    assert score(argv) == 2 and "`vidcorr score davis`" in capsys.readouterr().err
    _record(results, {"benchmark": "otb"})  # otb's own folder: the file is just missing
    assert score(argv) == 2 and "vidcorr score" not in capsys.readouterr().err
    _record(results, "{not json")  # unreadable: no record, no advice, no traceback
    assert score(argv) == 2 and "vidcorr score" not in capsys.readouterr().err
    _record(results, {"benchmark": "vot"})
    (results / "Walk.txt").write_text("5,5,10\n" * 3)  # present but malformed: its line is the problem
    assert score(argv) == 2
    err = capsys.readouterr().err
    assert "Walk.txt: line 1: expected 4 values, got 3" in err and "vidcorr score" not in err
    missing_root = tmp_path / "nowhere"
    assert score(["score", "otb", "--root", str(missing_root), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert str(missing_root) in err and "vidcorr score" not in err
    assert sorted(p.name for p in results.iterdir()) == ["Walk.txt", "results.json"]


def test_score_writes_score_json_beside_the_predictions_by_default(score, tmp_path: Path, capsys) -> None:
    """Not results.json, which an eval folder keeps for what only the run knew."""
    root, results = _otb(tmp_path)
    (results / "Walk.txt").write_text("5,5,10,10\n" * 3)
    _record(results, {"benchmark": "otb", "tracker": "dcf"})
    assert score(["score", "otb", "--root", str(root), "--results", str(results)]) == 0
    assert json.loads((results / "results.json").read_text()) == {"benchmark": "otb", "tracker": "dcf"}
    assert json.loads((results / "score.json").read_text())["success_auc"] == pytest.approx(20 / 21)
    assert (results / "score.success_plot.png").is_file()


def test_changed_knobs_print_numbers_as_given() -> None:
    """Floats in %g (12.0 -> "12", 0.1 -> "0.1"), --no-window-first for False, none for unset knobs."""
    args = argparse.Namespace(size=240, topk=None, temperature=0.1, radius=12.0, context=None, window_first=False)
    assert changed_knobs(args) == ["--size 240", "--temperature 0.1", "--radius 12", "--no-window-first"]
    assert preset_label("crw", args) == "crw (--size 240 --temperature 0.1 --radius 12 --no-window-first)"
    bare = argparse.Namespace(size=None, topk=None, temperature=None, radius=None, context=None, window_first=None)
    assert preset_label("stt", bare) == "stt"


def test_the_coarse_grid_warning_names_the_size_that_gives_8_cells(caplog) -> None:
    """Input 56 x 120 (h x w) on a 7 x 14 grid: 56 / 7 = 8 px per cell on the short side, so 8 cells
    need --size 64. Input 57 x 57 on 7 x 7: 8.14 px per cell, 65.1 -> 66 (rounded up: 65 gives 7.98
    cells). A grid of 8 cells on the short side is enough: no warning."""
    with caplog.at_level(logging.WARNING):
        warn_if_coarse_grid("clip.mp4", (7, 14), (56, 120))
        warn_if_coarse_grid("clip.mp4", (7, 7), (57, 57))
        warn_if_coarse_grid("clip.mp4", (8, 30), (64, 240))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "only 14x7 cells (the input 120x56)" in messages[0] and "--size 64 or more" in messages[0]
    assert "--size 66 or more gives at least 8 cells" in messages[1]


def test_an_unusable_out_is_refused_before_scoring(score, tmp_path: Path, capsys) -> None:
    """--out naming a folder: exit 2 naming it, before any scoring (no table printed, nothing written);
    the "--out FILE writes the scores elsewhere" advice only when the default RESULTS/score.json is
    the problem, not for an --out the user gave."""
    root, results = _otb(tmp_path)
    (results / "Walk.txt").write_text("5,5,10,10\n" * 3)
    argv = ["score", "otb", "--root", str(root), "--results", str(results)]
    taken = tmp_path / "taken"
    taken.mkdir()
    assert score([*argv, "--out", str(taken)]) == 2
    printed = capsys.readouterr()
    assert f"{taken}: is a folder; expected a file name" in printed.err and "--out FILE" not in printed.err
    assert printed.out == "" and list(taken.iterdir()) == []
    (results / "score.json").mkdir()
    assert score(argv) == 2
    printed = capsys.readouterr()
    assert "score.json: is a folder; expected a file name; --out FILE writes the scores elsewhere" in printed.err
    assert printed.out == ""


def test_score_hint_reads_the_record_above_a_predictions_folder(score, tmp_path: Path, capsys) -> None:
    """`eval jhmdb` keeps its predictions in OUT/predictions and its results.json in OUT: a `score
    otb --results OUT/predictions` names `score jhmdb` from the record one folder up."""
    root, _ = _otb(tmp_path)
    predictions = tmp_path / "jhmdb_run" / "predictions"
    predictions.mkdir(parents=True)
    _record(predictions.parent, {"protocol": {"benchmark": "JHMDB"}})
    assert score(["score", "otb", "--root", str(root), "--results", str(predictions)]) == 2
    assert "score them with `vidcorr score jhmdb`" in capsys.readouterr().err


def test_missing_default_weights_fall_back_to_the_floor_only_where_asked(monkeypatch, tmp_path: Path) -> None:
    """With no --weights/--features/--encoder and no shipped weights, the demo (fallback_to_floor)
    runs on `BEST_FLOOR` and says why; every other command stops, naming the missing file."""
    missing = tmp_path / "none.safetensors"
    monkeypatch.setattr(vidcorr.encoders, "DEFAULT_WEIGHTS", missing)
    args = argparse.Namespace(encoder=None, weights=None, features=None)
    _, info = load_model(args, customised_preset("crw"), fallback_to_floor=True)
    assert info["features"] == BEST_FLOOR and not info["trained"] and str(missing) in info["note"]
    with pytest.raises(VidcorrError, match=f"no trained weights at {missing}"):
        load_model(args, customised_preset("crw"))
