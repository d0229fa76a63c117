"""What the commands report: the model they ran, recipe errors in the recipe's own terms, and the
package's public names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vidcorr
from vidcorr import api
from vidcorr.cli import build_parser, main
from vidcorr.cli.common import model_label
from vidcorr.cli.eval_runs import variant_label
from vidcorr.cli.score_cmd import _first_frame_note


@pytest.fixture(scope="module")
def factory(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text("from vidcorr.models import build_encoder\n\n\ndef build():\n"
                    "    return build_encoder('lab-pixels')\n")
    return f"{path}:build"


def test_model_label_names_each_kind_of_model() -> None:
    assert model_label({"encoder": "my_models.py:build", "trained": None}) == "your encoder my_models.py:build"
    assert model_label({"weights": "w.safetensors", "trained": True}) == "trained weights w.safetensors"
    floor = {"features": "lab-pixels", "trained": False}
    assert model_label(floor) == "lab-pixels (untrained floor)"
    assert model_label(floor, loud=True) == "UNTRAINED FLOOR 'lab-pixels' (chosen with --features)"


@pytest.mark.parametrize("command", ["propagate", "match", "eval davis", "demo"])
def test_every_command_names_an_encoder_of_ones_own(command: str, factory: str, short_clip: Path,
                                                    tmp_path: Path, capsys) -> None:
    """propagate and match said "with None (untrained floor)" of an --encoder."""
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = ["--out", str(tmp_path / "out"), "--encoder", factory, "--size", "96"]
    args = {"propagate": ["propagate", str(frames), "--mask", str(mask), "--no-video"],
            "match": ["match", str(frames), "--frames", "0,5"],
            "eval davis": ["eval", "davis", "--root", str(short_clip)],
            "demo": ["demo"]}[command]
    assert main([*args, *out]) == 0
    text = capsys.readouterr().out
    assert f"your encoder {factory}" in text and "None" not in text, text


def test_cycletime_recipe_error_names_the_crop_the_recipe_sets(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "cyc-bad.toml"
    recipe.write_text('extends = "cycletime-cpu"\n[data]\ncrop = 96\nframe = 104\n')
    code = main(["train", "cycletime", "--data", str(tmp_path), "--recipe", str(recipe),
                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"{recipe}: invalid CycleTime recipe: [data] crop must be" in err, err
    assert "frame_size" not in err and not (tmp_path / "run").exists()


def test_package_all_is_the_lazily_loaded_api() -> None:
    documented = set(re.findall(r"``vidcorr\.(\w+)``", vidcorr.__doc__))
    assert set(vidcorr.__all__) == documented and len(vidcorr.__all__) == len(documented)
    star: dict = {}
    exec("from vidcorr import *", star)
    assert {name for name in star if not name.startswith("__")} == set(vidcorr.__all__)
    for name in vidcorr.__all__:
        assert star[name] is getattr(vidcorr, name) is getattr(api, name) and callable(star[name])
    assert set(vidcorr.__all__) <= set(dir(vidcorr))
    with pytest.raises(AttributeError):  # public in vidcorr.api, not exported from the package
        vidcorr.resolve_encoder


@pytest.mark.parametrize("command", ["eval davis", "eval jhmdb"])  # eval vip prints through jhmdb's code
def test_eval_summary_names_the_knobs_the_command_line_changed(command: str, short_clip: Path, data_dir: Path,
                                                               tmp_path: Path, capsys) -> None:
    """eval davis, jhmdb and vip printed "preset: crw" for a run at --size 96 with --topk 3, a number
    that reads like the preset's own protocol (propagate, match and demo named the knobs)."""
    root = {"eval davis": short_clip, "eval jhmdb": data_dir / "jhmdb"}[command]
    knobs = ["--size", "64", "--topk", "3", "--no-window-first"]
    assert main([*command.split(), "--root", str(root), "--out", str(tmp_path / "out"),
                 "--features", "lab-pixels", *knobs]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("preset: "))
    assert "--size 64 --topk 3 --no-window-first" in line, line
    if command == "eval jhmdb":  # the side once: it read "square 64; --size 64"
        assert line.startswith("preset: crw (JHMDB variant, square; --size 64 --topk 3 --no-window-first)   "), line
        assert " 64" not in line.replace("--size 64", ""), line


def test_a_square_variant_without_size_names_its_own_side() -> None:
    args = build_parser().parse_args(["eval", "vip", "--root", "r", "--out", "o", "--topk", "3"])
    assert variant_label("stt", "VIP", 560, args) == "stt (VIP variant, square 560; --topk 3)"


def test_score_jhmdb_says_when_its_first_frame_rule_is_not_the_eval_runs(data_dir: Path, tmp_path: Path,
                                                                         capsys) -> None:
    """`score jhmdb` of an `eval jhmdb --include-first-frame` run without the flag printed other
    numbers than eval's without a word (and so did `score vip` of `eval vip --skip-first-frame`)."""
    root, out = data_dir / "jhmdb", tmp_path / "out"
    assert main(["eval", "jhmdb", "--root", str(root), "--out", str(out), "--features", "lab-pixels",
                 "--size", "32", "--include-first-frame"]) == 0
    capsys.readouterr()
    score = ["score", "jhmdb", "--root", str(root), "--results", str(out / "predictions"),
             "--out", str(tmp_path / "s.json")]
    assert main(score) == 0
    assert (f"note: the eval run in {out} was scored with --include-first-frame, these scores without it: "
            "add --include-first-frame for its numbers") in capsys.readouterr().out
    assert main([*score, "--include-first-frame"]) == 0
    assert "note:" not in capsys.readouterr().out


@pytest.mark.parametrize("recorded, skip, expected", [
    (True, True, ""), (False, False, ""), (None, False, ""),
    (True, False, "was scored with --skip-first-frame, these scores without it: add --skip-first-frame"),
    (False, True, "was scored without --skip-first-frame, these scores with it: drop it")])
def test_first_frame_note_of_score_vip(recorded: bool | None, skip: bool, expected: str, tmp_path: Path) -> None:
    record = {"model": {}} if recorded is None else {"model": {}, "skip_first_frame": recorded}
    (tmp_path / "results.json").write_text(json.dumps(record))
    note = _first_frame_note(tmp_path, skip, "--skip-first-frame", flag_skips=True)
    assert (expected in note and note.startswith(f"\nnote: the eval run in {tmp_path} ")) if expected else note == ""
