"""Arguments shared by the commands that run a model: which weights, which preset, which device.

``--weights`` loads released weights (default: the project's shipped UVC weights when present);
``--features`` picks an untrained floor instead; ``--encoder MODULE:FACTORY`` any network of one's
own (`vidcorr.models.external`). The preset's feature layer decides how deep our encoders are cut
(CRW/STT propagate with layer3 even when the network was trained through layer4); an external
network is used as its factory returns it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from vidcorr.defaults import DEFAULT_WEIGHTS, FLOOR_NAMES
from vidcorr.strict_dict import NON_NEGATIVE_INTEGER, POSITIVE_INTEGER, POSITIVE_NUMBER, Rule

# Command-line overrides of a preset's knobs: (argparse dest, PropagationPreset.with_overrides key).
KNOB_OVERRIDES = (("topk", "k"), ("temperature", "temperature"), ("radius", "radius"),
                  ("context", "n_previous"), ("window_first", "window_first"))
# Every flag that sets propagation only (argparse dests): --size and the knob overrides.
PROPAGATION_FLAGS = ("size", *(arg for arg, _ in KNOB_OVERRIDES))
# Namespace attribute: the dests of the options with a default that the command line gave (`_NoteGiven`).
GIVEN = "given_options"


class _NoteGiven(argparse.Action):
    """Store an option's value and note in ``args.given_options`` that the command line gave it: an
    option with a default (--batch-size 4) reads the same given or left out."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, {*getattr(namespace, GIVEN, ()), self.dest})


def refuse_propagation_flags(args: argparse.Namespace, advice: str) -> None:
    """`VidcorrError` for a propagation-only flag (`PROPAGATION_FLAGS`, or --batch-size) given
    to a box tracker, which would ignore it; advice: what to use instead."""
    from vidcorr.errors import VidcorrError

    for arg in PROPAGATION_FLAGS:  # one list, so a new knob is refused too
        if getattr(args, arg, None) is not None:
            raise VidcorrError(not_for_tracking(f"--{arg.replace('_', '-')}", advice))
    if "batch_size" in getattr(args, GIVEN, ()):  # not a knob: it changes no result, so no preset label names it
        raise VidcorrError("--batch-size (frames per encoder call) is a propagation setting and does not apply "
                           f"to tracking, which embeds one frame at a time; {advice}")


def not_for_tracking(name: str, advice: str) -> str:
    """Why a propagation setting (a flag, or a keyword of `vidcorr.track_box`) given to a box tracker
    is refused, and what to use instead (advice). One text for the command line and the API."""
    return f"{name} is a propagation setting and does not apply to tracking; {advice}"


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    """Let option values that start with a negative number reach their type function:
    ``--box -30,-20,60,60`` (a box partly left of the frame) and ``--frames -1,10`` failed as
    "expected one argument", since Python 3.11's argparse takes only "-1" or "-1.5" for a negative
    number and anything else after "-" for an option. Newer argparse's looser test, used here, is
    safe on a parser none of whose options looks like a negative number."""
    parser._negative_number_matcher = re.compile(r"-\.?\d")


