"""One frame of a DAVIS sequence under UVC's protocol without and with UVC-track, beside the
annotation, as a JPEG for the docs (docs/img/uvc-track-*.jpg):

    .venv/bin/python scripts/uvc_track_still.py 34 docs/img/uvc-track-car-shadow-34-uvc_r18_ft3.jpg \\
        --weights weights/uvc_r18_ft3.safetensors     # 2 x 35 frames of --preset uvc: a few CPU minutes

Left: the masks of `--preset uvc` (what `vidcorr propagate --mask 00000.png --preset uvc` writes);
middle: the same with `--track`, its box drawn as the propagate overlay draws it
(`vidcorr.masks.mask_overlay`); right: the annotation. Each panel is drawn with the overlay video's
style (`vidcorr.viz.overlay_mask`: tint and outline) and captioned, then all are scaled by --scale.
Propagation is causal, so frames 0..N give frame N's masks as a whole-sequence run does. The
sequence and frames come from --root (default: the demo's DAVIS sequence in the package).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vidcorr.cli.common import positive_float
from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset
from vidcorr.io.images import read_image
from vidcorr.io.masks import read_mask
from vidcorr.viz import caption, frame_caption, overlay_mask, side_by_side, write_jpeg_still

ROOT = Path(__file__).resolve().parents[1]
DEMO_ROOT = ROOT / "src" / "vidcorr" / "assets" / "demo" / "davis"
DEFAULT_WEIGHTS = ROOT / "weights" / "uvc_r18_ft3.safetensors"


def panel(frames: list[Path], first_mask: np.ndarray, encoder, track: bool) -> np.ndarray:
    """The last of ``frames`` with the masks propagated to it from the first (`mask_overlay`: a
    UVC-track box too), drawn before the propagator moves on, as the overlay video draws it."""
    from vidcorr.masks import mask_overlay, propagate_mask
    from vidcorr.presets import get_preset
    from vidcorr.track_uvc import mask_propagator

    propagator = mask_propagator(encoder, get_preset("uvc"), track)
    pairs = propagate_mask(propagator, (read_image(path) for path in frames), first_mask)
    frame, labels = next(itertools.islice(pairs, len(frames) - 1, None))
    return mask_overlay(frame, labels, propagator)


def still(root: Path, sequence: str, index: int, weights: Path, features: str | None = None) -> Image.Image:
    """Frame ``index`` (0-based): uvc | uvc + UVC-track with its box | annotation.
    features: an untrained floor ("lab-pixels", "random-resnet18") instead of ``weights``."""
    import vidcorr

    dataset = DavisDataset(root, sequences=[sequence])
    frames, truth = dataset.frames(sequence), {path.stem: path for path in dataset.masks(sequence)}
    if not 1 <= index < len(frames):
        raise InputError(root, f"frame {index} asked for, but {sequence} has frames 1..{len(frames) - 1} "
                               "to propagate to")
    if frames[index].stem not in truth:
        raise InputError(root, f"{sequence} frame {index} has no annotation to draw beside it")
    encoder = vidcorr.encoder_for("uvc", weights=None if features else weights, features=features)
    first_mask = read_mask(truth[frames[0].stem])
    drawn = [caption(panel(frames[:index + 1], first_mask, encoder, track), frame_caption(what, index))
             for what, track in (("uvc", False), ("uvc + UVC-track (box)", True))]
    annotation = overlay_mask(read_image(frames[index]), read_mask(truth[frames[index].stem]))
    return Image.fromarray(side_by_side([*drawn, caption(annotation, "annotation")]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frame", type=int, help="0-based frame number (1 or more)")
    p.add_argument("out", type=Path, help="JPEG to write")
    p.add_argument("--root", type=Path, default=DEMO_ROOT, help="DAVIS root holding the sequence")
    p.add_argument("--sequence", default="car-shadow", help="sequence name (default: car-shadow)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights (default: uvc_r18_ft3)")
    p.add_argument("--features", choices=("lab-pixels", "random-resnet18"), help="an untrained floor instead")
    p.add_argument("--scale", type=positive_float, default=0.5, help="size of the still (default: 0.5, half)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        image = still(args.root, args.sequence, args.frame, args.weights, args.features)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width, height = write_jpeg_still(image, args.out, args.scale)
    print(f"wrote {args.out} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
