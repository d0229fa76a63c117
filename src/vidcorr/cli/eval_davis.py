"""`vidcorr eval davis`: propagate every sequence of a DAVIS split, write PNGs, score J&F."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vidcorr.cli.common import (
    add_model_arguments,
    comma_list,
    load_model,
    model_line,
    preset_label,
    resolve_preset,
)
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, alone, resume_hint

DAVIS_RESOLUTIONS = ("480p", "Full-Resolution")


def add_davis_data_arguments(p: argparse.ArgumentParser) -> None:
    """Which sequences and files of a DAVIS root (`eval davis`, `score davis`): --year, --split,
    --sequences and --resolution (the JPEGImages/ and Annotations/ sub-folder)."""
    p.add_argument("--year", help="ImageSets year folder (default: the only one present)")
    p.add_argument("--split", default="val", help="split file under ImageSets/<year> (default: val)")
    p.add_argument("--sequences", type=comma_list, help="comma-separated subset of the split's sequences")
    p.add_argument("--resolution", choices=DAVIS_RESOLUTIONS, default="480p",
                   help="DAVIS frames and annotations to read and score (default: 480p, the papers')")


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser(
        "davis", help="DAVIS semi-supervised mask propagation (J&F)",
        description="Propagate the first-frame masks of every sequence of a DAVIS split, write indexed "
                    "PNGs to OUT/<seq>/, score them like the official tool and write OUT/results.json.",
    )
    p.add_argument("--root", required=True, type=Path, help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)")
    add_out_and_resume_arguments(p, "sequences")
    add_davis_data_arguments(p)
    p.add_argument("--overlays", action="store_true",
                   help="also write OUT/overlays/<seq>.mp4: each frame with the propagated masks drawn on it, "
                        "beside its annotation (with --resume, drawn from the masks for the kept sequences too)")
    p.add_argument("--track", action="store_true",
                   help="UVC-track (UVC's 'ours-track'): carry each object only from its box in the context "
                        "frames to the box it is localised to in the new frame; meant for --preset uvc: with "
                        "crw it lowered J&F on our data (docs/uvc.md)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.davis import COMMAND, run_davis
    from vidcorr.evaluate.davis_overlays import OVERLAYS
    from vidcorr.evaluate.ranks import eval_ranks
    from vidcorr.evaluate.runs import check_output_folder
    from vidcorr.metrics.davis import format_results_table

    with eval_ranks(args.device, COMMAND) as ranks:  # rank 0 of 1 without torchrun
        # before the model is loaded and the split propagated (run_davis checks again)
        ranks.agree(lambda: check_output_folder(args.out, args.resume, COMMAND))
        preset = ranks.agree(lambda: resolve_preset(args))
        encoder, info = ranks.agree(lambda: load_model(args, preset))
        with resume_hint(args.out, "sequences", ranks.is_main):
            results = run_davis(encoder, preset, args.root, args.out, year=args.year, split=args.split,
                                sequences=args.sequences, resolution=args.resolution, device=ranks.device,
                                batch_size=args.batch_size, model_info=info, resume=args.resume,
                                overlays=args.overlays, track=args.track, ranks=ranks)
    if results is None:  # a rank other than 0: rank 0 reports
        return 0
    print(format_results_table(results))
    print(f"preset: {preset_label(preset.name, args)}{' + UVC-track' if args.track else ''}   {model_line(info)}")
    print(f"timing: {json.dumps(results['timing'])}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'j_per_frame.png'}"
          + (f"; overlay videos in {args.out / OVERLAYS}" if args.overlays else ""))
    return 0


run.takes_over_sigterm = alone
