"""What the commands report: the model they ran, recipe errors in the recipe's own terms, and the
package's public names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vidcorr
from vidcorr.cli import main
from vidcorr.cli.common import model_label


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
    from vidcorr import api

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


@pytest.mark.parametrize("command", ["eval davis", "eval jhmdb", "eval vip"])
def test_eval_summary_names_the_knobs_the_command_line_changed(command: str, short_clip: Path, data_dir: Path,
                                                               tmp_path: Path, capsys) -> None:
    """eval davis, jhmdb and vip printed "preset: crw" for a run at --size 96 with --topk 3, a number
    that reads like the preset's own protocol (propagate, match and demo named the knobs)."""
    root = {"eval davis": short_clip, "eval jhmdb": data_dir / "jhmdb",
            "eval vip": data_dir / "vipseg-snippet"}[command]
    knobs = ["--size", "64", "--topk", "3", "--no-window-first"]
    assert main([*command.split(), "--root", str(root), "--out", str(tmp_path / "out"),
                 "--features", "lab-pixels", *knobs]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("preset: "))
    assert "--size 64 --topk 3 --no-window-first" in line, line
