"""Arguments shared by the commands that run a model: which weights, which preset, which device.

``--weights`` loads released weights (default: the project's shipped UVC weights when present);
``--features`` picks an untrained floor instead. The preset's feature layer decides how deep the
encoder is cut (CRW/STT propagate with layer3 even when the network was trained through layer4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidcorr.errors import VidcorrError

REPO_ROOT = Path(__file__).resolve().parents[3]
# The best shipped weights on DAVIS-2016 val with the crw preset and on the demo sequence
# (weights/MODEL_CARD.md): UVC, uvc_r18 fine-tuned in two rounds of 500 joint steps (-> uvc_r18_ft -> ft2).
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "uvc_r18_ft2.safetensors"
FLOOR_NAMES = ("lab-pixels", "random-resnet18")
# The better untrained floor on ../shared/data/davis2016 at 480p with the crw preset
# (docs/results.md); `vidcorr demo` falls back to it when the default weights are missing.
BEST_FLOOR = "random-resnet18"
# Command-line overrides of a preset's knobs: (argparse dest, PropagationPreset.with_overrides key).
KNOB_OVERRIDES = (("topk", "k"), ("temperature", "temperature"), ("radius", "radius"),
                  ("context", "n_previous"), ("window_first", "window_first"))


def comma_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return names


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--weights/--features, --preset and its overrides, --device, --batch-size."""
    from vidcorr.presets import DEFAULT_PRESET, PRESETS

    model = parser.add_mutually_exclusive_group()
    model.add_argument("--weights", type=Path,
                       help=f"released weights (.safetensors + .json sidecar); default: {DEFAULT_WEIGHTS.name} "
                            "shipped in weights/")
    model.add_argument("--features", choices=FLOOR_NAMES,
                       help="use an untrained floor instead of trained weights")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help=f"propagation protocol (default: {DEFAULT_PRESET}; see docs/propagation.md)")
    parser.add_argument("--size", type=int, help="input short side in pixels (overrides the preset's size)")
    parser.add_argument("--topk", type=int, help="override the preset's top-k")
    parser.add_argument("--temperature", type=float, help="override the preset's softmax temperature")
    parser.add_argument("--radius", type=float, help="override the preset's local window radius (cells)")
    parser.add_argument("--context", type=int, help="override the number of preceding context frames")
    parser.add_argument("--window-first", action=argparse.BooleanOptionalAction,
                        help="override whether the local window applies to the first frame too "
                             "(crw: no, stt: yes; windowing it is cheaper but loses far-moved objects)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per encoder call (default: 4)")


def resolve_preset(args: argparse.Namespace):
    """The preset named by --preset with the command-line overrides applied."""
    from vidcorr.presets import SizePolicy, get_preset

    preset = get_preset(args.preset)
    changes = {}
    if args.size is not None:
        multiple = preset.size.long_multiple if preset.size.mode == "short_side" else None
        changes["size"] = SizePolicy("short_side", args.size, multiple)
    for arg, knob in KNOB_OVERRIDES:
        if getattr(args, arg) is not None:
            changes[knob] = getattr(args, arg)
    return preset.with_overrides(**changes) if changes else preset


def load_model(args: argparse.Namespace, preset, *, fallback_to_floor: bool = False):
    """-> (encoder, info dict) for --features, --weights, or the default weights.

    fallback_to_floor: when no weights are given and none are shipped, use `BEST_FLOOR` (the demo)
    instead of failing.
    """
    from vidcorr.models import build_encoder, read_weights
    from vidcorr.models.weights import encoder_from_weights

    if args.features:
        return build_encoder(args.features), {"features": args.features, "trained": False}
    path = args.weights or DEFAULT_WEIGHTS
    if args.weights is None and not path.exists():
        if fallback_to_floor:
            return build_encoder(BEST_FLOOR), {"features": BEST_FLOOR, "trained": False,
                                               "note": f"untrained floor: no trained weights at {path}"}
        raise VidcorrError(f"no trained weights at {path}; pass --weights PATH or --features {'|'.join(FLOOR_NAMES)}")
    weights = read_weights(path)
    encoder = encoder_from_weights(weights, path, out_layer=_layer_for(weights.config.get("out_layer"), preset.feature_layer))
    info = {"weights": str(path), "sha256": weights.sha256, "trained": True, "out_layer": encoder_out_layer(encoder)}
    info.update({k: weights.meta[k] for k in ("name", "steps", "recipe") if k in weights.meta})
    return encoder, info


def _layer_for(trained: str | None, wanted: str | None) -> str | None:
    """The preset's layer, unless the weights end earlier (then use what they have)."""
    from vidcorr.models.resnet import STAGES

    if wanted is None or trained not in STAGES or STAGES.index(trained) <= STAGES.index(wanted):
        return None
    return wanted


def encoder_out_layer(encoder) -> str | None:
    config = getattr(encoder, "config", None)
    return getattr(config, "out_layer", None)
