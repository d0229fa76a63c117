"""scripts/preset_walk.py (docs/uvc.md, "From uvc to crw, one knob at a time"): from one preset to
another one group of knobs at a time, each step scored through `run_davis`, resumable."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from vidcorr.presets import PRESETS, customised_preset, preset_knobs

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("preset_walk", ROOT / "scripts" / "preset_walk.py")
preset_walk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(preset_walk)


def _flat(preset) -> dict:
    """Every knob of a preset, topk's beside the others, the name left out."""
    knobs = preset_knobs(preset)
    return {**{k: v for k, v in knobs.items() if k not in ("topk", "name")}, **knobs["topk"]}


@pytest.mark.parametrize("start,end", list(itertools.permutations(sorted(PRESETS), 2)))
def test_each_step_changes_only_its_group_and_the_walk_ends_at_the_named_preset(start, end):
    variants = preset_walk.walk(PRESETS[start], PRESETS[end])
    assert variants[0].preset == PRESETS[start] and variants[-1].preset == PRESETS[end]
    for before, after in itertools.pairwise(variants):
        diff = {k for k, v in _flat(after.preset).items() if v != _flat(before.preset)[k]}
        group = dict(preset_walk.GROUPS)[after.step]
        assert diff and diff <= set(group) and diff == set(after.changed), after.name
        assert {k: b for k, (_, b) in after.changed.items()} == {k: _flat(after.preset)[k] for k in diff}


def test_uvc_to_crw_visits_every_protocol_difference_of_methods_section_5():
    """METHODS.md §5: the two protocols differ in features (L2, temperature), weighting, top-k scope and
    k, window, context, the first context, label downsampling, output resizing and min-max, input size,
    layer; they agree on window_first and on not min-maxing stored labels."""
    steps = [v.step for v in preset_walk.walk(PRESETS["uvc"], PRESETS["crw"])[1:]]
    assert steps == ["L2 + temperature", "top-k then softmax", "joint top-k", "local window", "context length",
                     "initial context", "label downsampling", "output resize + min-max", "input size rule",
                     "feature layer"]


def test_walk_scores_every_variant_and_resumes_without_propagating_again(short_clip, tmp_path, monkeypatch):
    out = tmp_path / "walk"
    args = ["--root", str(short_clip), "--out", str(out), "--size", "40", "--threads", "1"]
    assert preset_walk.main(args) == 0
    walk = json.loads((out / "walk.json").read_text())
    rows = walk["variants"]
    assert len(rows) == 11 and walk["sequences"] == ["car-shadow"]
    assert rows[0]["preset_knobs"] == preset_knobs(customised_preset("uvc", size=40))
    assert rows[-1]["preset_knobs"] == preset_knobs(customised_preset("crw", size=40))
    for previous, r in itertools.pairwise(rows):
        results = json.loads((out / r["variant"] / "results.json").read_text())
        assert r["J&F"] == results["J&F-Mean"] == pytest.approx((r["J"] + r["F"]) / 2)
        assert r["delta_J&F"] == pytest.approx(r["J&F"] - previous["J&F"])
    assert rows[0]["delta_J&F"] is None and 0 < rows[-1]["J&F"] <= 1
    # a second run reads every variant back: nothing is propagated again, the same walk is written
    monkeypatch.setattr(preset_walk, "run_davis", lambda *a, **k: pytest.fail("propagated again"))
    (out / "walk.json").unlink()
    assert preset_walk.main(args) == 0
    assert json.loads((out / "walk.json").read_text())["variants"] == rows
    assert len((out / "walk.md").read_text().splitlines()) == 2 + len(rows)


def test_walk_refuses_a_missing_root_and_an_empty_walk_writing_nothing(tmp_path, capsys):
    out = tmp_path / "walk"
    assert preset_walk.main(["--root", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err and not out.exists()
    assert preset_walk.main(["--root", str(tmp_path), "--out", str(out), "--from", "crw", "--to", "crw"]) == 2
    assert "nothing to walk" in capsys.readouterr().err and not out.exists()


def test_a_partial_walk_scores_only_its_first_steps_and_does_not_call_its_end_the_named_preset(short_clip, tmp_path):
    out = tmp_path / "walk"
    assert preset_walk.main(["--root", str(short_clip), "--out", str(out), "--size", "40", "--steps", "1"]) == 0
    walk = json.loads((out / "walk.json").read_text())
    assert walk["steps"] == 1 and [r["step"] for r in walk["variants"]] == [None, "L2 + temperature"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00-uvc", "01-L2-temperature"]
    last = (out / "walk.md").read_text().splitlines()[-1]
    assert "L2 + temperature" in last and "(= `" not in last  # step 1 is not crw
