"""Knobs built in Python are held to the ranges the command line and the math need, at construction,
with the command line's words: the preset's `TopKConfig` (k, temperature, radius, ...), its context
and `SizePolicy`, DCF's output_sigma_factor / scale_step / scale_penalty and UVC-track's
`TrackOptions`. Before, ``propagate_masks(..., temperature=0)`` or ``k=0`` gave empty masks after the
first frame without a word, a negative temperature masks from the least similar pixels, and the
others an error from inside the first target frame (or a NaN box)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pytest

import vidcorr
from vidcorr.affinity import TopKConfig
from vidcorr.cli.common import KNOB_OVERRIDES, add_model_arguments
from vidcorr.dcf import DCFSettings
from vidcorr.presets import SizePolicy, customised_preset, get_preset
from vidcorr.track import tracker_settings
from vidcorr.track_uvc import TrackOptions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("change, message", [
    ({"k": 0}, "TopKConfig k: expected a positive integer, got 0"),
    ({"k": -3}, "TopKConfig k: expected a positive integer, got -3"),
    ({"k": 2.5}, "TopKConfig k: expected a positive integer, got 2.5"),
    ({"k": True}, "TopKConfig k: expected a positive integer, got True"),
    ({"temperature": 0}, "TopKConfig temperature: expected a positive number, got 0"),
    ({"temperature": -0.05}, "TopKConfig temperature: expected a positive number, got -0.05"),
    ({"radius": 0}, "TopKConfig radius: expected a positive number or None, got 0"),
    ({"radius": 0, "shape": "square"}, "TopKConfig radius: expected a positive number or None, got 0"),
    ({"radius": -4.0}, "TopKConfig radius: expected a positive number or None, got -4.0"),
    ({"shape": "disc"}, "TopKConfig shape: expected 'circle' or 'square', got 'disc'"),
    ({"scope": "all"}, "TopKConfig scope: expected 'joint' or 'per_frame', got 'all'"),
    ({"normalisation": "softmax"}, "TopKConfig normalisation: expected 'topk_softmax' or 'softmax_topk', "
                                   "got 'softmax'"),
    ({"tile": 0}, "TopKConfig tile: expected a positive integer, got 0"),
    ({"chunk": -1}, "TopKConfig chunk: expected a positive integer, got -1"),
])
def test_topk_config_refuses_an_out_of_range_knob_naming_it(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        TopKConfig(**{"k": 5, "temperature": 0.05, "radius": 12.0, **change})
    assert str(error.value) == message


def test_topk_config_takes_the_values_in_range() -> None:
    TopKConfig(k=1, temperature=1e-6, radius=0.5, shape="circle", tile=1, chunk=1)
    TopKConfig(k=np.int64(5), temperature=np.float32(0.05), radius=None)  # numpy scalars, as from a sweep


@pytest.mark.parametrize("change, message", [
    ({"n_previous": -1}, "PropagationPreset n_previous: expected an integer >= 0, got -1"),
    ({"n_previous": 2.5}, "PropagationPreset n_previous: expected an integer >= 0, got 2.5"),
    ({"initial_context": "zero"}, "PropagationPreset initial_context: expected 'empty' or 'first' or 'fill' or "
                                  "'fill_self', got 'zero'"),
    ({"label_downsample": "area"}, "PropagationPreset label_downsample: expected 'nearest' or 'bilinear', got 'area'"),
    ({"output_resize": "both"}, "PropagationPreset output_resize: expected 'original' or 'input', got 'both'"),
])
def test_the_preset_refuses_an_out_of_range_context_or_choice(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        get_preset("crw").with_overrides(**change)
    assert str(error.value) == message


@pytest.mark.parametrize("args, message", [
    (("short_side", 0), "SizePolicy size: expected a positive integer, got 0"),
    (("square", 96.5), "SizePolicy size: expected a positive integer, got 96.5"),
    (("short_side", 96, 0), "SizePolicy long_multiple: expected a positive integer or None, got 0"),
    (("short_side", 96, -64), "SizePolicy long_multiple: expected a positive integer or None, got -64"),
    (("bogus", 96), "SizePolicy mode: expected 'native' or 'short_side' or 'square', got 'bogus'"),
])
def test_a_size_policy_refuses_a_size_it_cannot_resize_to(args: tuple, message: str) -> None:
    """(A size of 0 or a negative multiple failed inside torch's interpolate; an unknown mode was read
    as short_side.)"""
    with pytest.raises(ValueError) as error:
        SizePolicy(*args)
    assert str(error.value) == message


@pytest.mark.parametrize("knobs, field", [
    ({"temperature": 0}, "temperature"), ({"temperature": -0.05}, "temperature"), ({"k": 0}, "k"),
    ({"radius": 0}, "radius"), ({"n_previous": -1}, "n_previous"),
])
def test_propagate_masks_refuses_an_out_of_range_knob_before_the_first_frame(knobs: dict, field: str) -> None:
    """The error comes from the call, not from the first target frame (nor as empty masks)."""
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)]
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 1
    encoder = vidcorr.encoder_for(features="lab-pixels")
    with pytest.raises(ValueError, match=rf"^\w+ {field}: expected "):
        vidcorr.propagate_masks(frames, mask, encoder=encoder, **knobs)


# The CLI's value for each knob and the Python value it stands for.
CASES = {"topk": [-1, 0, 1, 5], "temperature": [-0.1, 0.0, 1e-3, 0.05, math.inf, math.nan],
         "radius": [-1.0, 0.0, 0.5, 12.0], "context": [-1, 0, 3]}


@pytest.mark.parametrize("arg, knob", [pair for pair in KNOB_OVERRIDES if pair[0] in CASES])
def test_the_command_line_and_python_accept_the_same_knob_values(arg: str, knob: str) -> None:
    """One rule (`vidcorr.strict_dict`) for --topk / --temperature / --radius / --context and the
    preset's k / temperature / radius / n_previous: a value one accepts the other does."""
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    parse = next(action.type for action in parser._actions if action.dest == arg)
    outcomes = set()
    for value in CASES[arg]:
        try:
            parse(str(value))
            cli_accepts = True
        except argparse.ArgumentTypeError:
            cli_accepts = False
        try:
            customised_preset("crw", **{knob: value})
            python_accepts = True
        except ValueError:
            python_accepts = False
        assert cli_accepts == python_accepts, (arg, value)
        outcomes.add(cli_accepts)
    assert outcomes == {True, False}  # both are exercised


