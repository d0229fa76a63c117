#!/usr/bin/env python3
"""Check vidcorr's DAVIS J&F against the official-code goldens on all 150 case-sequences.

Regenerates the case tree with ../shared/metric-goldens/make_metric_cases.py (about 1.5 min,
~90 MB, in a temporary folder removed afterwards), or reuses one given with --cases (its pixels
are then re-verified), checks that the tree is the one the goldens were computed on, scores it
with `vidcorr.metrics.davis.score_davis`, and compares every per-frame J and F, every per-object
measure and the global line with davis2016-dev-goldens.json. Exit status 0 when every deviation
is <= --tol. Not a test: its result is recorded in docs/metrics.md.

    .venv/bin/python scripts/check_davis_metric_goldens.py [--cases /tmp/davis-metric-cases]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vidcorr.metrics.davis import GLOBAL_KEYS, score_davis

REPO = Path(__file__).resolve().parents[1]
SERIES = ("J_per_frame", "F_per_frame")


def prepare_cases(generator: Path, davis2016: Path, cases: Path) -> float:
    """Generate the full case tree into `cases`, or verify an existing one; returns seconds taken."""
    start = time.perf_counter()
    if (cases / "cases.json").is_file():
        print(f"reusing {cases}; verifying its pixels against cases.json ...", flush=True)
        subprocess.run([sys.executable, str(generator), "--verify", "--out", str(cases)], check=True)
    else:
        print(f"generating the case tree in {cases} ...", flush=True)
        subprocess.run([sys.executable, str(generator), "--root", str(davis2016), "--seed", "0",
                        "--out", str(cases), "--no-images"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def check_tree_identity(cases: Path, golden: dict) -> None:
    """The regenerated tree must be pixel-identical to the evaluated one (same sha256 digests)."""
    made = {it["sequence"]: (it["gt_sha256"], it["pred_sha256"])
            for it in json.loads((cases / "cases.json").read_text())["items"]}
    evaluated = {it["sequence"]: (it["gt_sha256"], it["pred_sha256"]) for it in golden["case_manifest"]}
    if made != evaluated:
        differing = sorted(k for k in evaluated.keys() | made.keys() if made.get(k) != evaluated.get(k))
        sys.exit(f"case tree differs from the evaluated one in {len(differing)} sequences: {differing[:5]}")
    print(f"case tree matches the goldens' digests ({len(made)} case-sequences)")


def compare(ours: dict, golden: dict) -> dict[str, float]:
    """Max absolute deviation per quantity; also prints how many values are bitwise equal."""
    gold_objects = {o["key"]: o for o in golden["per_object"]}
    if list(ours["per_object"]) != list(gold_objects):
        sys.exit("object keys differ from the goldens' (or are in another order)")
    dev: dict[str, float] = {}
    equal = total = 0
    for key, gold in gold_objects.items():
        mine = ours["per_object"][key]
        for name in (*SERIES, *GLOBAL_KEYS):
            a, b = np.asarray(mine[name], np.float64), np.asarray(gold[name], np.float64)
            if a.shape != b.shape:
                sys.exit(f"{key} {name}: {a.size} values, goldens have {b.size}")
            label = name if name in SERIES else f"per-object {name}"
            dev[label] = max(dev.get(label, 0.0), float(np.abs(a - b).max()))
            equal += int(np.count_nonzero(a == b))
            total += a.size
    for name in GLOBAL_KEYS:
        dev[f"global {name}"] = abs(ours[name] - golden["global"][name])
        equal += ours[name] == golden["global"][name]
        total += 1
    n_frames = sum(len(o["J_per_frame"]) for o in gold_objects.values())
    print(f"compared {len(gold_objects)} objects, {n_frames} scored object-frames; "
          f"{equal}/{total} values bitwise equal")
    return dev


def build_parser() -> argparse.ArgumentParser:
    default_shared = Path(os.environ.get("VIDCORR_SHARED", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=default_shared, help="the shared folder (data, goldens)")
    ap.add_argument("--cases", type=Path, help="case tree to reuse, or to generate and keep")
    ap.add_argument("--tol", type=float, default=1e-6)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    goldens_dir = args.shared / "metric-goldens"
    golden = json.loads((goldens_dir / "davis2016-dev-goldens.json").read_text())
    with tempfile.TemporaryDirectory(prefix="davis-metric-cases-") as tmp:
        cases = args.cases or Path(tmp) / "cases"
        prep_s = prepare_cases(goldens_dir / "make_metric_cases.py", args.shared / "data" / "davis2016", cases)
        check_tree_identity(cases, golden)
        start = time.perf_counter()
        ours = score_davis(cases / "GT", cases / "pred", year="2017", per_frame=True)
        score_s = time.perf_counter() - start
    dev = compare(ours, golden)
    for name, value in dev.items():
        print(f"  max |ours - golden| {name:<22} {value:.3g}")
    worst = max(dev.values())
    print(f"time: cases {prep_s:.1f} s, scoring {score_s:.1f} s "
          f"({platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPU cores)")
    print(f"{'PASS' if worst <= args.tol else 'FAIL'}: worst deviation {worst:.3g} (tolerance {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
