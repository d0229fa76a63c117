"""Shipped recipes and learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from vidcorr.errors import InputError
from vidcorr.methods import uvc
from vidcorr.train import StageConfig, learning_rate, load_recipe, stage_steps
from vidcorr.train.config import CONFIG_DIR, recipe_from_dict


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("uvc*.toml")))
def test_uvc_recipes_load_and_build_their_config(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.method == "uvc" and [s.name for s in recipe.stages] == ["warmup", "joint"]
    cfg = uvc.UVCConfig(**{**uvc.RECIPES[recipe.base], **recipe.model})
    assert cfg == uvc.recipe(recipe.base, **recipe.model)
    assert recipe.data.crop % 8 == 0 and recipe.data.frame % 8 == 0
    assert recipe_from_dict(recipe.to_dict(), recipe.name) == recipe  # checkpoint round trip


def test_paper_and_official_recipes_say_what_the_sources_say() -> None:
    paper, official = load_recipe("uvc"), load_recipe("uvc-official")
    assert [(s.epochs, s.lr) for s in paper.stages] == [(10, 1e-4), (10, 0.5e-4)]
    assert (paper.data.crop, paper.data.frame, paper.data.gap, paper.data.gap_unit) == (256, 640, (1, 50), "frames")
    assert [(s.epochs, s.lr, s.decay_over) for s in official.stages] == [(10, 1e-4, 30), (20, 1e-4, 30)]
    assert official.data.batch_size == 40 and official.model["concentration_weight"] == 0.3
    cpu = load_recipe("uvc-cpu")
    assert cpu.data.gap_unit == "seconds" and all(s.steps for s in cpu.stages)
    assert load_recipe("autoencoder").method == "autoencoder"
    assert load_recipe(CONFIG_DIR / "uvc.toml") == paper
    soft = load_recipe("uvc-cpu-t20")  # uvc-cpu with only the affinity temperature changed
    assert soft.model == {**cpu.model, "temperature": 20.0} and soft.data == cpu.data and soft.stages == cpu.stages


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


def test_unknown_fields_are_named(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("[stages.warmup]\nsteps = 1\nlearning_rate = 1e-4\n")
    with pytest.raises(InputError, match="learning_rate") as error:
        load_recipe(path)
    assert error.value.path == path
    with pytest.raises(InputError, match="no such recipe.*uvc-cpu"):
        load_recipe("uvc-gpu")