@pytest.mark.parametrize("change, message", [
    ({"output_sigma_factor": 0.0}, "output_sigma_factor must be positive, got 0.0"),
    ({"output_sigma_factor": -0.1}, "output_sigma_factor must be positive, got -0.1"),
    ({"scale_step": 0.0}, "scale_step must be positive, got 0.0"),
    ({"scale_step": -1.0275}, "scale_step must be positive, got -1.0275"),
    ({"scale_penalty": 0.0}, "scale_penalty must be in (0, 1], got 0.0"),
    ({"scale_penalty": -0.9925}, "scale_penalty must be in (0, 1], got -0.9925"),
    ({"scale_penalty": 1.1}, "scale_penalty must be in (0, 1], got 1.1"),
])
def test_dcf_settings_refuse_a_label_width_or_scale_search_the_math_cannot_use(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        DCFSettings(**change)
    assert str(error.value) == f"invalid DCF settings: {message}"


def test_dcf_settings_take_the_edges_of_their_ranges() -> None:
    DCFSettings(output_sigma_factor=1e-3, scale_step=1.0, scale_penalty=1.0)
    DCFSettings(scale_step=0.97, num_scales=5)  # the same scales as 1 / 0.97


@pytest.mark.parametrize("change, message", [
    ({"first_margin": -0.1}, "first_margin must be 0 or more, got -0.1"),
    ({"locate_margin": -1.5}, "locate_margin must be 0 or more, got -1.5"),
    ({"mask_margin": -0.6}, "mask_margin must be 0 or more, got -0.6"),
    ({"locate_bandwidth": 0.0}, "locate_bandwidth must be positive, got 0.0"),
    ({"mask_bandwidth_px": -20.0}, "mask_bandwidth_px must be positive, got -20.0"),
    ({"kernel_sigma": 0.0}, "kernel_sigma must be positive, got 0.0"),
    ({"size_smoothing": -0.1}, "size_smoothing must be in [0, 1], got -0.1"),
    ({"size_smoothing": 3.0}, "size_smoothing must be in [0, 1], got 3.0"),
    ({"min_pixels": 0}, "min_pixels must be at least 1, got 0"),
    ({"min_mass": -1.0}, "min_mass must be 0 or more, got -1.0"),
    ({"min_box": -1}, "min_box must be 0 or more, got -1"),
    ({"chunk": 0}, "chunk must be at least 1, got 0"),
])
def test_track_options_refuse_a_value_their_boxes_cannot_use(change: dict, message: str) -> None:
    """(A negative bandwidth or a sigma of 0 gave a NaN centre, "cannot convert float NaN to integer";
    a margin of -1 or less or a smoothing above 1 a box inside out; min_pixels 0 the mean shift of
    no points.)"""
    with pytest.raises(ValueError) as error:
        TrackOptions(**change)
    assert str(error.value) == f"invalid UVC-track settings: {message}"


def test_track_options_take_the_edges_of_their_ranges() -> None:
    TrackOptions(first_margin=0.0, locate_margin=0.0, mask_margin=0.0, size_smoothing=0.0, min_pixels=1,
                 min_mass=0.0, min_box=0, chunk=1)
    TrackOptions(size_smoothing=1.0)


@pytest.mark.parametrize("make, name, others", [
    (TrackOptions, "first_margin", {"min_pixels": np.int64(3)}),
    (lambda **kw: tracker_settings("localise", **kw), "temperature", {"iterations": np.int64(2)}),
    (DCFSettings, "lam", {"l2_normalise": np.bool_(True)}),
])
def test_tracking_settings_take_numpy_scalars_as_python_numbers(make, name, others) -> None:
    """Values computed with NumPy (np.int64, np.float32) were kept as such: `eval davis --track`'s
    record of a TrackOptions(first_margin=np.float32(0.1)) failed at the start with "Object of type
    float32 is not JSON serializable", and an np.float32 NaN passed the NaN check (it is no float).
    The presets' knobs had the same cure (`PropagationPreset.with_overrides`)."""
    fields = dataclasses.asdict(make(**{name: np.float32(0.25)}, **others))
    assert type(fields[name]) is float and fields[name] == 0.25
    assert all(type(value).__module__ == "builtins" for value in fields.values()), fields
    json.dumps(fields)  # the results' record
    with pytest.raises(ValueError, match=f"{name} = nan: expected a finite number"):
        make(**{name: np.float32("nan")})
