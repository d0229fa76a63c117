"""Shipped recipes and learning-rate schedules."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest

from vidcorr.errors import InputError
from vidcorr.methods import cycletime, moco, stt, uvc
from vidcorr.train import StageConfig, learning_rate, load_recipe, stage_steps
from vidcorr.train.autoencoder import STAGE
from vidcorr.train.checkpoint import Progress, export_meta
from vidcorr.train.config import recipe_from_dict
from vidcorr.train.recipe_files import CONFIG_DIR


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("uvc*.toml")))
def test_uvc_recipes_load_and_build_their_config(name: str) -> None:
    recipe = load_recipe(name)
    stages = ["joint"] if "-finetune" in name else ["warmup", "joint"]  # fine-tunes start from --init
    assert recipe.method == "uvc" and [s.name for s in recipe.stages] == stages
    cfg = uvc.UVCConfig(**{**uvc.RECIPES[recipe.base], **recipe.model})
    assert cfg == uvc.recipe(recipe.base, **recipe.model)
    assert recipe.data.crop % 8 == 0 and recipe.data.frame % 8 == 0
    assert recipe_from_dict(recipe.to_dict(), recipe.name) == recipe  # checkpoint round trip


def test_paper_and_official_recipes_say_what_the_sources_say(tmp_path) -> None:
    paper, official = load_recipe("uvc"), load_recipe("uvc-official")
    assert [(s.epochs, s.lr) for s in paper.stages] == [(10, 1e-4), (10, 0.5e-4)]
    assert (paper.data.crop, paper.data.frame, paper.data.gap, paper.data.gap_unit) == (256, 640, (1, 50), "frames")
    assert [(s.epochs, s.lr, s.decay_over) for s in official.stages] == [(10, 1e-4, 30), (20, 1e-4, 30)]
    assert official.data.batch_size == 40 and official.model["concentration_weight"] == 0.3
    cpu = load_recipe("uvc-cpu")
    assert cpu.data.gap_unit == "seconds" and all(s.steps for s in cpu.stages)
    assert load_recipe("autoencoder").method == "autoencoder"
    assert load_recipe(CONFIG_DIR / "uvc.toml") == paper
    soft = load_recipe("uvc-cpu-t20")  # extends uvc-cpu, changing only the affinity temperature
    assert soft.model == {**cpu.model, "temperature": 20.0} and soft.data == cpu.data and soft.stages == cpu.stages
    tune = load_recipe("uvc-cpu-t20-finetune")  # uvc-cpu-t20's joint stage alone, for --init
    assert tune.model == soft.model and tune.data == soft.data
    assert tune.stages == (dataclasses.replace(soft.stages[1], steps=500),)
    sneaky = tmp_path / "init.toml"
    sneaky.write_text('extends = "uvc-cpu"\ninit = "weights/uvc_r18.safetensors"\n')
    with pytest.raises(InputError, match="--init"):  # weights are a command-line choice, not a recipe field
        load_recipe(sneaky)


def test_official_poly_schedule_restarts_after_warmup() -> None:
    warmup, joint = load_recipe("uvc-official").stages
    per_epoch = 7
    for epoch in range(10):  # adjust_learning_rate(args, optimizer, epoch): lr (1 - e / 30) ** 0.9
        for step in (epoch * per_epoch, epoch * per_epoch + per_epoch - 1):
            assert math.isclose(learning_rate(warmup, step, per_epoch), 1e-4 * (1 - epoch / 30) ** 0.9)
    assert math.isclose(learning_rate(joint, 0, per_epoch), 1e-4)  # restarted (epoch - wepoch)
    assert math.isclose(learning_rate(joint, 19 * per_epoch, per_epoch), 1e-4 * (1 - 19 / 30) ** 0.9)
    assert stage_steps(joint, per_epoch) == 20 * per_epoch


def test_step_schedules() -> None:
    poly = StageConfig("s", steps=100, lr=1.0)
    assert learning_rate(poly, 0, 5) == 1.0 and learning_rate(poly, 50, 5) == 0.5**0.9
    cosine = StageConfig("s", steps=100, lr=1.0, schedule="cosine")
    assert math.isclose(learning_rate(cosine, 50, 5), 0.5) and learning_rate(cosine, 100, 5) == 0.0
    assert learning_rate(StageConfig("s", steps=10, lr=0.1, schedule="constant"), 9, 1) == 0.1
    with pytest.raises(ValueError, match="exactly one"):
        StageConfig("s", steps=10, epochs=2)


@pytest.mark.parametrize("table, problem", [("[data]\nbatch_size = 0", "batch_size = 0"),
                                            ("[data]\nworkers = -1", "workers"),
                                            ("[data]\ngap = [2.0, 0.5]", "gap"),
                                            ("[log]\nevery = 0", "every = 0")])
def test_sizes_and_intervals_out_of_range_are_recipe_errors(tmp_path, table: str, problem: str) -> None:
    """They ended in a torch traceback or a modulo by zero once the videos had been indexed."""
    path = tmp_path / "r.toml"
    path.write_text(f"{table}\n[stages.warmup]\nsteps = 1\n")
    with pytest.raises(InputError, match=problem) as error:
        load_recipe(path)
    assert error.value.path == path


def test_unknown_fields_are_named(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("[stages.warmup]\nsteps = 1\nlearning_rate = 1e-4\n")
    with pytest.raises(InputError, match="learning_rate") as error:
        load_recipe(path)
    assert error.value.path == path
    with pytest.raises(InputError, match="no such recipe.*uvc-cpu"):
        load_recipe("uvc-gpu")


def test_extends_overrides_the_parent_field_by_field(tmp_path) -> None:
    ablation, t20 = load_recipe("uvc-cpu-ablation"), load_recipe("uvc-cpu-t20")
    assert ablation.name == "uvc-cpu-ablation" and ablation.model == t20.model and ablation.data == t20.data
    assert [(s.name, s.steps, s.lr) for s in ablation.stages] == [("warmup", 100, 1e-4), ("joint", 100, 0.5e-4)]
    assert (ablation.log.every, ablation.log.checkpoint_every) == (t20.log.every, 25)
    # A user's file extends a shipped recipe by name, and a sibling file by relative path.
    (tmp_path / "mine.toml").write_text('extends = "uvc-cpu"\n[data]\nbatch_size = 4\n')
    (tmp_path / "mine-long.toml").write_text('extends = "mine.toml"\n[stages.joint]\nsteps = 9\n')
    mine = load_recipe(tmp_path / "mine-long.toml")
    cpu = load_recipe("uvc-cpu")
    assert mine.name == "mine-long" and mine.data == dataclasses.replace(cpu.data, batch_size=4)
    assert [s.steps for s in mine.stages] == [cpu.stages[0].steps, 9]


def test_extends_can_switch_a_stage_from_epochs_to_steps(tmp_path) -> None:
    paper = load_recipe("uvc")
    assert [(s.epochs, s.steps) for s in paper.stages] == [(10, None), (10, None)]
    check = load_recipe("uvc-device-check")  # the GPU check: the paper recipe, step-based
    assert [(s.name, s.epochs, s.steps, s.lr) for s in check.stages] == [
        ("warmup", None, 300, paper.stages[0].lr), ("joint", None, 300, paper.stages[1].lr)]
    assert check.model == paper.model and check.data.batch_size == paper.data.batch_size == 40
    (tmp_path / "both.toml").write_text('extends = "uvc"\n[stages.joint]\nsteps = 9\nepochs = 2\n')
    with pytest.raises(InputError, match="exactly one of 'epochs' and 'steps'"):
        load_recipe(tmp_path / "both.toml")


def test_extends_errors_name_the_file(tmp_path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    with pytest.raises(InputError, match=r"extends = 'b': .*b\.toml: unreadable recipe: 'extends' loops back to "
                                         r".*a\.toml$") as error:
        load_recipe(tmp_path / "a.toml")
    assert error.value.path == tmp_path / "a.toml"  # the file given, then the chain to the loop
    # A parent that is missing or unparseable is refused by the file whose `extends` names it, with
    # where it was looked for: the shipped path alone ("configs/train/no-such-parent.toml: no such
    # recipe") read as a broken install, and a parent's TOML error did not say who extends it.
    (tmp_path / "c.toml").write_text('extends = "no-such-parent"\n')
    with pytest.raises(InputError, match=r"unreadable recipe: extends = 'no-such-parent': no file .*no-such-parent"
                                         r"\.toml beside it and no shipped recipe 'no-such-parent' \(shipped "
                                         r"recipes: .*uvc-cpu.*\)$") as error:
        load_recipe(tmp_path / "c.toml")
    assert error.value.path == tmp_path / "c.toml" and str(tmp_path / "no-such-parent.toml") in str(error.value)
    (tmp_path / "broken.toml").write_text("method = \n")
    (tmp_path / "e.toml").write_text('extends = "broken.toml"\n')
    (tmp_path / "f.toml").write_text('extends = "e"\n')
    with pytest.raises(InputError, match=r"extends = 'e': .*e\.toml: unreadable recipe: extends = 'broken\.toml': "
                                         r".*broken\.toml: unreadable recipe: Invalid value") as error:
        load_recipe(tmp_path / "f.toml")
    assert error.value.path == tmp_path / "f.toml"
    (tmp_path / "g.toml").write_text('extends = "sub/none.toml"\n')
    with pytest.raises(InputError, match=r"extends = 'sub/none\.toml': .*sub/none\.toml is missing$"):
        load_recipe(tmp_path / "g.toml")
    (tmp_path / "mine").mkdir()  # a folder: it was "no such recipe", which it is, but not why
    (tmp_path / "mine" / "fast.toml").write_text('extends = "uvc-cpu"\n')
    with pytest.raises(InputError, match=r"is a folder, not a recipe: a recipe is a shipped recipe's name "
                                         r"\(shipped recipes: .*uvc-cpu.*\) or a \.toml file; "
                                         r"it holds fast\.toml$") as error:
        load_recipe(tmp_path / "mine")
    assert error.value.path == tmp_path / "mine"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"is a folder, not a recipe: .* or a \.toml file$"):
        load_recipe(tmp_path / "empty")  # one without recipes in it is not said to hold any
    (tmp_path / "d.toml").write_text("extends = 3\n")
    with pytest.raises(InputError, match="'extends' must be"):
        load_recipe(tmp_path / "d.toml")


def test_a_file_named_like_a_shipped_recipe_extends_the_shipped_one(tmp_path) -> None:
    """r2/uvc-cpu.toml with extends = "uvc-cpu" was refused: "'extends' loops back to r2/uvc-cpu.toml"."""
    shipped = load_recipe("uvc-cpu")
    own = tmp_path / "r2" / "uvc-cpu.toml"
    own.parent.mkdir()
    own.write_text('extends = "uvc-cpu"\nseed = 7\n[data]\nbatch_size = 4\n')
    recipe = load_recipe(own)
    assert (recipe.seed, recipe.data.batch_size) == (7, 4) and recipe.stages == shipped.stages
    assert recipe.data.crop == shipped.data.crop and recipe.model == shipped.model
    (tmp_path / "r2" / "child.toml").write_text('extends = "uvc-cpu"\n')  # beside it: the own file first
    assert load_recipe(tmp_path / "r2" / "child.toml").seed == 7
    (tmp_path / "no-such-shipped.toml").write_text('extends = "no-such-shipped"\n')  # still a loop
    with pytest.raises(InputError, match="loops back"):
        load_recipe(tmp_path / "no-such-shipped.toml")


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _chain(*paths) -> str:
    """What ``sha256sum PATHS | cut -c1-64 | sha256sum`` prints (docs/training.md, "Recipes")."""
    return hashlib.sha256("".join(f"{_sha256(path)}\n" for path in paths).encode()).hexdigest()


def test_a_recipe_files_chain_digest_covers_the_files_it_extends(tmp_path) -> None:
    """The recorded sha256 was the named file's alone: a changed parent trained another recipe under
    the same record. ``chain_sha256`` covers every file of the chain, the named one first."""
    (tmp_path / "parent.toml").write_text('extends = "uvc-cpu-t20"\n[data]\nbatch_size = 4\n')
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\nseed = 3\n')
    recipe = load_recipe(tmp_path / "child.toml")
    files = [tmp_path / "child.toml", tmp_path / "parent.toml", CONFIG_DIR / "uvc-cpu-t20.toml",
             CONFIG_DIR / "uvc-cpu.toml"]
    assert recipe.file["sha256"] == _sha256(files[0]) and recipe.file["chain_sha256"] == _chain(*files)
    (tmp_path / "parent.toml").write_text('extends = "uvc-cpu-t20"\n[data]\nbatch_size = 6\n')
    changed = load_recipe(tmp_path / "child.toml")
    assert changed.file["sha256"] == recipe.file["sha256"]  # the named file is the same ...
    assert changed.file["chain_sha256"] == _chain(*files) != recipe.file["chain_sha256"]  # ... its chain is not
    assert changed.data.batch_size == 6
    # a record from before the chain's digest was kept reads as it was, and a sidecar leaves it out
    old = {**recipe.to_dict(), "file": {k: v for k, v in recipe.file.items() if k != "chain_sha256"}}
    stored = recipe_from_dict(old, recipe.name)
    meta = export_meta(tmp_path, stored, None, Progress())
    assert meta["recipe_sha256"] == recipe.file["sha256"] and "recipe_chain_sha256" not in meta
    assert export_meta(tmp_path, recipe, None, Progress())["recipe_chain_sha256"] == recipe.file["chain_sha256"]


def test_a_recipe_file_of_ones_own_is_identified_by_its_path_and_sha256(tmp_path) -> None:
    """my/uvc-cpu.toml was named "uvc-cpu" alone, as the shipped recipe, in checkpoints, run.json
    and sidecars: nothing downstream could tell them apart."""
    shipped = load_recipe("uvc-cpu")
    assert shipped.file is None and shipped.identity == "uvc-cpu" and "file" not in shipped.to_dict()
    assert load_recipe(CONFIG_DIR / "uvc-cpu.toml") == shipped  # shipped, given by its path
    own = tmp_path / "my" / "uvc-cpu.toml"
    own.parent.mkdir()
    own.write_text('extends = "uvc-cpu"\n')  # the same fields, under the same name
    recipe = load_recipe(own)
    assert recipe.name == "uvc-cpu" and recipe.file == {"path": str(own.resolve()), "sha256": _sha256(own),
                                                        "chain_sha256": _chain(own, CONFIG_DIR / "uvc-cpu.toml")}
    assert recipe.identity == str(own.resolve()) and recipe.to_dict()["file"] == recipe.file
    assert recipe_from_dict(recipe.to_dict(), recipe.name) == recipe  # checkpoint round trip
    # the same run as the shipped one (a resume compares fields), and as itself stored before the file was
    stored_before = {k: v for k, v in recipe.to_dict().items() if k != "file"}
    assert recipe.trajectory_dict() == shipped.trajectory_dict() == recipe_from_dict(
        stored_before, "uvc-cpu").trajectory_dict()
    own.write_text('extends = "uvc-cpu"\nfile = {path = "uvc-cpu", sha256 = "0"}\n')
    with pytest.raises(InputError, match="unknown top-level keys \\['file'\\]"):  # recorded, not set
        load_recipe(own)


def test_a_recipe_file_saved_with_a_byte_order_mark(tmp_path) -> None:
    """A Windows editor's BOM was refused as TOML's "Invalid statement"; the file's sha256 stays
    that of its bytes, BOM included (what ``sha256sum`` gives)."""
    own = tmp_path / "mine.toml"
    for encoding in ("utf-8-sig", "utf-16", "utf-32"):  # UTF-16: Windows PowerShell 5's `>`
        own.write_bytes('extends = "uvc-cpu"\r\n[data]\nbatch_size = 4\n'.encode(encoding))
        recipe = load_recipe(own)
        assert recipe.trajectory_dict() == load_recipe("uvc-cpu").replace(
            data=dataclasses.replace(load_recipe("uvc-cpu").data, batch_size=4)).trajectory_dict()
        assert recipe.file["sha256"] == _sha256(own)


def test_drop_stages_leaves_out_a_parents_stage(tmp_path) -> None:
    t20 = load_recipe("uvc-cpu-t20")
    (tmp_path / "joint.toml").write_text('extends = "uvc-cpu-t20"\ndrop_stages = ["warmup"]\n')
    joint_only = load_recipe(tmp_path / "joint.toml")
    assert joint_only.stages == t20.stages[1:] and joint_only.model == t20.model
    (tmp_path / "grand.toml").write_text('extends = "joint.toml"\n[stages.joint]\nsteps = 7\n')
    assert [(s.name, s.steps) for s in load_recipe(tmp_path / "grand.toml").stages] == [("joint", 7)]
    bad = {
        'extends = "uvc-cpu"\ndrop_stages = ["warmpu"]\n': "'warmpu', which the parent does not have.*warmup, joint",
        'extends = "uvc-cpu"\ndrop_stages = ["warmup"]\n[stages.warmup]\nsteps = 3\n': "both dropped and set",
        'extends = "uvc-cpu"\ndrop_stages = "warmup"\n': "must be a list of stage names",
        'extends = "uvc-cpu"\ndrop_stages = ["warmup", "joint"]\n': "at least one",
        'method = "uvc"\ndrop_stages = ["warmup"]\n': "needs 'extends'",
    }
    for number, (text, message) in enumerate(bad.items()):
        path = tmp_path / f"bad{number}.toml"
        path.write_text(text)
        with pytest.raises(InputError, match=message) as error:
            load_recipe(path)
        assert error.value.path == path


def test_a_stage_the_extended_recipe_drops_is_not_set_again(tmp_path) -> None:
    """A fine-tune recipe of one's own extending uvc-cpu-t20-finetune with "A first try"'s [stages.warmup]
    (docs/training.md) ran the joint stage and then a warm-up after it: the stage its parent dropped came
    back last, as a stage new to the chain, where one file that both drops and sets a stage is refused."""
    path = tmp_path / "tiny-ft.toml"
    path.write_text('extends = "uvc-cpu-t20-finetune"\n[stages.warmup]\nsteps = 6\n[stages.joint]\nsteps = 6\n')
    with pytest.raises(InputError, match=r"\[stages\.warmup\] sets a stage that .*uvc-cpu-t20-finetune\.toml drops "
                                         r"\(drop_stages\)") as error:
        load_recipe(path)
    assert error.value.path == path
    (tmp_path / "joint.toml").write_text('extends = "uvc-cpu-t20"\ndrop_stages = ["warmup"]\n')
    (tmp_path / "mid.toml").write_text('extends = "joint.toml"\n[data]\nbatch_size = 2\n')
    (tmp_path / "grand.toml").write_text('extends = "mid.toml"\n[stages.warmup]\nsteps = 6\n')  # two files down
    with pytest.raises(InputError, match=r"\[stages\.warmup\] sets a stage that .*joint\.toml drops"):
        load_recipe(tmp_path / "grand.toml")
    path.write_text('extends = "uvc-cpu-t20-finetune"\n[stages.joint]\nsteps = 6\n')
    assert [(s.name, s.steps) for s in load_recipe(path).stages] == [("joint", 6)]


def test_a_dropped_stage_set_again_in_its_place_is_taken(tmp_path) -> None:
    """A stage a parent dropped and a child sets again where it was (the last stage, dropped, then given
    a table of one's own) runs in the chain's order: the refusal above is for one that would run after a
    stage that followed it, and the message names that stage."""
    (tmp_path / "warm.toml").write_text('extends = "uvc-cpu-t20"\ndrop_stages = ["joint"]\n')
    (tmp_path / "again.toml").write_text('extends = "warm.toml"\n[stages.joint]\nsteps = 5\nlr = 2e-5\n')
    assert [(s.name, s.steps, s.lr) for s in load_recipe(tmp_path / "again.toml").stages] == [
        ("warmup", 450, 1e-4), ("joint", 5, 2e-5)]
    (tmp_path / "tweak.toml").write_text('extends = "again.toml"\n[stages.joint]\nsteps = 7\n')  # now kept
    assert [(s.name, s.steps) for s in load_recipe(tmp_path / "tweak.toml").stages] == [("warmup", 450), ("joint", 7)]
    (tmp_path / "late.toml").write_text('extends = "uvc-cpu-t20-finetune"\n[stages.warmup]\nsteps = 6\n')
    with pytest.raises(InputError, match=r"would run after stage 'joint', which followed it"):
        load_recipe(tmp_path / "late.toml")


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
def test_every_shipped_recipe_builds_its_method_config(name: str) -> None:
    """What `vidcorr train <method> --recipe NAME` does before indexing any video."""
    recipe = load_recipe(name)
    assert recipe_from_dict(recipe.to_dict(), recipe.name) == recipe and recipe.init is None
    stages = {"uvc": uvc.STAGES, "cycletime": cycletime.STAGES, "stt": stt.STAGES, "moco": moco.STAGES,
              "autoencoder": (STAGE,)}[recipe.method]
    assert {s.name for s in recipe.stages} <= set(stages)
    if recipe.method == "uvc":
        uvc.check_sizes(uvc.recipe(recipe.base or "uvc", **recipe.model), recipe.data, [s.name for s in recipe.stages])
    elif recipe.method in ("cycletime", "stt"):
        {"cycletime": cycletime, "stt": stt}[recipe.method].config_for_recipe(recipe.base, recipe.model, recipe.data)
    elif recipe.method == "moco":
        assert recipe.data.batch_size <= moco.config_for_recipe(recipe.base, recipe.model).queue_size


def _child_of_t20(tmp_path, text: str):
    """``text`` in a recipe extending uvc-cpu-t20 (the tester's setting: every other field valid)."""
    path = tmp_path / "r.toml"
    path.write_text(f'extends = "uvc-cpu-t20"\n{text}\n')
    return path


@pytest.mark.parametrize("text, message", [
    ("[optim]\ngrad_clip = -1", "[optim] grad_clip = -1: must be > 0 (left out: no clipping)"),
    ("[optim]\ngrad_clip = 0.0", "[optim] grad_clip = 0.0: must be > 0"),
    ("[optim]\nbetas = [1.5, 2]", "[optim] betas = [1.5, 2.0]: must be two numbers in [0, 1)"),
    ("[optim]\nbetas = [0.9, 0.99, 0.999]", "[optim] betas = [0.9, 0.99, 0.999]: expected a list of 2 numbers"),
    ("[optim]\nweight_decay = -1", "[optim] weight_decay = -1: must be >= 0"),
    ("[optim]\neps = 0", "[optim] eps = 0: must be > 0"),
    ("[optim]\nname = \"sgd\"\nmomentum = 1.0", "[optim] momentum = 1.0: must be in [0, 1)"),
    ("[cpu]\nthreads = -1", "[cpu] threads = -1: must be at least 1 (left out: torch's default)"),
    ("[cpu]\nthreads = 0", "[cpu] threads = 0: must be at least 1"),
    # every bad [data] field on its own, with its value and range (two were lumped: "workers must be
    # >= 0 and folder_fps > 0, got -1 and 30.0")
    ("[data]\nworkers = -1\nbatch_size = 0", "[data] batch_size = 0: must be at least 1; workers = -1: must be >= 0 "
                                             "(0: load in the training process)"),
    ("[data]\nfolder_fps = -2.5\ngap = [3, 1]", "[data] folder_fps = -2.5: must be > 0; gap = [3.0, 1.0]: must be "
                                                "[low, high] with 0 < low <= high"),
    ("seed = -1", "seed = -1: must be in [0, 2**31)"),
    ("[stages.joint]\npower = -1", "stage 'joint': power = -1: must be >= 0"),
    ("[stages.joint]\ndecay_over = -5", "stage 'joint': decay_over = -5: must be at least 1"),
    ("[stages.joint]\nlr = nan", "stage 'joint': lr = nan: must be > 0"),
    # each offending field by name and value: "length and lr must be positive" left one to guess
    ("[stages.joint]\nsteps = 0\nlr = -1", "stage 'joint': steps = 0: must be at least 1; lr = -1: must be > 0"),
    ("[data]\nfolder_fps = nan", "[data] folder_fps = nan: must be > 0"),
    # nan passed the method configs' own checks: a nan loss, and a run.json that is no JSON
    ("[model]\ntemperature = nan", "[model] temperature = nan: expected a finite number"),
    ("[model]\nlab_weights = [1, inf, 1]", "[model] lab_weights = [1, inf, 1]: expected a finite number"),
    ("[optim]\ngrad_clip = inf", "[optim] grad_clip = inf: expected a finite number"),
])
def test_values_out_of_range_are_recipe_errors(tmp_path, text: str, message: str) -> None:
    """These loaded and then trained wrongly (grad_clip <= 0 zeroes or flips every gradient, 0
    threads fell back to every core) or failed in a torch or numpy traceback once training started."""
    path = _child_of_t20(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_recipe(path)
    assert error.value.path == path and message in error.value.problem


@pytest.mark.parametrize("text, message", [
    ("[data]\ncrop = 64.5", "[data] crop = 64.5: expected an integer"),
    ("[data]\ncrop = true", "[data] crop = true: expected an integer"),
    ('[data]\ncrop = "64"', '[data] crop = "64": expected an integer'),
    ('[data]\ngap = [1, "a"]', '[data] gap = [1, "a"]: expected a list of 2 numbers'),
    ("[data]\ngap = 2", "[data] gap = 2: expected a list of 2 numbers"),
    ("[cpu]\nthreads = 1.5", "[cpu] threads = 1.5: expected an integer (or left out)"),
    ("[cpu]\nbf16 = 1", "[cpu] bf16 = 1: expected true or false"),
    ("[stages.joint]\nsteps = 1.5", "[stages.joint] steps = 1.5: expected an integer (or left out)"),
    ("[stages.joint]\nlr = \"1e-4\"", '[stages.joint] lr = "1e-4": expected a number'),
    ("seed = 1.0", "top-level key seed = 1.0: expected an integer"),
    ("model = 3", "top-level key model = 3: expected a table"),
    ("[stages]\njoint = 3", "[stages.joint] must be a table, got 3"),
])
def test_values_of_the_wrong_type_are_named(tmp_path, text: str, message: str) -> None:
    """Checked against the dataclass annotations when the recipe is read: a float crop crashed in
    torch.randint, `true` was taken as 1, a string ended in "'<' not supported" naming no field."""
    path = _child_of_t20(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_recipe(path)
    assert error.value.path == path and message in error.value.problem


@pytest.mark.parametrize("parent, text, message", [
    ("uvc-cpu-t20", 'temperature = "1"', '[model] temperature = "1": expected a number'),
    ("uvc-cpu-t20", 'localisation = "false"', '[model] localisation = "false": expected true or false'),
    ("uvc-cpu-t20", 'box = "madd"', '[model] box = "madd": expected "mad" or "fixed"'),
    ("uvc-cpu-t20", "lab_weights = [1, 10]", "[model] lab_weights = [1, 10]: expected a list of 3 numbers"),
    ("cycletime-cpu", "head_channels = 64.5", "[model] head_channels = 64.5: expected an integer"),
    ("cycletime-cpu", 'temperature = "0.05"', '[model] temperature = "0.05": expected a number (or left out)'),
    ("stt-cpu", "radius = [12, 6.5]", "[model] radius = [12, 6.5]: expected a list of 2 integers"),
    ("stt-cpu", "teacher_normalise = 1", "[model] teacher_normalise = 1: expected true or false"),
    ("moco-cpu", "queue_size = 4096.0", "[model] queue_size = 4096.0: expected an integer"),
    ("moco-cpu", "arch = 18", "[model] arch = 18: expected a string"),
])
def test_model_values_of_the_wrong_type_are_named(tmp_path, parent: str, text: str, message: str) -> None:
    """[model] is checked against the method's config dataclass when the recipe is read: a string
    temperature failed in "'<=' not supported" once `vidcorr train` built the config, a string
    "false" was taken as true, a float size reached torch."""
    path = tmp_path / "r.toml"
    path.write_text(f'extends = "{parent}"\n[model]\n{text}\n')
    with pytest.raises(InputError) as error:
        load_recipe(path)
    assert error.value.path == path and message in error.value.problem, error.value.problem


def test_model_weights_records_and_unknown_keys_are_left_to_the_method(tmp_path) -> None:
    """The weights records `vidcorr train` adds to [model] (kept in checkpoints) are not config
    fields and load; an unknown [model] key loads too and is refused when the config is built."""
    record = {"weights": "w.safetensors", "sha256": "ab"}
    uvc_recipe = load_recipe("uvc-cpu-t20")
    cfg = uvc.recipe(uvc_recipe.base, **uvc_recipe.model)
    stored = uvc_recipe.replace(model={**cfg.to_dict(), "autoencoder": record}).to_dict()
    assert recipe_from_dict(stored, "stored").model["autoencoder"] == record
    stt_recipe = load_recipe("stt-cpu")
    stt_cfg = stt.config_for_recipe(stt_recipe.base, stt_recipe.model, stt_recipe.data)
    for teacher in (record, None):
        stored = stt_recipe.replace(model={**stt_cfg.to_dict(), "teacher": teacher}).to_dict()
        assert recipe_from_dict(stored, "stored").model["teacher"] == teacher
    with pytest.raises(ValueError, match=r"\[model\] radius = \[12\]: expected a list of 2 integers"):
        recipe_from_dict({**stored, "model": {**stored["model"], "radius": [12]}}, "stored")
    path = tmp_path / "r.toml"
    path.write_text('extends = "uvc-cpu-t20"\n[model]\ntemprature = 2.0\n')
    typo = load_recipe(path)
    with pytest.raises(ValueError, match=r"unknown UVC config keys \['temprature'\]"):
        uvc.recipe(typo.base, **typo.model)


def test_range_edges_and_integers_for_numbers_load_but_not_booleans(tmp_path) -> None:
    edges = load_recipe(_child_of_t20(tmp_path, "[optim]\ngrad_clip = 10\nbetas = [0, 0.999]\nmomentum = 0\n"
                                                "weight_decay = 0\n[stages.joint]\nlr = 1"))
    assert (edges.optim.grad_clip, edges.optim.betas, edges.optim.weight_decay, edges.stages[1].lr) == (
        10, (0.0, 0.999), 0, 1)
    assert load_recipe("uvc-cpu").optim.grad_clip is None  # left out: no clipping
    path = _child_of_t20(tmp_path, "[optim]\ngrad_clip = true")  # was clip_grad_norm_(params, True)
    with pytest.raises(InputError, match=r"\[optim\] grad_clip = true: expected a number \(or left out\)"):
        load_recipe(path)


def test_unknown_top_level_keys_list_only_what_a_file_may_set(tmp_path) -> None:
    """init is set by --init (and kept in checkpoints), so the list of known keys leaves it out;
    extends and drop_stages are recipe-file keys and are in it."""
    path = _child_of_t20(tmp_path, "inti = 3")
    with pytest.raises(InputError, match=r"unknown top-level keys \['inti'\]") as error:
        load_recipe(path)
    known = error.value.problem.split("known: ")[1]
    assert "'init'" not in known and "'extends'" in known and "'drop_stages'" in known
    # A checkpoint's recipe (`Recipe.to_dict`) keeps its init, of the checked type.
    tuned = load_recipe("uvc-cpu-t20-finetune").replace(init={"weights": "w.safetensors", "sha256": "ab"})
    assert recipe_from_dict(tuned.to_dict(), tuned.name) == tuned
    with pytest.raises(ValueError, match=r"top-level key init = \{\"weights\": 3\}: expected a table of strings"):
        recipe_from_dict({**tuned.to_dict(), "init": {"weights": 3}}, tuned.name)
    with pytest.raises(ValueError, match=r"unknown top-level keys \['inti'\]"):
        recipe_from_dict({**tuned.to_dict(), "inti": 3}, tuned.name)


def test_a_link_to_a_shipped_recipe_under_another_name_is_a_file_of_ones_own(tmp_path) -> None:
    """my/fast.toml -> configs/train/uvc-cpu.toml was recorded as a shipped recipe named "fast",
    which does not exist: only a file in configs/train/ is shipped."""
    link = tmp_path / "fast.toml"
    link.symlink_to(CONFIG_DIR / "uvc-cpu.toml")
    recipe = load_recipe(link)
    named = str(link.parent.resolve() / link.name)  # the link, not the shipped file it points to
    assert recipe.name == "fast" and recipe.identity == named
    assert recipe.file == {"path": named, "sha256": _sha256(CONFIG_DIR / "uvc-cpu.toml"),
                           "chain_sha256": _chain(CONFIG_DIR / "uvc-cpu.toml")}
    assert recipe.trajectory_dict() == load_recipe("uvc-cpu").trajectory_dict()
