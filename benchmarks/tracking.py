"""Per-frame cost of the two box trackers on one real sequence, and where it goes (not a test).

Tracks the first --frames frames of an OTB or VOT sequence with ``localise`` and ``dcf`` in turn,
best of --repeats (interleaved), and splits each tracker's time per frame (the first frame's `init` left out)
into the encoder's share (`vidcorr.propagate.run_encoder`, timed where the trackers call it) and
the rest (crops, affinity or FFTs, peak search). It also counts the crops and pixels each tracker
embeds per frame: the encoder costs about the same per pixel in both, so the ratio of pixels is
most of the ratio of times.

    python benchmarks/tracking.py --threads 1 --json docs/benchmarks/tracking-cpu-crossing-uvc_r18_ft3.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from report import add_timing_arguments, apply_timing_arguments, machine, run_script, write_json  # benchmarks/report.py

REPO = Path(__file__).resolve().parents[1]
TRACKERS = ("localise", "dcf")
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "tracking" / "otb"


class EncoderClock:
    """Wraps ``run_encoder``: total seconds, calls and pixels of the batches it embedded."""

    def __init__(self, run_encoder):
        self.run_encoder = run_encoder
        self.seconds, self.calls, self.crops, self.pixels = 0.0, 0, 0, 0

    def __call__(self, encoder, batch, what="frame(s)"):
        start = time.perf_counter()
        out = self.run_encoder(encoder, batch, what)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.crops += batch.shape[0]
        self.pixels += batch.shape[0] * batch.shape[-2] * batch.shape[-1]
        return out


def run_tracker(tracker: str, encoder, frames, box) -> tuple[float, EncoderClock, tuple]:
    """One run of ``tracker`` over ``frames`` -> (seconds of its updates, their encoder clock, last box)."""
    from vidcorr import track
    from vidcorr.track import build_tracker, tracker_settings

    trk = build_tracker(encoder, tracker_settings(tracker))
    trk.init(frames[0], box)
    clock = EncoderClock(track.run_encoder)
    track.run_encoder = clock  # what `PatchSampler.features` calls
    try:
        start = time.perf_counter()
        for frame in frames[1:]:
            last = trk.update(frame)
        return time.perf_counter() - start, clock, last
    finally:
        track.run_encoder = clock.run_encoder


def summary(seconds: float, clock: EncoderClock, last: tuple, n: int) -> dict:
    """Per-frame figures of a run over ``n`` updated frames."""
    return {"ms_per_frame": round(1000 * seconds / n, 1), "encoder_ms_per_frame": round(1000 * clock.seconds / n, 1),
            "other_ms_per_frame": round(1000 * (seconds - clock.seconds) / n, 1),
            "encoder_calls_per_frame": clock.calls / n, "crops_per_frame": clock.crops / n,
            "pixels_per_frame": round(clock.pixels / n),
            "encoder_us_per_pixel": round(1e6 * clock.seconds / clock.pixels, 3),
            "last_box": [round(float(v), 2) for v in last]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="OTB or VOT root")
    parser.add_argument("--benchmark", choices=("otb", "vot"), default="otb")
    parser.add_argument("--sequence", default="Crossing")
    parser.add_argument("--frames", type=int, default=60, help="frames tracked, the first included")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "uvc_r18_ft3.safetensors")
    parser.add_argument("--features", choices=("lab-pixels", "random-resnet18"), help="a floor instead of --weights")
    add_timing_arguments(parser)
    return parser


def main() -> None:
    args = apply_timing_arguments(build_parser().parse_args())

    import torch

    import vidcorr
    from vidcorr.io.images import read_image
    from vidcorr.io.tracking import load_sequence

    sequence = load_sequence(args.root / args.sequence, args.benchmark)
    frames = [read_image(path) for path in sequence.frame_files[:args.frames]]
    box = tuple(float(v) for v in sequence.boxes[0])
    encoder = (vidcorr.encoder_for(features=args.features) if args.features
               else vidcorr.encoder_for(weights=args.weights))
    best: dict[str, tuple] = {}
    for _ in range(args.repeats):  # interleaved, so that a busy neighbour core slows both alike
        for name in TRACKERS:
            run = run_tracker(name, encoder, frames, box)
            if name not in best or run[0] < best[name][0]:
                best[name] = run
    results = {name: summary(*best[name], len(frames) - 1) for name in TRACKERS}
    for name, r in results.items():
        print(f"{name:9s} {r['ms_per_frame']:7.1f} ms/frame  encoder {r['encoder_ms_per_frame']:7.1f}  "
              f"other {r['other_ms_per_frame']:6.1f}  {r['crops_per_frame']:.0f} crops, "
              f"{r['pixels_per_frame']:,} px/frame, {r['encoder_us_per_pixel']:.3f} us/px")
    ratio = results["dcf"]["ms_per_frame"] / results["localise"]["ms_per_frame"]
    print(f"dcf / localise: {ratio:.2f}x the time, "
          f"{results['dcf']['pixels_per_frame'] / results['localise']['pixels_per_frame']:.2f}x the pixels")
    if args.json:
        write_json(args.json, {
            "command": "python benchmarks/tracking.py " + " ".join(sys.argv[1:]),
            "machine": machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "sequence": f"{args.benchmark}/{sequence.name}", "frames": len(frames),
            "model": args.features or str(args.weights.name), "trackers": results,
            "dcf_over_localise": round(ratio, 2)})


if __name__ == "__main__":
    run_script(main)
