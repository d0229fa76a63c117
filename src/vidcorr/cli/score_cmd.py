"""`vidcorr score <task>`: score saved predictions against ground truth, no model involved.

Each task is one sub-parser of `score`, added by a function in `TASK_REGISTRARS` that takes the
`score` sub-parsers object. To add a task, write `register_<task>(tasks)` that calls
``tasks.add_parser(...)`` and ``set_defaults(func=...)``, and append it to the list. The scoring
itself lives in the task's `vidcorr.evaluate` module, shared with `eval`, so both give the same
numbers on the same saved predictions.

Default output of every task: ``RESULTS/score.json``, not ``results.json``: the results folder is
usually an `eval` output, whose results.json also holds what only the run knew (model, preset,
timing) and must not be overwritten by a score of the same predictions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from vidcorr.errors import InputError


def register_davis(tasks: argparse._SubParsersAction) -> None:
    from vidcorr.cli import eval_davis

    p = tasks.add_parser(
        "davis",
        help="DAVIS semi-supervised J&F of a results folder",
        description="Score a DAVIS results folder (RESULTS/<seq>/<frame>.png, palette PNGs of object "
                    "ids) with the official semi-supervised J&F semantics (docs/metrics.md).",
    )
    p.add_argument("--root", required=True, type=Path, help="DAVIS root (Annotations/480p, ImageSets)")
    p.add_argument("--results", required=True, type=Path, help="folder of per-sequence prediction folders")
    eval_davis.add_davis_data_arguments(p)
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="score only the first N frames of each sequence, as if it ended there (masks of `propagate "
                        "--max-frames N`; N >= 3)")
    p.add_argument("--out", type=Path,
                   help="results JSON (default: RESULTS/score.json, its plot RESULTS/score.j_per_frame.png)")
    p.set_defaults(func=run_davis)


def run_davis(args: argparse.Namespace) -> int:
    from vidcorr.errors import VidcorrError
    from vidcorr.evaluate.davis import write_davis_results
    from vidcorr.metrics.davis import check_max_frames, format_results_table, score_davis

    try:
        check_max_frames(args.max_frames, "--max-frames")
    except ValueError as error:
        raise VidcorrError(str(error)) from None
    out = _score_json(args)
    results = _scored(args, "davis", lambda: score_davis(
        args.root, args.results, year=args.year, split=args.split, sequences=args.sequences,
        resolution=args.resolution, per_frame=True, max_frames=args.max_frames))
    print(format_results_table(results))
    plot = write_davis_results(results, out)
    print(f"wrote {out} and {plot}")
    return 0


def register_tracking(tasks: argparse._SubParsersAction) -> None:
    from vidcorr.cli import eval_tracking

    for benchmark in ("otb", "vot"):
        p = tasks.add_parser(
            benchmark, help=f"{benchmark.upper()} success AUC / precision@20px of saved boxes"
                            + (" (or VOT baseline accuracy / failures of saved trajectories)"
                               if benchmark == "vot" else ""),
            description=f"Score RESULTS/<seq>.txt (one 1-based x,y,w,h box per frame, OTB results format, as "
                        f"`vidcorr eval {benchmark}` writes them) against every sequence under --root with "
                        "OTB's one-pass evaluation (docs/tracking.md)."
                        + (" With --protocol vot-baseline: RESULTS/baseline/<seq>/<seq>_001.txt (VOT toolkit "
                           "trajectories, as `eval vot --protocol vot-baseline` writes them), scored with VOT's "
                           "accuracy and failures." if benchmark == "vot" else ""),
        )
        eval_tracking.add_sequence_arguments(
            p, benchmark, max_frames_help="score only the first N frames of each sequence (files of `eval "
                                          "--max-frames N`)",
            protocol_help="ope (default): <seq>.txt boxes; vot-baseline: baseline/<seq>/<seq>_001.txt")
        baseline_files = " (with --protocol vot-baseline: of baseline/<seq>/<seq>_001.txt)"
        p.add_argument("--results", required=True, type=Path,
                       help="folder of <seq>.txt box files" + (baseline_files if benchmark == "vot" else ""))
        p.add_argument("--out", type=Path, help="results JSON (default: RESULTS/score.json)")
        p.set_defaults(func=run_tracking, benchmark=benchmark)


def run_tracking(args: argparse.Namespace) -> int:
    from vidcorr.cli.eval_tracking import check_max_frames
    from vidcorr.evaluate.tracking_results import format_results_table, score_tracking, write_tracking_results

    check_max_frames(args)
    out = _score_json(args)
    results = _scored(args, args.benchmark, lambda: score_tracking(
        args.root, args.results, benchmark=args.benchmark, protocol=args.protocol, sequences=args.sequences,
        max_frames=args.max_frames, eao_interval=args.eao_interval))
    print(format_results_table(results))
    plot = write_tracking_results(results, out)
    print(f"wrote {out} and {plot}")
    return 0


def register_vip(tasks: argparse._SubParsersAction) -> None:
    from vidcorr.cli import eval_vip

    p = tasks.add_parser(
        "vip", help="VIP part mIoU (and AP_part) of saved predictions",
        description="Score RESULTS/<video>/<frame>.png (predicted part-class maps, palette or grayscale PNGs "
                    "of class ids, as `vidcorr eval vip` writes them) with the same mIoU, and the part-instance "
                    "predictions `eval vip` saves in RESULTS/<video>/instances/ with the same AP_part "
                    "(docs/vip.md). Without them (another tool's or an older vidcorr's results) AP_part is "
                    "not scored, and the output says so.",
    )
    eval_vip.add_dataset_arguments(p)
    p.add_argument("--results", required=True, type=Path, help="folder of per-video prediction folders")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="score only the first N frames of each video (class maps of `propagate --max-frames N`)")
    p.add_argument("--out", type=Path, help="results JSON (default: RESULTS/score.json)")
    p.set_defaults(func=run_vip)


def run_vip(args: argparse.Namespace) -> int:
    from vidcorr.cli.eval_tracking import check_max_frames
    from vidcorr.cli.eval_vip import dataset_from
    from vidcorr.evaluate.vip_results import format_vip_table, score_vip

    check_max_frames(args)
    out = _score_json(args)
    results = _scored(args, "vip", lambda: score_vip(dataset_from(args), args.results,
                                                     skip_first_frame=args.skip_first_frame,
                                                     max_frames=args.max_frames))
    table = format_vip_table(results)
    if results["protocol"]["instances"].startswith("not scored"):
        table += f"\nAP_part {results['protocol']['instances']}"
    return _report(out, results, table + _first_frame_note(args.results, args.skip_first_frame,
                                                           "--skip-first-frame", flag_skips=True))


def register_jhmdb(tasks: argparse._SubParsersAction) -> None:
    from vidcorr.cli import eval_jhmdb

    p = tasks.add_parser(
        "jhmdb", help="JHMDB PCK@0.1 / PCK@0.2 of saved keypoints",
        description="Score RESULTS/<class>/<video>.json (per-frame joint coordinates in the format `vidcorr "
                    "eval jhmdb` writes to OUT/predictions/, or the keypoints.json `vidcorr propagate "
                    "--keypoints` writes for the video, its names the 15 JHMDB joints; docs/keypoints.md) "
                    "with the same PCK.",
    )
    eval_jhmdb.add_dataset_arguments(p)
    p.add_argument("--results", required=True, type=Path,
                   help="folder of <class>/<video>.json (eval's OUT/predictions, or propagate's keypoints.json "
                        "copied there)")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="score only the first N frames of each video (keypoints.json of `propagate --max-frames N`)")
    p.add_argument("--out", type=Path, help="results JSON (default: RESULTS/score.json)")
    p.set_defaults(func=run_jhmdb)


def run_jhmdb(args: argparse.Namespace) -> int:
    from vidcorr.cli.eval_jhmdb import dataset_from
    from vidcorr.cli.eval_tracking import check_max_frames
    from vidcorr.evaluate.jhmdb import format_pck_table, score_jhmdb

    check_max_frames(args)
    out = _score_json(args)
    results = _scored(args, "jhmdb", lambda: score_jhmdb(dataset_from(args), args.results,
                                                         skip_first_frame=not args.include_first_frame,
                                                         max_frames=args.max_frames))
    return _report(out, results, format_pck_table(results) + _first_frame_note(
        args.results, not args.include_first_frame, "--include-first-frame", flag_skips=False))


def _first_frame_note(results: Path, skip: bool, flag: str, *, flag_skips: bool) -> str:
    """A line under the table when the `eval` run that wrote ``results`` scored frame 0 otherwise
    (its results.json's ``skip_first_frame``): the scores then differ from eval's, as documented,
    and said nothing of it. ``flag`` is the option that changes the rule (``flag_skips``: it skips
    frame 0); "" when the rules agree or no eval record is there."""
    folder, record = _eval_record(results)
    if record is None or not isinstance(record.get("skip_first_frame"), bool) or record["skip_first_frame"] == skip:
        return ""
    if record["skip_first_frame"] == flag_skips:
        return (f"\nnote: the eval run in {folder} was scored with {flag}, these scores without it: "
                f"add {flag} for its numbers")
    return f"\nnote: the eval run in {folder} was scored without {flag}, these scores with it: drop it for its numbers"


def _scored(args: argparse.Namespace, task: str, score: Callable[[], dict]) -> dict:
    """``score()``; a prediction it did not find under ``--results`` (an `InputError` naming a path
    there that does not exist) in a folder another `eval` wrote (`results_benchmark`) says so and
    names the `score` command for it: every task used to answer only "not found", the first
    sequence or video of its own benchmark named."""
    try:
        return score()
    except InputError as error:
        other = results_benchmark(args.results)
        if (other in (None, task) or error.path is None or error.path.exists()
                or not error.path.is_relative_to(args.results)):
            raise
        raise InputError(error.path, f"{error.problem}; {args.results} holds `vidcorr eval {other}` results "
                                     f"(by its results.json): score them with `vidcorr score {other}`") from None


def results_benchmark(results: Path) -> str | None:
    """The benchmark whose `eval` wrote ``results`` ("davis", "jhmdb", "vip", "otb" or "vot"), as its
    results.json records it (tracking: ``benchmark``; the others: ``protocol.benchmark``), or that
    of the folder above `eval jhmdb`'s ``predictions/``; None without a readable record."""
    _, record = _eval_record(results)
    if record is None:
        return None
    protocol = record.get("protocol")
    name = record.get("benchmark") or (protocol.get("benchmark") if isinstance(protocol, dict) else None)
    if not isinstance(name, str):
        return None
    # eval vip on the VIPSeg layout records "VIPSeg snippet (VIP protocol, smoke test)"
    name = "vip" if name.lower().startswith("vipseg") else name.lower()
    return name if name in BENCHMARKS else None


def _eval_record(results: Path) -> tuple[Path, dict | None]:
    """(folder, its results.json as a dict) for ``results`` or, for `eval jhmdb`'s ``predictions/``,
    the folder above it, the first readable one; (results, None) without one."""
    for folder in (results, results.parent) if results.name == "predictions" else (results,):
        try:
            record = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            return folder, record
    return results, None


BENCHMARKS = ("davis", "jhmdb", "vip", "otb", "vot")


def _report(out: Path, results: dict, table: str) -> int:
    """Print the table, write the results JSON to out (`_score_json`) and say where."""
    from vidcorr.io.atomic import write_json_atomic

    print(table)
    write_json_atomic(results, out)
    print(f"wrote {out}")
    return 0


def _score_json(args: argparse.Namespace) -> Path:
    """--out, else RESULTS/score.json; `InputError` if it cannot be written (checked before scoring)."""
    from vidcorr.io.atomic import check_output_path

    out = args.out if args.out is not None else args.results / "score.json"
    if _is_eval_record(out):
        raise InputError(out, "holds the results of an `eval` run (its model, preset and timing), which scores "
                              "would replace: choose another --out (default: RESULTS/score.json)")
    try:
        check_output_path(out, folder=False)
    except InputError as error:
        if args.out is not None:
            raise
        raise InputError(error.path, f"{error.problem}; --out FILE writes the scores elsewhere") from None
    return out


def _is_eval_record(path: Path) -> bool:
    """Whether ``path`` is a results.json an `eval` wrote: a JSON object with its ``model`` (a score's
    own file has none)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "model" in record


# One function per `score` task; each adds its sub-parser to the `score` sub-parsers object.
TASK_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    register_davis, register_tracking, register_vip, register_jhmdb,
]


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `score` to the top-level sub-parsers; returns the `score <task>` sub-parsers object."""
    score = subparsers.add_parser("score", help="score saved predictions against ground truth")
    tasks = score.add_subparsers(dest="task", required=True, metavar="TASK")
    for register_task in TASK_REGISTRARS:
        register_task(tasks)
    return tasks
