"""`vidcorr score <task>`: score saved predictions against ground truth, no model involved.

Each task is one sub-parser of `score`, added by a function in `TASK_REGISTRARS` that takes the
`score` sub-parsers object. To add a task (e.g. `score jhmdb`), write `register_<task>(tasks)`
that calls ``tasks.add_parser(...)`` and ``set_defaults(func=...)``, and append it to the list.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def register_davis(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "davis",
        help="DAVIS semi-supervised J&F of a results folder",
        description="Score a DAVIS results folder (RESULTS/<seq>/<frame>.png, palette PNGs of object "
                    "ids) with the official semi-supervised J&F semantics (docs/metrics.md).",
    )
    p.add_argument("--root", required=True, type=Path, help="DAVIS root (Annotations/480p, ImageSets)")
    p.add_argument("--results", required=True, type=Path, help="folder of per-sequence prediction folders")
    p.add_argument("--year", help="ImageSets year folder (default: the only one present)")
    p.add_argument("--split", default="val", help="split file under ImageSets/<year> (default: val)")
    p.add_argument("--sequences", type=_comma_list, help="comma-separated subset of the split's sequences")
    p.add_argument("--out", type=Path, help="results JSON (default: RESULTS/results.json)")
    p.set_defaults(func=run_davis)


def run_davis(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.davis import write_davis_results
    from vidcorr.metrics.davis import format_results_table, score_davis

    results = score_davis(args.root, args.results, year=args.year, split=args.split, sequences=args.sequences,
                          per_frame=True)
    print(format_results_table(results))
    out = args.out if args.out is not None else args.results / "results.json"
    plot = write_davis_results(results, out)
    print(f"wrote {out} and {plot}")
    return 0


def _comma_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated sequence names")
    return names


# One function per `score` task; each adds its sub-parser to the `score` sub-parsers object.
TASK_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [register_davis]


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `score` to the top-level sub-parsers; returns the `score <task>` sub-parsers object."""
    score = subparsers.add_parser("score", help="score saved predictions against ground truth")
    tasks = score.add_subparsers(dest="task", required=True, metavar="TASK")
    for register_task in TASK_REGISTRARS:
        register_task(tasks)
    return tasks
