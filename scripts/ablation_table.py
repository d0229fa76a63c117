"""Markdown table of the UVC ablation runs (scripts/ablations.sh): J&F, J, F per variant.

Beside the means, each row gives its J&F difference to the full model paired by object (the same
sequences, the same evaluation) with the standard error of that mean difference over the objects:
it says whether a gap is larger than the spread between sequences. It says nothing about the
spread between training seeds, which one run per variant cannot measure.

    python scripts/ablation_table.py out/ablations > docs/ablations-table.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

VARIANTS = {"full": "UVC (full)", "L": "−L (no localisation)", "O": "−O (no orthogonal terms)",
            "C": "−C (no concentration)", "floor-random-resnet18": "untrained floor: random ResNet-18",
            "floor-lab-pixels": "untrained floor: Lab pixels"}


def paired_difference(results: dict, reference: dict) -> tuple[float, float]:
    """Mean and standard error over objects of J&F(results) - J&F(reference)."""
    diffs = [results["per_object"][o]["J&F-Mean"] - reference["per_object"][o]["J&F-Mean"]
             for o in reference["per_object"]]
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return mean, float("nan")
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs))


def main(root: Path) -> None:
    runs = {key: json.loads((root / key / "results.json").read_text())
            for key in VARIANTS if (root / key / "results.json").exists()}
    full = runs.get("full")
    print("| variant | J&F-Mean | J-Mean | F-Mean | Δ J&F vs full (± s.e. over objects) | training steps |")
    print("|---|---|---|---|---|---|")
    for key, name in VARIANTS.items():
        if key not in runs:
            print(f"| {name} | — | — | — | — | not run |")
            continue
        r = runs[key]
        delta = "—"
        if full is not None and key != "full":
            mean, se = paired_difference(r, full)
            delta = f"{mean:+.4f} ± {se:.4f}"
        steps = r["model"].get("steps", 0) if r["model"].get("trained") else 0
        print(f"| {name} | {r['J&F-Mean']:.4f} | {r['J-Mean']:.4f} | {r['F-Mean']:.4f} | {delta} | {steps} |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="?", type=Path, default=Path("out/ablations"),
                        help="folder of <variant>/results.json (scripts/ablations.sh's OUT; default: out/ablations)")
    return parser


if __name__ == "__main__":
    parser = build_parser()
    args = parser.parse_args()
    if not args.runs.is_dir():  # a mistyped folder gave an all-"not run" table (and "--help" was read as one)
        parser.error(f"{args.runs}: no such folder (bash scripts/ablations.sh writes out/ablations)")
    main(args.runs)
