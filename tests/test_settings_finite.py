"""Tracker settings, UVC-track options, samplers, augmentations and the preset's top-k knobs refuse
NaN and infinity in every float field at construction, as the training configs do
(tests/test_config_finite.py): range checks are comparisons, and those that NaN or inf passed gave
a drifting box, empty masks, black patches or an error from deep inside (a NaN DCF output_sigma_factor,
a NaN preset temperature, a NaN CycleClipAugment jitter, an infinite gap)."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

import vidcorr
from vidcorr.affinity import TopKConfig
from vidcorr.data.augment import (
    CropPairAugment,
    CycleClipAugment,
    PatchFramePairAugment,
    ResizedCropPairAugment,
    TwoViewAugment,
)
from vidcorr.data.pairs import ClipSampling, CycleClipSampling, GapRange, PairSampling
from vidcorr.dcf import DCFSettings
from vidcorr.presets import customised_preset
from vidcorr.track import LocaliseSettings, tracker_settings
from vidcorr.track_uvc import TrackOptions

pytestmark = pytest.mark.usefixtures("one_thread")

# Each settings class, the arguments it needs and how its errors name it.
SETTINGS = [
    (DCFSettings, {}, "invalid DCF settings:"), (LocaliseSettings, {}, "invalid localisation settings:"),
    (TrackOptions, {}, "TrackOptions"), (GapRange, {}, "GapRange"), (PairSampling, {}, "PairSampling"),
    (ClipSampling, {}, "ClipSampling"), (CycleClipSampling, {}, "CycleClipSampling"),
    (CropPairAugment, {}, "CropPairAugment"), (PatchFramePairAugment, {}, "PatchFramePairAugment"),
    (ResizedCropPairAugment, {}, "ResizedCropPairAugment"), (TwoViewAugment, {}, "TwoViewAugment"),
    (CycleClipAugment, {}, "CycleClipAugment"), (TopKConfig, {"k": 5, "temperature": 0.05}, "TopKConfig"),
]


def _float_fields(cls: type) -> list[str]:
    """The fields of ``cls`` that hold a float (or None) or a tuple of floats."""
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if float in (hints[f.name], *typing.get_args(hints[f.name]))]


def _cases() -> list:
    return [pytest.param(cls, kwargs, label, name, bad, id=f"{cls.__name__}.{name}={bad}")
            for cls, kwargs, label in SETTINGS for name in _float_fields(cls) for bad in (float("nan"), float("inf"))]


def test_every_settings_class_has_float_fields_to_check() -> None:
    assert all(_float_fields(cls) for cls, _, _ in SETTINGS)


@pytest.mark.parametrize("cls, kwargs, label, name, bad", _cases())
def test_a_non_finite_float_field_is_refused_naming_the_settings_and_field(
        cls: type, kwargs: dict, label: str, name: str, bad: float) -> None:
    default = getattr(cls(**kwargs), name)
    value = (default[0], bad, *default[2:]) if isinstance(default, tuple) else bad
    shown = str(list(value)) if isinstance(value, tuple) else str(bad)  # as JSON and TOML hold it
    with pytest.raises(ValueError) as error:
        cls(**{**kwargs, name: value})
    assert str(error.value) == f"{label} {name} = {shown}: expected a finite number"


def test_a_nan_max_scale_factor_is_named_itself_not_as_min_scale_factor() -> None:
    """NaN fails every comparison: the range check named min_scale_factor, which was fine."""
    for tracker in ("dcf", "localise"):
        with pytest.raises(ValueError, match="max_scale_factor = nan: expected a finite number"):
            tracker_settings(tracker, max_scale_factor=float("nan"))


@pytest.mark.parametrize("knob", ["temperature", "radius"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_preset_knob_from_python_is_refused_when_called(knob: str, bad: float) -> None:
    """A NaN temperature gave empty masks after the first frame without a word; a NaN or infinite
    radius a ValueError / OverflowError at the first frame. The command line refuses both
    (`--temperature nan`: exit 2), so does the API now, before any frame is read."""
    message = rf"^TopKConfig {knob} = {bad}: expected a finite number$"
    with pytest.raises(ValueError, match=message):
        customised_preset("crw", **{knob: bad})
    frames = [np.zeros((32, 32, 3), np.uint8)] * 2
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 1
    encoder = vidcorr.encoder_for("crw", features="lab-pixels")
    with pytest.raises(ValueError, match=message):
        vidcorr.propagate_masks(frames, mask, encoder=encoder, **{knob: bad})
