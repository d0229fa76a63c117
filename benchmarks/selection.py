"""The softmax-then-top-k selection of UVC's protocol, on real features (not a test).

`uvc` and `timecycle` normalise each context frame's scores with a softmax over every reference
pixel and then keep the top-k. Per context frame this times, on two real frames embedded as the
preset says, interleaved and best of --repeats:

* ``matmul``: the (N2, N1) scores alone, in chunks of 1024 target rows as `dense_topk` computes them;
* ``log_softmax + topk``: the scores, ``log_softmax`` written out in full, then the top-k
  (what `dense_topk` did before 2026-12-06);
* ``topk_log_softmax_``: the scores, the top-k of the logits and one in-place exp pass for the
  log-sum-exp (`vidcorr.affinity.topk_log_softmax_`, what it does now);

and checks that both selections pick the same reference pixels.

    python benchmarks/selection.py --threads 1 --json docs/benchmarks/selection-cpu-uvc-uvc_r18_ft3.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from report import add_timing_arguments, apply_timing_arguments, machine, run_script, write_json  # benchmarks/report.py

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "davis2016"
CHUNK = 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sequence", default="car-shadow")
    parser.add_argument("--frames", default="0,10", help="reference,target frame numbers")
    parser.add_argument("--preset", default="uvc")
    parser.add_argument("--size", type=int, help="input short side (default: the preset's)")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "uvc_r18_ft3.safetensors")
    parser.add_argument("--repeats", type=int, default=5)
    add_timing_arguments(parser)
    return parser


def main() -> None:
    args = apply_timing_arguments(build_parser().parse_args())
    from vidcorr.affinity import topk_log_softmax_
    from vidcorr.api import resolve_encoder
    from vidcorr.presets import customised_preset
    from vidcorr.propagate import Propagator

    preset = customised_preset(args.preset, size=args.size)
    encoder, _ = resolve_encoder(preset, args.weights)
    folder = args.root / "JPEGImages" / "480p" / args.sequence
    frames = [np.array(Image.open(folder / f"{int(i):05d}.jpg").convert("RGB")) for i in args.frames.split(",")]
    features = Propagator(encoder, preset).embed(frames)
    key, query = features[0].flatten(1), features[1].flatten(1) / preset.topk.temperature
    k = preset.topk.k

    def scores(start: int) -> torch.Tensor:
        return query[:, start:start + CHUNK].T @ key

    def matmul() -> None:
        for start in range(0, query.shape[1], CHUNK):
            scores(start)

    def log_softmax_then_topk() -> list[torch.Tensor]:
        return [scores(start).log_softmax(dim=1).topk(k, dim=1)[1] for start in range(0, query.shape[1], CHUNK)]

    def topk_then_log_sum_exp() -> list[torch.Tensor]:
        return [topk_log_softmax_(scores(start), k)[1] for start in range(0, query.shape[1], CHUNK)]

    forms = {"matmul": matmul, "log_softmax + topk": log_softmax_then_topk,
             "topk_log_softmax_": topk_then_log_sum_exp}
    best = dict.fromkeys(forms, float("inf"))
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, run in forms.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], (time.perf_counter() - start) * 1000)
        same = all(torch.equal(a, b) for a, b in zip(log_softmax_then_topk(), topk_then_log_sum_exp()))
    result = {
        "command": "python benchmarks/selection.py " + " ".join(sys.argv[1:]),
        "preset": preset.name, "weights": str(args.weights.relative_to(REPO) if args.weights.is_relative_to(REPO)
                                              else args.weights),
        "frames": f"{args.sequence} {args.frames}", "features": list(features.shape[1:]), "k": k,
        "repeats": args.repeats, "machine": machine(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ms_per_context_frame": best, "same_selection": same,
    }
    for name, value in best.items():
        print(f"{name:20s} {value:7.1f} ms per context frame")
    print(f"same reference pixels selected: {same}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    run_script(main)
