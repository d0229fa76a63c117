"""`vidcorr eval jhmdb`: propagate first-frame joints through JHMDB videos and score PCK."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from vidcorr.cli.common import (
    KNOB_OVERRIDES,
    SQUARE_SIZE_HELP,
    add_model_arguments,
    comma_list,
    load_model,
    model_line,
)
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, resume_hint


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "jhmdb", help="JHMDB keypoint propagation (PCK@0.1, PCK@0.2)",
        description="Propagate the 15 first-frame joints of every JHMDB test video with the preset's "
                    "JHMDB variant (square 320 input, see docs/keypoints.md), write per-frame "
                    "coordinates to OUT/predictions/ and PCK to OUT/results.json.",
    )
    add_out_and_resume_arguments(p, "videos")
    add_dataset_arguments(p)
    add_model_arguments(p, size_help=SQUARE_SIZE_HELP)
    p.set_defaults(func=run)


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """Which JHMDB videos and frames are scored: shared by `eval jhmdb` and `score jhmdb`."""
    p.add_argument("--root", required=True, type=Path, help="JHMDB root (Rename_Images/, joint_positions/)")
    splits = p.add_mutually_exclusive_group()
    splits.add_argument("--splits", type=Path, metavar="DIR",
                        help="folder with <class>_test_split<n>.txt files (default: ROOT, ROOT/splits)")
    splits.add_argument("--split-file", type=Path, action="append", metavar="FILE",
                        help="a <class>_test_split<n>.txt file; repeat for several classes")
    p.add_argument("--split", type=int, choices=(1, 2, 3),
                   help="split number (default: that of the --split-file files, else 1)")
    p.add_argument("--videos", type=comma_list, help="comma-separated subset of <class>/<video> names")
    p.add_argument("--include-first-frame", action="store_true",
                   help="also score frame 0 (STT does; UVC and CRW skip it, our default)")


def dataset_from(args: argparse.Namespace):
    """The `JhmdbDataset` that `add_dataset_arguments`' options name."""
    from vidcorr.io.jhmdb import JhmdbDataset

    return JhmdbDataset(args.root, split=args.split, splits=args.split_file or args.splits, videos=args.videos)


def protocol_preset(args: argparse.Namespace, variant: Callable):
    """``variant(get_preset(--preset), size=--size)`` with the knob overrides (--topk, --context, ...) on top.

    The task's protocol variant sets the benchmark's knobs first so that explicit command-line
    overrides still win; --size is the side of the square input here.
    """
    from vidcorr.presets import get_preset

    changes = {knob: getattr(args, arg) for arg, knob in KNOB_OVERRIDES if getattr(args, arg) is not None}
    preset = variant(get_preset(args.preset), size=args.size)
    return preset.with_overrides(**changes) if changes else preset


def run(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.jhmdb import COMMAND, format_pck_table, jhmdb_preset, run_jhmdb
    from vidcorr.evaluate.ranks import eval_ranks
    from vidcorr.evaluate.runs import check_output_folder

    with eval_ranks(args.device, COMMAND) as ranks:  # rank 0 of 1 without torchrun
        # before the data is read and the model loaded (run_jhmdb checks again)
        ranks.agree(lambda: check_output_folder(args.out, args.resume, COMMAND))
        dataset = ranks.agree(lambda: dataset_from(args))  # run_jhmdb logs which videos (all without split files)
        preset = ranks.agree(lambda: protocol_preset(args, jhmdb_preset))
        encoder, info = ranks.agree(lambda: load_model(args, preset))
        with resume_hint(args.out, "videos", ranks.is_main):
            results = run_jhmdb(encoder, preset, dataset, args.out, skip_first_frame=not args.include_first_frame,
                                device=ranks.device, batch_size=args.batch_size, model_info=info,
                                resume=args.resume, ranks=ranks)
    if results is None:  # a rank other than 0: rank 0 reports
        return 0
    print(format_pck_table(results))
    print(f"preset: {preset.name} (JHMDB variant, square {preset.size.size})   "
          f"{model_line(info)}")
    print(f"timing: {json.dumps(results['timing'])}")
    print(f"wrote {args.out / 'results.json'}")
    return 0
