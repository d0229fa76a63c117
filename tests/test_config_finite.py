"""Configs built in code refuse NaN and infinity in every float field, as recipe files do: the
range checks are comparisons, which NaN passes (a NaN temperature trained to a NaN loss)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from vidcorr.methods import CycleTimeConfig, MoCoConfig, STTConfig, UVCConfig
from vidcorr.train.config import DataConfig, OptimConfig, StageConfig

# Each config with the arguments it needs (a stage needs a name and a length; grad_clip is None
# unless set).
CONFIGS = [(UVCConfig, {}), (CycleTimeConfig, {}), (STTConfig, {}), (MoCoConfig, {}), (DataConfig, {}),
           (StageConfig, {"name": "joint", "steps": 10}), (OptimConfig, {"grad_clip": 1.0})]


def _float_fields(cls: type) -> list[str]:
    """The fields of ``cls`` that hold a float or a tuple of floats."""
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if float in (hints[f.name], *typing.get_args(hints[f.name]))]


def _cases() -> list:
    return [pytest.param(cls, kwargs, name, bad, id=f"{cls.__name__}.{name}={bad}")
            for cls, kwargs in CONFIGS for name in _float_fields(cls) for bad in (float("nan"), float("inf"))]


def test_every_config_has_float_fields_to_check() -> None:
    assert all(_float_fields(cls) for cls, _ in CONFIGS)


@pytest.mark.parametrize("cls, kwargs, name, bad", _cases())
def test_a_non_finite_float_field_is_refused_naming_it(cls: type, kwargs: dict, name: str, bad: float) -> None:
    default = getattr(cls(**kwargs), name)
    value = (default[0], bad, *default[2:]) if isinstance(default, tuple) else bad
    with pytest.raises(ValueError, match=name):  # some range checks name it first, in their words
        cls(**{**kwargs, name: value})


@pytest.mark.parametrize("cls, name, label", [
    (UVCConfig, "temperature", "UVCConfig"), (CycleTimeConfig, "translation_scale", "CycleTimeConfig"),
    (STTConfig, "rec_scale", "STTConfig"), (MoCoConfig, "temperature", "MoCoConfig"),
])
def test_the_message_names_the_method_config_class_and_field(cls: type, name: str, label: str) -> None:
    with pytest.raises(ValueError, match=rf"^{label} {name} = inf: expected a finite number$"):
        cls(**{name: float("inf")})


def test_train_configs_are_named_as_their_recipe_tables_and_tuples_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^\[optim\] eps = inf: expected a finite number$"):
        OptimConfig(eps=float("inf"))
    with pytest.raises(ValueError, match=r"^\[data\] gap = \[1\.0, inf\]: expected a finite number$"):
        DataConfig(gap=(1, float("inf")))
    with pytest.raises(ValueError, match=r"^stage 'joint': lr = inf: expected a finite number$"):
        StageConfig("joint", steps=10, lr=float("inf"))
    with pytest.raises(ValueError, match=r"^\[data\] folder_fps = inf: expected a finite number$"):
        DataConfig(folder_fps=float("inf"))
