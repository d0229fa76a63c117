"""Feature-extraction speed of one encoder, as trained and as propagation runs it (not a test).

Times the encoder on a batch of real 480p DAVIS frames in four forms, interleaved and best of
--repeats so that a busy neighbour core hurts all of them alike:

* ``as trained``: the module in eval mode, NCHW (what propagation ran before 2026-12-05);
* ``BN folded``: `fold_batchnorm` alone;
* ``channels-last``: the weights in channels-last memory alone;
* ``inference copy``: `inference_encoder`, both (what `Propagator` and the trackers run).

and the colour conversion on its own: the encoder's whole `normalise`, and the CIE conversion proper,
L* alone (`rgb_to_lightness`, what the gray-L input computes) against the full Lab (`rgb_to_lab`,
what it computed before 2026-12-05). Each form's largest difference from ``as trained`` is
recorded too.

    python benchmarks/features.py --threads 1 --json docs/benchmarks/features-cpu-uvc_r18.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from report import add_timing_arguments, apply_timing_arguments, machine, run_script, write_json  # benchmarks/report.py

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "davis2016"


def load_frames(root: Path, sequence: str, count: int) -> torch.Tensor:
    """The first ``count`` 480p frames of ``sequence`` -> (count, 3, H, W) float in [0, 1]."""
    paths = sorted((root / "JPEGImages" / "480p" / sequence).glob("*.jpg"))[:count]
    if len(paths) < count:
        from vidcorr.errors import InputError

        raise InputError(root / "JPEGImages" / "480p" / sequence, f"{len(paths)} frames, need {count}")
    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths]) / 255


def best_ms_per_frame(forms: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Interleave the forms ``repeats`` times; best wall time of each, ms per frame."""
    best = dict.fromkeys(forms, float("inf"))
    with torch.inference_mode():
        for _ in range(repeats):
            for name, run in forms.items():
                start = time.perf_counter()
                run(x)
                best[name] = min(best[name], (time.perf_counter() - start) * 1000 / len(x))
    return best


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sequence", default="car-shadow")
    parser.add_argument("--frames", type=int, default=4, help="frames per encoder call (propagation's batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "uvc_r18.safetensors")
    parser.add_argument("--out-layer", default="layer3")
    add_timing_arguments(parser)
    return parser


def main() -> None:
    args = apply_timing_arguments(build_parser().parse_args())
    from vidcorr.models.colour import rgb_to_lab, rgb_to_lightness
    from vidcorr.models.encoder import inference_encoder
    from vidcorr.models.resnet import fold_batchnorm
    from vidcorr.models.weights import load_encoder

    x = load_frames(args.root, args.sequence, args.frames)
    trained = load_encoder(args.weights, out_layer=args.out_layer)
    folded = copy.deepcopy(trained)
    folded.backbone = fold_batchnorm(trained.backbone)
    forms = {
        "as trained": trained,
        "BN folded": folded,
        "channels-last": copy.deepcopy(trained).to(memory_format=torch.channels_last),
        "inference copy": inference_encoder(trained, "cpu"),
    }
    colour = {"normalise": trained.normalise, "L* alone": rgb_to_lightness, "full Lab": rgb_to_lab}
    ms = best_ms_per_frame(forms, x, args.repeats)
    colour_ms = best_ms_per_frame(colour, x, args.repeats)
    with torch.inference_mode():
        reference = trained(x)
        max_diff = {name: (run(x) - reference).abs().max().item() for name, run in forms.items()}
    result = {
        "command": "python benchmarks/features.py " + " ".join(sys.argv[1:]),
        "weights": str(args.weights.relative_to(REPO) if args.weights.is_relative_to(REPO) else args.weights),
        "out_layer": args.out_layer, "colour_mode": trained.colour_mode,
        "frames": f"{args.sequence} 0..{args.frames - 1}, {x.shape[-2]}x{x.shape[-1]}", "repeats": args.repeats,
        "machine": machine(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "ms_per_frame": ms, "colour_ms_per_frame": colour_ms, "max_abs_diff_from_trained": max_diff,
        "feature_max_abs": reference.abs().max().item(),
    }
    for name, value in ms.items():
        print(f"{name:15s} {value:7.1f} ms/frame   max |diff| {max_diff[name]:.2e}")
    for name, value in colour_ms.items():
        print(f"colour: {name:9s} {value:5.1f} ms/frame")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    run_script(main)
