"""Label-propagation protocols as presets (METHODS.md §5). A number is only reported with its preset.

Each preset is a plain, frozen description of every knob a protocol sets; `vidcorr.propagate` reads
nothing else. The four presets reproduce the official test code of CRW (the field's common
protocol, our default), UVC, TimeCycle and STT/VFS; where the code and the paper disagree the code wins
and the difference is noted here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, get_args

from vidcorr.affinity import TopKConfig
from vidcorr.strict_dict import (
    NON_NEGATIVE_INTEGER,
    POSITIVE_INTEGER,
    one_of,
    or_none,
    python_number,
    refuse_out_of_range,
)

SizeMode = Literal["native", "short_side", "square"]
InitialContext = Literal["empty", "first", "fill", "fill_self"]
LabelDownsample = Literal["nearest", "bilinear"]
OutputResize = Literal["original", "input"]


@dataclass(frozen=True)
class SizePolicy:
    """How frames are resized before feature extraction.

    ``native``: as they are. ``short_side``: short side to ``size`` keeping the aspect ratio; with
    ``long_multiple`` the long side is floored to a multiple of it (UVC: 854 -> 832 at 480).
    ``square``: ``size x size``, aspect ignored (TimeCycle).
    """

    mode: SizeMode = "native"
    size: int = 480
    long_multiple: int | None = None

    def __post_init__(self) -> None:
        # Built in Python: a size of 0 or a negative multiple failed at the first frame inside torch's
        # interpolate, and an unknown mode was read as short_side without a word.
        refuse_out_of_range(self, {"mode": one_of(get_args(SizeMode)), "size": POSITIVE_INTEGER,
                                   "long_multiple": or_none(POSITIVE_INTEGER)})

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the original frame -> (H, W) fed to the encoder."""
        if self.mode == "native":
            return height, width
        if self.mode == "square":
            return self.size, self.size
        short, long = (height, width) if height <= width else (width, height)
        new_long = long * self.size / short
        if self.long_multiple:
            # At least one multiple: flooring a long side shorter than it (a 64x48 clip at short
            # side 40 with UVC's 64) gave a width of 0 and a torch error instead of a mask.
            new_long = max(int(new_long // self.long_multiple), 1) * self.long_multiple
        else:
            new_long = int(round(new_long))
        return (self.size, new_long) if height <= width else (new_long, self.size)


@dataclass(frozen=True)
class PropagationPreset:
    """Every knob of a label-propagation protocol.

    feature_layer: encoder stage used for matching (None = the encoder's own output layer).
    l2_normalise: L2-normalise features before the dot product.
    topk: candidates, temperature, joint/per-frame top-k, normalisation order, local window.
    n_previous: context = first frame + this many preceding frames.
    window_first: apply the local window to the first frame too (STT yes, CRW no).
    initial_context: what the ring buffer holds at the start. ``empty``: nothing (UVC: the context
        grows to first + n); ``first``: frame 0 once (STT/VFS: frame 0 is also a "preceding" frame);
        ``fill``: n copies of frame 0 (CRW pads the video with copies of frame 0 and keeps its
        annotation for the copies); ``fill_self``: as ``fill``, then frame 0 propagated into itself
        from them joins the context as its newest frame (TimeCycle's loop, and UVC's JHMDB branch
        that borrows it, begins with the real frame 0 as its first target, and stores what it
        predicts there in place of a copy's annotation).
    label_downsample: how first-frame labels reach feature resolution (``nearest`` or ``bilinear``).
    normalise_context_labels: min-max normalise each propagated frame's soft labels; they are stored
        as context and decoded for output so (TimeCycle argmaxes the array it stores).
    output_resize: soft labels are upsampled to the ``original`` frame size, or to the encoder
        ``input`` size and then nearest-resized to the original after the argmax (UVC, TimeCycle).
    output_minmax: per-channel min-max normalisation before the argmax (UVC, STT).
    """

    name: str
    size: SizePolicy
    feature_layer: str | None
    l2_normalise: bool
    topk: TopKConfig
    n_previous: int
    window_first: bool
    initial_context: InitialContext
    label_downsample: LabelDownsample
    normalise_context_labels: bool
    output_resize: OutputResize
    output_minmax: bool
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # n_previous as the command line's --context: -1 gave "maxlen must be non-negative" at the
        # first frame, 2.5 "an integer is required". The choices: an unknown one was read as another.
        refuse_out_of_range(self, {
            "n_previous": NON_NEGATIVE_INTEGER,
            "initial_context": one_of(get_args(InitialContext)),
            "label_downsample": one_of(get_args(LabelDownsample)),
            "output_resize": one_of(get_args(OutputResize)),
        })

    def with_overrides(self, **changes) -> "PropagationPreset":
        """A copy with some knobs changed; ``k``, ``temperature``, ``radius`` reach into ``topk``."""
        topk_keys = {"k", "temperature", "radius", "shape", "scope", "normalisation", "tile", "chunk"}
        # A misspelt knob (e.g. topk=5 for k=5) must name the choices, not fail inside dataclasses.
        known = topk_keys | {f.name for f in fields(self)} - {"notes"}
        unknown = sorted(set(changes) - known)
        if unknown:
            # weights / features are the CLI's options; the Python API takes the encoder itself
            hint = ("; the encoder is given as encoder=vidcorr.encoder_for(weights=..., features=...)"
                    if {"weights", "features"} & set(unknown) else "")
            if "context" in unknown:  # the command line's --context N
                hint += f"; --context is n_previous here: n_previous={changes['context']!r}"
            raise ValueError(f"unknown preset knob(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}{hint}")
        if "topk" in changes and not isinstance(changes["topk"], TopKConfig):
            raise ValueError(f"topk={changes['topk']!r}: topk is a whole TopKConfig; give k={changes['topk']!r} "
                             f"for the number of candidates kept")
        changes = {name: python_number(value) for name, value in changes.items()}
        topk_changes = {k: changes.pop(k) for k in list(changes) if k in topk_keys}
        topk = changes.pop("topk", self.topk)
        topk = replace(topk, **topk_changes) if topk_changes else topk
        return replace(self, topk=topk, **changes)


CRW = PropagationPreset(
    name="crw",
    size=SizePolicy("native"),
    feature_layer="layer3",
    l2_normalise=True,
    topk=TopKConfig(k=10, temperature=0.05, scope="joint", normalisation="topk_softmax",
                    radius=12, shape="circle"),
    n_previous=20,
    window_first=False,
    initial_context="fill",
    label_downsample="bilinear",
    normalise_context_labels=False,
    output_resize="original",
    output_minmax=False,
    notes="CRW test.py: native 480p, layer3, L2, tau 0.05 (README; code default 0.07), first + 20 "
          "previous, joint top-10 + softmax, circle r < 12 except on the first frame.",
)

UVC = PropagationPreset(
    name="uvc",
    size=SizePolicy("short_side", 480, long_multiple=64),
    feature_layer=None,
    l2_normalise=False,
    topk=TopKConfig(k=5, temperature=1.0, scope="per_frame", normalisation="softmax_topk"),
    n_previous=7,
    window_first=False,
    initial_context="empty",
    label_downsample="nearest",
    normalise_context_labels=False,
    output_resize="input",
    output_minmax=True,
    notes="UVC test.py: short side 480, long side floored to /64, the encoder's layer4, no L2, "
          "tau 1, first + 7 previous each propagated separately (full softmax, top-5, no renorm), "
          "averaged.",
)

TIMECYCLE = PropagationPreset(
    name="timecycle",
    size=SizePolicy("square", 320),
    feature_layer=None,
    l2_normalise=True,
    topk=TopKConfig(k=5, temperature=1.0 / math.sqrt(512), scope="per_frame",
                    normalisation="softmax_topk"),
    n_previous=7,
    window_first=False,
    initial_context="fill_self",
    label_downsample="bilinear",
    normalise_context_labels=True,
    output_resize="input",
    output_minmax=False,
    notes="TimeCycle test_davis.py: square 320, L2, logits x sqrt(512), 8 copies of frame 0 "
          "padded (frame 0 is the first target), first + 7 previous each with full softmax + top-5, "
          "sum / 8, min-max stored and argmaxed.",
)

STT = PropagationPreset(
    name="stt",
    size=SizePolicy("short_side", 480),
    feature_layer="layer3",
    l2_normalise=True,
    topk=TopKConfig(k=10, temperature=0.07, scope="joint", normalisation="topk_softmax",
                    radius=12, shape="square"),
    n_previous=20,
    window_first=True,
    initial_context="first",
    label_downsample="nearest",
    normalise_context_labels=False,
    output_resize="original",
    output_minmax=True,
    notes="STT/VFS VanillaTracker: short side 480, layer3, L2, tau 0.07, first + 20 previous, "
          "joint top-10 + softmax, square window of side 25 (|d| <= 12) on every frame.",
)

PRESETS: dict[str, PropagationPreset] = {p.name: p for p in (CRW, UVC, TIMECYCLE, STT)}
DEFAULT_PRESET = "crw"
# The frames a native-size protocol was defined on: CRW test.py --cropSize -1 reads DAVIS 480p.
PROTOCOL_SHORT_SIDE = 480


def preset_knobs(preset: PropagationPreset) -> dict:
    """Every knob of a preset as JSON-ready values (results files record exactly what ran, overrides
    included)."""
    knobs = asdict(preset)
    knobs.pop("notes", None)
    return knobs


def get_preset(name: str) -> PropagationPreset:
    """Look a preset up by name, with a clear error listing the choices.

    Names are exact and lower case, as ``--preset`` takes them (argparse choices) and results files
    record them: "CRW" is refused with the name to use, rather than accepted here and refused by
    the command line.
    """
    try:
        return PRESETS[name]
    except KeyError:
        cased = isinstance(name, str) and name.lower() in PRESETS
        hint = f": names are lower case, did you mean {name.lower()!r}?" if cased else ""
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}{hint}") from None


def customised_preset(
    preset: str | PropagationPreset = DEFAULT_PRESET, *, size: int | None = None, **knobs
) -> PropagationPreset:
    """A preset (by name or as given) with a user's changes.

    preset: a name (`get_preset`) or a `PropagationPreset`; anything else, None included, is a
    ValueError: None is not read as the default (leave the argument out for that).
    size: input short side in pixels instead of the preset's size, in the preset's own sizing: a
    preset that floors its long side to a multiple keeps doing so (uvc), a square one stays square
    (timecycle: ``size=400`` is TimeCycle's 400 x 400 protocol, its README's second row), a native
    one keeps the aspect ratio (crw). knobs: `PropagationPreset.with_overrides` keys, e.g. ``k``,
    ``temperature``, ``radius``, ``n_previous``, ``window_first`` (refused where the result has no
    window to apply it to: `check_window_first`).
    """
    if not isinstance(preset, (str, PropagationPreset)):
        # None came back as the "preset" and failed later as "'NoneType' object has no attribute ...".
        raise ValueError(f"preset must be a name ({', '.join(PRESETS)}) or a PropagationPreset, got {preset!r}; "
                         f"leave it out for the default, {DEFAULT_PRESET!r}")
    base = get_preset(preset) if isinstance(preset, str) else preset
    changes = dict(knobs)
    if size is not None and not POSITIVE_INTEGER[1](size):
        # 0 or a float would otherwise fail at the first frame, inside torch's interpolate.
        raise ValueError(f"size must be a positive whole number of pixels (the input short side), got {size!r}")
    if size is not None:
        changes["size"] = resized_policy(base.size, int(size))
    customised = base.with_overrides(**changes) if changes else base
    check_window_first(customised, knobs.get("window_first"))
    return customised


def check_window_first(preset: PropagationPreset, window_first: bool | None,
                       names: tuple[str, str] | None = None) -> None:
    """ValueError for a ``window_first`` given (True or False; None: not given) to a preset without a
    local window (uvc, timecycle: a full softmax over each context frame, METHODS.md §5, unless a
    radius gives them one): it changed nothing, yet was recorded, so a resume without it was refused
    as another run. The one check of `customised_preset` and the command line
    (`vidcorr.cli.common.refuse_windowless_window_first`); names: how the caller spells the setting
    given and the radius, default the keywords (``window_first=True``, ``radius=R``)."""
    if window_first is None or preset.topk.radius is not None:
        return
    given, radius = names or (f"window_first={window_first!r}", "radius=R")
    raise ValueError(f"{given} sets whether the local window covers the first frame, but preset {preset.name} "
                     f"has no window (a full softmax over each context frame); drop it, or give {radius} to "
                     "window the context frames")


def resized_policy(policy: SizePolicy, size: int) -> SizePolicy:
    """The preset's sizing at another size: a square stays square (``--preset timecycle --size 400``
    asks for TimeCycle's 400 x 400 protocol; keeping the aspect ratio gave 712 x 400 on DAVIS 480p, a
    protocol no paper ran), a short side keeps its long-side multiple, native becomes a short side.
    """
    if policy.mode == "square":
        return SizePolicy("square", size)
    multiple = policy.long_multiple if policy.mode == "short_side" else None
    return SizePolicy("short_side", size, multiple)
