"""One frame of a DAVIS overlay video as a JPEG for the docs (docs/img/overlay-*.jpg).

Draws frame N of RESULTS (a folder of result PNGs, e.g. the demo's out/demo/car-shadow) exactly as
the overlay video of `vidcorr eval davis --overlays` and the demo does (`overlay_frames`: the
propagated masks beside the annotation, captioned with the frame number), scaled by --scale:

    vidcorr demo --weights weights/uvc_r18_ft2.safetensors --out /tmp/demo_ft2     # a few CPU minutes
    .venv/bin/python scripts/overlay_still.py /tmp/demo_ft2/car-shadow 34 \\
        docs/img/overlay-car-shadow-34-uvc_r18_ft2.jpg

The frames and annotations come from --root (default: the demo's DAVIS sequence in the package),
the sequence named by RESULTS' folder name. Draws no boxes (UVC-track's are not saved with masks).
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
from vidcorr.evaluate.davis_overlays import overlay_frames
from vidcorr.io.davis import DavisDataset
from vidcorr.io.images import read_image
from vidcorr.io.masks import read_mask
from vidcorr.viz import write_jpeg_still

DEMO_ROOT = Path(__file__).resolve().parents[1] / "src" / "vidcorr" / "assets" / "demo" / "davis"


def still(root: Path, results: Path, index: int) -> Image.Image:
    """Frame ``index`` (0-based) of the overlay video of RESULTS' sequence."""
    dataset = DavisDataset(root, sequences=[results.name])
    frames = dataset.frames(results.name)
    if not 0 <= index < len(frames):
        raise InputError(results, f"frame {index} asked for, but the sequence has frames 0..{len(frames) - 1}")
    # every frame up to N goes through the video's drawing, so the still is the video's frame N
    pairs = ((read_image(path), read_mask(results / f"{path.stem}.png")) for path in frames[:index + 1])
    drawn = next(itertools.islice(overlay_frames(pairs, [p.stem for p in frames], dataset.masks(results.name)),
                                  index, None))
    return Image.fromarray(np.ascontiguousarray(drawn))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="folder of result PNGs, named as the sequence")
    p.add_argument("frame", type=int, help="0-based frame number")
    p.add_argument("out", type=Path, help="JPEG to write")
    p.add_argument("--root", type=Path, default=DEMO_ROOT, help="DAVIS root holding the sequence")
    # 0, a negative or NaN scale ended in PIL's "height and width must be > 0" traceback
    p.add_argument("--scale", type=positive_float, default=0.5, help="size of the still (default: 0.5, half)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        image = still(args.root, args.results, args.frame)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width, height = write_jpeg_still(image, args.out, args.scale)
    print(f"wrote {args.out} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