def comma_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return names


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a size, a top-k or a batch of 0 or less has no meaning, and
    reached the model as a raw torch error or, for --topk 0, as silently empty masks)."""
    return _checked(int(text), text, POSITIVE_INTEGER)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (--context 0 is the first frame alone)."""
    return _checked(int(text), text, NON_NEGATIVE_INTEGER)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0, always a float (propagate's --fps)."""
    return _checked(float(text), text, POSITIVE_NUMBER)


def positive_number(text: str) -> int | float:
    """argparse type: a finite number > 0, kept in the type it was typed in ("6" -> 6, "4.5" -> 4.5):
    --radius 6 was recorded as 6.0 in the run record and results beside the preset's own radius 12, so
    the record no longer read as the command line (--temperature 1 as 1.0 alike). A temperature of 0
    divides by zero and a negative one prefers the least similar pixels: refused here."""
    try:
        value: int | float = int(text)
    except ValueError:
        value = float(text)
    return _checked(value, text, POSITIVE_NUMBER)


def _checked(value: Any, text: str, rule: Rule) -> Any:
    """``value`` (parsed from ``text``) if it keeps ``rule``: the rules `TopKConfig` and the preset
    apply to the same knobs given in Python (`vidcorr.strict_dict`)."""
    what, ok = rule
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def device_name(text: str) -> str:
    """argparse type: a torch device name ("cpu", "cuda", "cuda:1", "mps", ...; `vidcorr.runtime.known_device`).
    One torch does not know is mistyped, a usage error; whether this machine has it is `check_device`'s."""
    if text == "cpu":
        return text  # the default: no need to import torch while parsing
    from vidcorr.runtime import known_device

    try:
        known_device(text, cli_device)
    except ValueError as error:
        # argparse puts "argument --device: " before it: "--device meta holds ..." said the flag twice
        raise argparse.ArgumentTypeError(str(error).removeprefix(cli_device(""))) from None
    return text


def check_device(device: str | None) -> None:
    """`VidcorrError` unless this machine has ``device`` (a `device_name`; None: the command's default).

    Checked after parsing, before the command reads or writes anything: the command line is right,
    the machine lacks the device (--device cuda without a GPU), so it is bad input, one line and exit 2
    (README, "Exit status"); as an argparse type it came under the usage lines of a mistyped option."""
    if device is None or device == "cpu":
        return
    from vidcorr.errors import VidcorrError
    from vidcorr.runtime import checked_device

    try:
        checked_device(device, cli_device)
    except ValueError as error:
        raise VidcorrError(str(error)) from None


def cli_device(name: str) -> str:
    """How the command line's refusals name a device setting: ``--device cuda``, the option a user
    types (the API's ``device='cpu'`` advice read as Python at a shell prompt)."""
    return f"--device {name}"


# JHMDB's and VIP's preset variants resize every frame to a square (docs/keypoints.md, docs/vip.md).
SQUARE_SIZE_HELP = "side of the square input in pixels (overrides the JHMDB / VIP variant's size)"


def add_model_arguments(parser: argparse.ArgumentParser, *, propagation_knobs: bool = True,
                        size_help: str = ("input short side in pixels (overrides the preset's size; timecycle stays "
                                          "square: --size 400 is its 400x400 protocol)"),
                        tracking: bool = False) -> None:
    """--weights/--features, --preset, --size (what it sets: size_help), --device and, unless
    propagation_knobs is False (a command that only embeds frames), the preset's matching overrides
    and --batch-size. tracking: a box tracker's command, which uses only the preset's feature layer:
    --size and the knobs are still parsed (so `refuse_propagation_flags` can name them) but left out
    of --help."""
    from vidcorr.presets import DEFAULT_PRESET, PRESETS

    def shown(text: str) -> str:
        return argparse.SUPPRESS if tracking else text

    model = parser.add_mutually_exclusive_group()
    model.add_argument("--weights", type=Path,
                       help=f"released weights (.safetensors + .json sidecar); default: {DEFAULT_WEIGHTS.name} "
                            "shipped in weights/")
    model.add_argument("--features", choices=FLOOR_NAMES,
                       help="use an untrained floor instead of trained weights")
    model.add_argument("--encoder", metavar="MODULE:FACTORY",
                       help="a network of your own: FACTORY() in MODULE (a .py file or an importable module) "
                            "returns an nn.Module mapping RGB (B, 3, H, W) in [0, 1] to features (B, C, h, w) "
                            "(docs/propagation.md, 'Evaluating a network of your own')")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help=(f"whose feature layer the tracker uses (default: {DEFAULT_PRESET}; "
                              "docs/tracking.md)") if tracking else
                             f"propagation protocol (default: {DEFAULT_PRESET}; see docs/propagation.md)")
    parser.add_argument("--size", type=positive_int, help=shown(size_help))
    parser.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda, cuda:1, ... (default: cpu)")
    if not propagation_knobs:
        return
    parser.add_argument("--topk", type=positive_int, help=shown("override the preset's top-k"))
    parser.add_argument("--temperature", type=positive_number,
                        help=shown("override the preset's softmax temperature"))
    parser.add_argument("--radius", type=positive_number,
                        help=shown("override the preset's local window radius (cells)"))
    parser.add_argument("--context", type=non_negative_int,
                        help=shown("override the number of preceding context frames"))
    parser.add_argument("--window-first", action=argparse.BooleanOptionalAction,
                        help=shown("override whether the local window applies to the first frame too "
                                   "(crw: no, stt: yes; windowing it is cheaper but loses far-moved objects)"))
    parser.add_argument("--batch-size", type=positive_int, default=4, action=_NoteGiven,
                        help=shown("frames per encoder call (default: 4)"))


def resolve_preset(args: argparse.Namespace):
    """The preset named by --preset with the command-line overrides applied."""
    from vidcorr.presets import customised_preset

    knobs = {knob: getattr(args, arg) for arg, knob in KNOB_OVERRIDES if getattr(args, arg, None) is not None}
    # window_first last: customised_preset would refuse it in the API's words, not the flags'
    window_first = knobs.pop("window_first", None)
    preset = customised_preset(args.preset, size=args.size, **knobs)
    refuse_windowless_window_first(args, preset)
    return preset if window_first is None else preset.with_overrides(window_first=window_first)


def refuse_windowless_window_first(args: argparse.Namespace, preset) -> None:
    """`VidcorrError` for --[no-]window-first with a preset that has no local window and no --radius
    to give it one: `vidcorr.presets.check_window_first`, in the flags' words."""
    from vidcorr.errors import VidcorrError
    from vidcorr.presets import check_window_first

    given = getattr(args, "window_first", None)
    try:
        check_window_first(preset, given, ("--window-first" if given else "--no-window-first", "--radius R"))
    except ValueError as error:
        raise VidcorrError(str(error)) from None


