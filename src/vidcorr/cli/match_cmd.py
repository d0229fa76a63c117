"""`vidcorr match A B --out DIR` (two images) or `vidcorr match VIDEO --frames I,J --out DIR`:
draw the correspondences a model finds between two frames.

Writes DIR/matches.png (the frames side by side, captioned "A · frame I" and "B · frame J" or with
the images' file names, a line per mutual match, `viz.draw_matches`) and
DIR/matches.json (every match: pixel coordinates in A and B, similarity, mutual), and prints how
many matches pass the forward-backward check. The folder appears only when both are written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidcorr.cli.common import (
    accept_negative_values,
    add_model_arguments,
    load_model,
    model_label,
    preset_label,
    resolve_preset,
    warn_if_coarse_propagator,
)
from vidcorr.errors import InputError, TooFewFrames

DEFAULT_FRAMES = "0,10"  # of one INPUT: frames A and B (None in args: --frames given with two images is refused)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "match", help="draw the point correspondences a model finds between two frames",
        description="Match a grid of points of frame A into frame B with a model's features and draw "
                    "the mutual (forward-backward consistent) matches side by side.",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help="two images (A B), or one video / frame folder with --frames")
    p.add_argument("--frames", metavar="I,J",
                   help=f"with one INPUT: the 0-based indices of frames A and B (default: {DEFAULT_FRAMES})")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    p.add_argument("--mask", type=Path, help="query only points of A inside this mask (palette or 0/255 PNG)")
    p.add_argument("--step", type=int, default=2, help="query every STEP-th feature cell of A (default: 2)")
    p.add_argument("--max-lines", type=int, default=300, help="draw at most this many matches (default: 300)")
    p.add_argument("--show-rejected", action="store_true", help="also draw non-mutual matches, in grey")
    add_model_arguments(p, propagation_knobs=False)  # only the preset's size, layer and norm apply
    accept_negative_values(p)  # "--frames -1,10" reaches `_frames`, which names the bad index
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from PIL import Image

    from vidcorr.correspond import match_frames
    from vidcorr.io.atomic import atomic_dir, check_output_path, sigterm_cleans_up
    from vidcorr.propagate import Propagator
    from vidcorr.viz import draw_matches

    if args.step < 1 or args.max_lines < 1:
        raise InputError(None, "--step and --max-lines must be positive")
    check_output_path(args.out, folder=True, empty=True)  # before the frames are read and the model loaded
    (frame_a, name_a, label_a), (frame_b, name_b, label_b) = _frames(args)
    mask = _mask(args.mask, frame_a.shape[:2]) if args.mask else None
    preset = resolve_preset(args)
    encoder, info = load_model(args, preset)
    propagator = Propagator(encoder, preset, device=args.device)
    matches = match_frames(propagator, frame_a, frame_b, step=args.step, mask_a=mask)
    if len(matches) == 0:
        raise InputError(args.mask, "no point of frame A to match: the mask covers no feature cell centre")
    warn_if_coarse_propagator(args.inputs[0], propagator, grid_hw=matches.grid_a, input_hw=matches.input_a)
    n, mutual = len(matches), int(matches.mutual.sum())
    summary = {"a": name_a, "b": name_b, "preset": preset.name, "model": info, "step": args.step,
               "points": n, "mutual": mutual}
    with sigterm_cleans_up("match"), atomic_dir(args.out) as tmp:
        picture = draw_matches(frame_a, frame_b, matches, max_lines=args.max_lines, show_rejected=args.show_rejected,
                               captions=(label_a, label_b))
        Image.fromarray(picture).save(tmp / "matches.png")
        (tmp / "matches.json").write_text(json.dumps({**summary, **matches.to_dict()}, indent=1) + "\n")
    model = model_label(info)
    print(f"{name_a} -> {name_b}: {mutual} of {n} points matched both ways ({mutual / n:.0%}) with {model}, "
          f"preset {preset_label(preset.name, args)}")
    print(f"wrote {args.out / 'matches.png'} and {args.out / 'matches.json'}")
    return 0


# `vidcorr.cli` holds its start-up SIGTERM handler until `sigterm_cleans_up` replaces it: SIGTERM as the
# frames are read, the model loads and the frames are matched (seconds) ended the command at its default,
# exit 143 and not a word
run.takes_over_sigterm = True


def _frames(args: argparse.Namespace):
    """-> ((frame A, its name, its caption), (frame B, ...)) from two images or one video and --frames;
    the captions of matches.png say which frame is which: "A · frame 0" of a video, "A · a.jpg"."""
    from vidcorr.io.images import read_image
    from vidcorr.io.video import open_frames
    from vidcorr.viz import frame_caption

    if len(args.inputs) == 2:
        if args.frames is not None:  # it was ignored without a word
            raise InputError(None, "--frames picks two frames of one video or frame folder; with two images "
                                   "A B, leave it out")
        return [(read_image(path), str(path), f"{side} · {path.name}") for side, path in zip("AB", args.inputs)]
    if len(args.inputs) != 1:
        raise InputError(None, f"expected two images or one video, got {len(args.inputs)} inputs")
    video = args.inputs[0]
    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    try:
        i, j = (int(v) for v in frames.split(","))
    except ValueError:
        raise InputError(None, f"--frames expects two indices I,J, got {frames!r}") from None
    if min(i, j) < 0:
        raise InputError(None, f"--frames: frame indices must be >= 0 (0 is the first frame), got {frames}")
    # the mask kept beside the frames (first_frame.png) is no frame, as for propagate
    source = open_frames(video, exclude=[args.mask] if args.mask else (),
                         image_advice="match needs two images (A B) or one video or frame folder with --frames I,J")
    try:
        frame_a, frame_b = source.read_at([i, j])
    except TooFewFrames as error:
        if args.frames is not None:
            raise
        # Refused, not clamped to the last frame: a pair the user did not choose would be drawn
        # under a default's name, and a short clip's frames 0 and 7 match differently from 0 and 10.
        raise InputError(video, f"has {error.available} frames, and the default --frames {DEFAULT_FRAMES} "
                                f"needs {max(i, j) + 1}; pass --frames I,J with indices below "
                                f"{error.available}") from None
    return ((frame_a, f"{video}#{i}", frame_caption("A", i)), (frame_b, f"{video}#{j}", frame_caption("B", j)))


def _mask(path: Path, frame_hw: tuple[int, int]):
    from vidcorr.io.masks import read_mask

    mask = read_mask(path)
    if mask.shape != tuple(frame_hw):
        raise InputError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but frame A is {frame_hw[1]}x{frame_hw[0]}")
    return (mask != 0) & (mask != 255)
