"""`vidcorr score davis` end to end on a tiny DAVIS tree built from real DAVIS-2016 masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vidcorr.cli
import vidcorr.io.atomic as atomic
from vidcorr.io.masks import read_mask, write_indexed_png
from vidcorr.metrics.davis import GLOBAL_KEYS
from vidcorr.viz import PALETTE

SEQUENCES = ["car-shadow", "blackswan"]
N_FRAMES = 6


@pytest.fixture
def cli(monkeypatch):
    """`vidcorr.cli.main` with only the score command registered (other commands may not exist yet)."""
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.score_cmd"])
    return vidcorr.cli.main


@pytest.fixture
def tree(tmp_path, davis2016_root):
    """DAVIS root with the first N_FRAMES 0/255 annotations of SEQUENCES, and an empty results folder."""
    root = tmp_path / "DAVIS"
    for seq in SEQUENCES:
        dst = root / "Annotations" / "480p" / seq
        dst.mkdir(parents=True)
        for path in sorted((davis2016_root / "Annotations" / "480p" / seq).glob("*.png"))[:N_FRAMES]:
            shutil.copy(path, dst / path.name)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("\n".join(SEQUENCES) + "\n")
    return root, tmp_path / "results"


def _write_predictions(root, results, shift=0):
    """Palette predictions = GT ids rolled by `shift` px, for the scored frames 1..T-2 only."""
    for seq in SEQUENCES:
        for path in sorted((root / "Annotations" / "480p" / seq).glob("*.png"))[1:-1]:
            write_indexed_png(results / seq / path.name, np.roll(read_mask(path), shift, axis=1))


def test_perfect_predictions_score_one(cli, tree, capsys):
    root, results = tree
    _write_predictions(root, results)
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "car-shadow" in out and "blackswan" in out and "J&F-Mean" in out
    data = json.loads((results / "score.json").read_text())
    assert all(data[k] == (0.0 if k.endswith("Decay") else 1.0) for k in GLOBAL_KEYS)
    assert list(data["per_object"]) == ["car-shadow_1", "blackswan_1"]
    assert set(data["per_object"]["blackswan_1"]) == set(GLOBAL_KEYS)
    assert data["per_sequence"]["car-shadow"] == {"J&F-Mean": 1.0, "J-Mean": 1.0, "F-Mean": 1.0, "n_objects": 1}
    assert data["protocol"]["task"] == "semi-supervised" and data["protocol"]["year"] == "2016"
    plot = np.asarray(Image.open(results / "score.j_per_frame.png").convert("RGB"))
    # both objects' lines lie on J = 1, the plot area's top row (y = 28): the second covers the first
    assert set(np.nonzero((plot[:, 56:520] == PALETTE[1]).all(axis=2))[0]) == {28}
    assert (plot[:, 520:] == PALETTE[0]).all(axis=2).any()  # the first one's legend entry


def test_shifted_predictions_subset_and_out(cli, tree, tmp_path):
    root, results = tree
    _write_predictions(root, results, shift=12)
    out = tmp_path / "scores" / "shifted.json"
    argv = ["score", "davis", "--root", str(root), "--results", str(results), "--sequences", "blackswan",
            "--year", "2016", "--split", "val", "--out", str(out)]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    assert list(data["per_sequence"]) == ["blackswan"]
    assert 0.3 < data["J-Mean"] < 1.0 and data["F-Mean"] < 1.0  # 12 px is beyond F's 8 px tolerance
    assert data["J&F-Mean"] == (data["J-Mean"] + data["F-Mean"]) / 2
    assert not (results / "score.json").exists()
    assert (out.parent / "shifted.j_per_frame.png").is_file()


def test_scoring_an_eval_folder_keeps_its_results_and_plot(cli, tree):
    """`eval davis` writes results.json (model, timing) and j_per_frame.png into the folder that
    `score davis --results` reads: scoring it again must not replace them."""
    root, results = tree
    _write_predictions(root, results)
    (results / "results.json").write_text('{"model": "from eval"}')
    (results / "j_per_frame.png").write_bytes(b"eval's plot")
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 0
    assert json.loads((results / "results.json").read_text()) == {"model": "from eval"}
    assert (results / "j_per_frame.png").read_bytes() == b"eval's plot"
    assert json.loads((results / "score.json").read_text())["J&F-Mean"] == 1.0


def test_out_naming_an_eval_runs_results_json_is_refused(cli, tree, capsys):
    """`--out RESULTS/results.json` replaced eval's record of the run (model, preset, timing) with the
    scores, which the default name score.json exists to avoid."""
    root, results = tree
    _write_predictions(root, results)
    (results / "results.json").write_text('{"model": "from eval", "timing": {}}')
    (results / "j_per_frame.png").write_bytes(b"eval's plot")
    out = results / "results.json"
    assert cli(["score", "davis", "--root", str(root), "--results", str(results), "--out", str(out)]) == 2
    assert f"{out}: holds the results of an `eval` run (its model, preset and timing)" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"model": "from eval", "timing": {}}
    assert (results / "j_per_frame.png").read_bytes() == b"eval's plot"
    out.write_text('{"J&F-Mean": 0.5}')  # an earlier score's file: replaced, as any --out is
    assert cli(["score", "davis", "--root", str(root), "--results", str(results), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["J&F-Mean"] == 1.0


def test_missing_results_folder_exits_2_naming_it(cli, tree, capsys):
    root, results = tree
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    assert f"{results}: results folder not found" in capsys.readouterr().err


def test_missing_prediction_file_is_named(cli, tree, capsys):
    root, results = tree
    _write_predictions(root, results)
    (results / "blackswan" / "00003.png").unlink()
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "blackswan/00003.png: prediction not found (1 of the 4 scored frames" in err
    assert not (results / "score.json").exists() and not (results / "score.j_per_frame.png").exists()
    shutil.rmtree(results / "blackswan")  # a run of a subset: the message says how to score it
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    assert ("blackswan: prediction folder of sequence 'blackswan' not found (results of a subset of the split? "
            "--sequences names the ones to score)") in capsys.readouterr().err


def test_a_prefix_run_is_scored_with_max_frames_as_the_sequences_cut_there(cli, tree, capsys):
    """The masks of `propagate --max-frames 4` (frames 0..3) of 6-frame sequences: refused without
    --max-frames, naming it; with it scored as sequences of 4 frames, frames 1..2 (the protocol's 1..T-2):
    frame 1 the ground truth (J = F = 1), frame 2 empty (J = F = 0), so every mean is 0.5."""
    root, results = tree
    for seq in SEQUENCES:
        gt = sorted((root / "Annotations" / "480p" / seq).glob("*.png"))
        for t, path in enumerate(gt[:4]):
            write_indexed_png(results / seq / path.name, read_mask(path) if t != 2 else np.zeros_like(read_mask(path)))
    argv = ["score", "davis", "--root", str(root), "--results", str(results)]
    assert cli(argv) == 2
    assert ("car-shadow/00004.png: prediction not found (1 of the 4 scored frames of 'car-shadow' are missing; the "
            "first and last frame are not needed); a `propagate --max-frames 4` run? score its first 4 frames with "
            "--max-frames 4\n") in capsys.readouterr().err
    assert cli([*argv, "--max-frames", "6"]) == 2
    assert "are missing; the first and last frame are not needed); score them with --max-frames 4" in \
        capsys.readouterr().err
    # 5 scores frames 1..3 only, which the prefix has: it passed, scoring frame 3 (the end of the run)
    # as a middle frame under "first 5 frames"
    assert cli([*argv, "--max-frames", "5"]) == 2
    assert ("car-shadow/00004.png: prediction not found: --max-frames 5 asks for the first 5 frames of "
            "'car-shadow', and the results hold 4") in capsys.readouterr().err
    assert cli([*argv, "--max-frames", "2"]) == 2
    assert "--max-frames must be at least 3" in capsys.readouterr().err
    assert not (results / "score.json").exists()

    assert cli([*argv, "--max-frames", "4"]) == 0
    assert "global over 2 object(s) in 2 sequence(s), first 4 frames of each:" in capsys.readouterr().out
    data = json.loads((results / "score.json").read_text())
    assert data["max_frames"] == 4 and data["J-Mean"] == data["F-Mean"] == data["J&F-Mean"] == 0.5
    assert data["per_object"]["blackswan_1"]["J-Recall"] == 0.5


@pytest.mark.parametrize(("record", "scored", "hint"), [
    ({"benchmark": "otb", "protocol_name": "ope"}, "results", "score otb"),
    ({"benchmark": "vot", "protocol_name": "vot-baseline"}, "results", "score vot"),
    ({"protocol": {"benchmark": "JHMDB"}}, "results/predictions", "score jhmdb"),  # eval jhmdb's own folder
    ({"protocol": {"benchmark": "VIP"}}, "results", "score vip"),
    ({"protocol": {"benchmark": "VIPSeg snippet (VIP protocol, smoke test)"}}, "results", "score vip"),  # vipseg layout
    ({"protocol": {"benchmark": "DAVIS"}}, "results", None),  # the task's own: "not found" as it is
    (None, "results", None),  # no record: nothing to say
])
def test_another_benchmarks_results_folder_names_its_score_command(cli, tree, tmp_path, capsys, record, scored, hint):
    """`score davis` on an `eval otb` folder (or any task on another's) answered only "prediction
    folder of sequence 'blackswan' not found"; the folder's results.json says which `eval` wrote it."""
    root, results = tree
    folder = tmp_path / scored
    folder.mkdir(parents=True)
    if record is not None:
        (results / "results.json").write_text(json.dumps(record))
    assert cli(["score", "davis", "--root", str(root), "--results", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "prediction folder of sequence 'car-shadow' not found" in err
    if hint is None:
        assert "holds `vidcorr eval" not in err
    else:
        assert f"{folder} holds `vidcorr eval {hint.split()[1]}` results (by its results.json): score them with " \
               f"`vidcorr {hint}`" in err
    assert not (folder / "score.json").exists()


def test_prediction_id_above_k_is_named(cli, tree, capsys):
    root, results = tree
    _write_predictions(root, results)
    bad = results / "car-shadow" / "00002.png"
    write_indexed_png(bad, np.full((480, 854), 255, np.uint8))
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    assert f"{bad}: holds object id 255 but the first annotation" in capsys.readouterr().err


def test_prediction_size_mismatch_is_named(cli, tree, capsys):
    root, results = tree
    _write_predictions(root, results)
    write_indexed_png(results / "car-shadow" / "00001.png", np.zeros((240, 427), np.uint8))
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    assert "00001.png: mask is 427x240 but the annotations are 854x480" in capsys.readouterr().err


def test_an_unwritable_results_folder_points_to_out(cli, tree, capsys, monkeypatch, tmp_path):
    """score.json goes into RESULTS by default: a read-only one is refused before scoring, with the
    way out (the check runs as root too, so os.access is what is faked here)."""
    root, results = tree
    _write_predictions(root, results)
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: Path(path) != results)
    assert cli(["score", "davis", "--root", str(root), "--results", str(results)]) == 2
    assert (f"{results / 'score.json'}: cannot be created: folder {results} is not writable; --out FILE writes "
            "the scores elsewhere") in capsys.readouterr().err
    assert cli(["score", "davis", "--root", str(root), "--results", str(results),
                "--out", str(tmp_path / "s.json")]) == 0
