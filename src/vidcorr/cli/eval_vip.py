"""`vidcorr eval vip`: propagate first-frame part maps through VIP videos and score mIoU and AP_part."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vidcorr.cli.common import SQUARE_SIZE_HELP, add_model_arguments, comma_list, load_model, model_line
from vidcorr.cli.eval_jhmdb import protocol_preset
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, resume_hint


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
    from vidcorr.evaluate.ranks import eval_ranks
    from vidcorr.evaluate.runs import check_output_folder
    from vidcorr.evaluate.vip import COMMAND, run_vip, vip_preset
    from vidcorr.evaluate.vip_results import format_vip_table

    with eval_ranks(args.device, COMMAND) as ranks:  # rank 0 of 1 without torchrun
        # before the data is read and the model loaded (run_vip checks again)
        ranks.agree(lambda: check_output_folder(args.out, args.resume, COMMAND))
        dataset = ranks.agree(lambda: dataset_from(args))
        preset = ranks.agree(lambda: protocol_preset(args, vip_preset))
        encoder, info = ranks.agree(lambda: load_model(args, preset))
        with resume_hint(args.out, "videos", ranks.is_main):
            results = run_vip(encoder, preset, dataset, args.out, skip_first_frame=args.skip_first_frame,
                              device=ranks.device, batch_size=args.batch_size, model_info=info,
                              resume=args.resume, ranks=ranks)
    if results is None:  # a rank other than 0: rank 0 reports
        return 0
    print(format_vip_table(results))
    print(f"preset: {preset.name} (VIP variant, square {preset.size.size})   layout: {dataset.layout}   "
          f"{model_line(info)}")
    print(f"timing: {json.dumps(results['timing'])}")
    print(f"wrote {args.out / 'results.json'}")
    return 0