def changed_knobs(args: argparse.Namespace) -> list[str]:
    """The propagation flags (`PROPAGATION_FLAGS`) the command line gave, as given: ["--size 240",
    "--context 5", "--no-window-first"]."""
    given = []
    for arg in PROPAGATION_FLAGS:
        value = getattr(args, arg, None)
        flag = f"--{arg.replace('_', '-')}"
        if isinstance(value, bool):
            given.append(flag if value else flag.replace("--", "--no-", 1))
        elif value is not None:
            given.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return given


def preset_label(name: str, args: argparse.Namespace) -> str:
    """How a command's summary names the preset it ran: "crw", or "crw (--size 240)" with the knobs
    the command line changed (`changed_knobs`). One function, so that no command reports a changed
    preset under its bare name (the demo's J&F at --size 240 read like the README's full-size one)."""
    changed = changed_knobs(args)
    return f"{name} ({' '.join(changed)})" if changed else name


def load_model(args: argparse.Namespace, preset, *, fallback_to_floor: bool = False):
    """-> (encoder, info dict) for --encoder, --features, --weights, or the default weights
    (`api.resolve_encoder`)."""
    from vidcorr.api import resolve_encoder

    if getattr(args, "encoder", None) is not None:
        from vidcorr.evaluate.runs import resolved_encoder_spec
        from vidcorr.models.external import load_external_encoder

        encoder, info = load_external_encoder(args.encoder)  # its errors name the file as typed
        # recorded by its absolute path: a resume from another folder names the same file (`resolved_encoder_spec`)
        return encoder, {**info, "encoder": resolved_encoder_spec(args.encoder)}
    return resolve_encoder(preset, args.weights, args.features, fallback_to_floor=fallback_to_floor)


def model_label(info: dict[str, Any], *, loud: bool = False) -> str:
    """How a command's output names the model `load_model` described with ``info``: "your encoder
    MODULE:FACTORY", "trained weights PATH" or "NAME (untrained floor)". One function, so that the
    commands cannot disagree (propagate and match called an --encoder "None (untrained floor)").
    loud: a floor in capitals, with why it was used (the demo, which promises the best weights)."""
    if "encoder" in info:
        return f"your encoder {info['encoder']}"
    if info.get("trained"):
        return f"trained weights {info['weights']}"
    if loud:
        return f"UNTRAINED FLOOR '{info['features']}' ({info.get('note', 'chosen with --features')})"
    return f"{info['features']} (untrained floor)"


def model_line(info: dict[str, Any]) -> str:
    """The eval commands' "model: LABEL {info as JSON}" (`model_label`, then everything recorded)."""
    return f"model: {model_label(info)} {json.dumps(info)}"


MIN_GRID_SIDE = 8  # feature cells on the short side below which matching is mostly guesswork


def warn_if_coarse_grid(path: Path | str, grid_hw: tuple[int, int] | None, input_hw: tuple[int, int] | None,
                        option: str = "--size ", stride: float | None = None) -> None:
    """A --size so small that the feature grid is a few cells across gave blocky, mostly wrong
    masks and matches without a word (--size 10: 2 cells high): say so, and which --size gives
    enough. grid_hw: feature cells (h, w); input_hw: the encoder's input pixels (h, w); either None
    (a box tracker's propagator embeds no whole frame): no word. option: how the size is given
    (the API's ``"size="``). stride: the encoder's, where known (`warn_if_coarse_propagator`); else
    input pixels per cell, which a padded network's rounded-up grid makes too small on such a frame."""
    if grid_hw is None or input_hw is None or min(grid_hw) >= MIN_GRID_SIDE:
        return
    stride = stride or min(input_hw) / min(grid_hw)  # input pixels per cell, whatever the encoder
    logging.getLogger(__name__).warning(
        "%s: the feature grid is only %dx%d cells (the input %dx%d): each cell covers a large part of the "
        "frame, so the results are coarse and mostly wrong. %s%d or more gives at least %d cells on "
        "the short side.", path, grid_hw[1], grid_hw[0], input_hw[1], input_hw[0],
        option, math.ceil(MIN_GRID_SIDE * stride), MIN_GRID_SIDE)


def warn_if_coarse_propagator(path: Path | str, propagator: Any, option: str = "--size ",
                              grid_hw: tuple[int, int] | None = None, input_hw: tuple[int, int] | None = None) -> None:
    """`warn_if_coarse_grid` for a `vidcorr.propagate.Propagator`, counting with its encoder's own
    stride (measured only when the grid is coarse): a 17 x 9 frame on a padded stride-8 network is a
    rounded-up 3 x 2 grid, 4.5 px a cell, and the size=36 that suggested gave 5 cells and the same
    warning again. grid_hw, input_hw: default the propagator's first frame's (it has embedded it);
    `match` gives its frame A's."""
    grid_hw = grid_hw or propagator.feature_hw
    if grid_hw is None or min(grid_hw) >= MIN_GRID_SIDE:
        return
    from vidcorr.models.external import encoder_stride  # torch: not at the command line's start-up

    stride = encoder_stride(propagator.encoder, propagator.device)
    warn_if_coarse_grid(path, grid_hw, input_hw or propagator.input_hw, option, stride=stride)
