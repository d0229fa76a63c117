"""`vidcorr eval vip`: propagate first-frame part maps through VIP videos and score mIoU and AP_part."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidcorr.cli.common import SQUARE_SIZE_HELP, add_model_arguments, comma_list
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, alone, run_video_task


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "vip", help="VIP part propagation (mIoU, instance-level part AP)",
        description="Propagate the first-frame part classes and part instances of every VIP video with "
                    "the preset's VIP variant (square 560 input, see docs/vip.md), write predicted class "
                    "maps to OUT/<video>/ and mIoU / AP_part to OUT/results.json.",
    )
    add_out_and_resume_arguments(p, "videos")
    add_dataset_arguments(p)
    add_model_arguments(p, size_help=SQUARE_SIZE_HELP)
    p.set_defaults(func=run)


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """Which VIP videos and frames are scored: shared by `eval vip` and `score vip`."""
    p.add_argument("--root", required=True, type=Path,
                   help="VIP_Fine (or its parent), or a VIPSeg-snippet root (images/, source/)")
    p.add_argument("--split", default="val", help="VIP list lists/<split>_videos.txt (default: val)")
    p.add_argument("--videos", type=comma_list, help="comma-separated subset of the videos")
    p.add_argument("--layout", default="auto", choices=("auto", "vip", "vipseg"),
                   help="dataset layout (default: detected from the folders)")
    p.add_argument("--skip-first-frame", action="store_true",
                   help="do not score frame 0 (UVC and STT score it, our default)")


def dataset_from(args: argparse.Namespace):
    """The `VipDataset` that `add_dataset_arguments`' options name."""
    from vidcorr.io.vip import VipDataset

    return VipDataset(args.root, split=args.split, videos=args.videos, layout=args.layout)


def run(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.vip import COMMAND, run_vip, vip_preset
    from vidcorr.evaluate.vip_results import format_vip_table

    return run_video_task(args, COMMAND, "VIP", dataset_from, vip_preset, run_vip, format_vip_table,
                          skip_first_frame=args.skip_first_frame,
                          dataset_note=lambda dataset: f"layout: {dataset.layout}   ")


run.takes_over_sigterm = alone
