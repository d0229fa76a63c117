"""`vidcorr eval jhmdb`: propagate first-frame joints through JHMDB videos and score PCK."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidcorr.cli.common import SQUARE_SIZE_HELP, add_model_arguments, comma_list
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, alone, run_video_task


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


def run(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.jhmdb import COMMAND, format_pck_table, jhmdb_preset, run_jhmdb

    # no dataset note: run_jhmdb logs which videos it reads (all of them without split files)
    return run_video_task(args, COMMAND, "JHMDB", dataset_from, jhmdb_preset, run_jhmdb, format_pck_table,
                          skip_first_frame=not args.include_first_frame)


run.takes_over_sigterm = alone
