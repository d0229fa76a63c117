"""Markdown table of the UVC ablation runs (scripts/ablations.sh): J&F, J, F per variant."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = {"full": "UVC (full)", "L": "−L (no localisation)", "O": "−O (no orthogonal terms)",
            "C": "−C (no concentration)", "floor-random-resnet18": "untrained floor: random ResNet-18",
            "floor-lab-pixels": "untrained floor: Lab pixels"}


def main(root: Path) -> None:
    print("| variant | J&F-Mean | J-Mean | F-Mean | training steps |")
    print("|---|---|---|---|---|")
    for key, name in VARIANTS.items():
        results = root / key / "results.json"
        if not results.exists():
            print(f"| {name} | — | — | — | not run |")
            continue
        r = json.loads(results.read_text())
        steps = 0
        if "weights" in r["model"]:
            sidecar = Path(r["model"]["weights"]).with_suffix(".json")
            steps = json.loads(sidecar.read_text())["meta"]["steps"] if sidecar.exists() else "?"
        print(f"| {name} | {r['J&F-Mean']:.4f} | {r['J-Mean']:.4f} | {r['F-Mean']:.4f} | {steps} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/ablations"))
