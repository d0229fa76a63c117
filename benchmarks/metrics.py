"""Time the DAVIS J and F of one 480x854 frame (not a test; docs/metrics.md, "How F is computed").

On blackswan's first annotation, best of --repeats (each the mean of --number calls):

* ``F shift`` / ``J shift``: against the same mask shifted 6 px to the right;
* ``F full``: against a prediction that covers the whole frame (one boundary: the frame's edge);
* ``F noise``: against 5 % random pixels (seed 0), a boundary at almost every predicted pixel.

    python benchmarks/metrics.py --json docs/benchmarks/metrics-cpu-epyc.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from pathlib import Path

import numpy as np

from report import machine, run_script, write_json  # benchmarks/report.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "davis2016"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    sys.path.insert(0, str(REPO / "src"))  # time the working tree, installed or not
    from vidcorr.io.masks import read_mask
    from vidcorr.metrics.davis import boundary_f, jaccard

    annotation = args.root / "Annotations" / "480p" / args.sequence / "00000.png"
    gt = read_mask(annotation) == 1
    shifted = np.roll(gt, 6, axis=1)
    noise = np.random.default_rng(0).random(gt.shape) < 0.05
    cases = {
        "F shift": lambda: boundary_f(gt, shifted),
        "J shift": lambda: jaccard(gt, shifted),
        "F full": lambda: boundary_f(gt, np.ones_like(gt)),
        "F noise": lambda: boundary_f(gt, noise),
    }
    ms = {name: 1000 * min(timeit.repeat(run, number=args.number, repeat=args.repeats)) / args.number
          for name, run in cases.items()}
    for name, value in ms.items():
        print(f"{name:8} {value:7.2f} ms")
    if args.json:
        # the annotation by sequence and file, not this machine's path to the data
        # the metric is numpy's arithmetic: its version, not torch's, says what ran
        write_json(args.json, {"annotation": f"{args.sequence}/{annotation.name}", "shape": list(gt.shape), "ms": ms,
                               "number": args.number, "repeats": args.repeats, "machine": machine(),
                               "numpy": np.__version__, "python": platform.python_version()})


if __name__ == "__main__":
    run_script(main)
