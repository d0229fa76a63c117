"""`vidcorr propagate INPUT --mask FIRST.png --out DIR`: carry a first-frame annotation through a video.

INPUT is a video file (decoded with PyAV, or OpenCV where PyAV is missing) or a folder of frames.
Writes one indexed PNG per frame to DIR/masks/ and an overlay video DIR/overlay.mp4; the folder
appears only when everything succeeded.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vidcorr.cli.common import add_model_arguments, load_model, resolve_preset
from vidcorr.errors import InputError

DEFAULT_FPS = 24.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "propagate", help="propagate a first-frame mask through a video or frame folder",
        description="Propagate the first-frame annotation of INPUT (mp4/mkv/webm or a folder of "
                    "frames) with a trained model and write per-frame indexed PNGs plus an overlay video.",
    )
    p.add_argument("input", type=Path, help="video file or folder of frames")
    p.add_argument("--mask", required=True, type=Path,
                   help="first-frame mask: palette PNG of object ids (255 = void) or a 0/255 binary PNG")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    p.add_argument("--fps", type=float, help=f"overlay video frame rate (default: the video's, else {DEFAULT_FPS:g})")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidcorr.cli.output import atomic_output_dir
    from vidcorr.io.video import open_frames, write_video

    source = open_frames(args.input)
    first_mask = _checked_first_mask(args.mask, source.size)
    preset = resolve_preset(args)
    encoder, info = load_model(args, preset)
    names = _frame_names(source)
    fps = args.fps or source.fps or DEFAULT_FPS
    start = time.perf_counter()
    with atomic_output_dir(args.out) as tmp:
        (tmp / "masks").mkdir()
        overlays = _propagate_and_write(encoder, preset, source, first_mask, tmp / "masks", names, args)
        if args.no_video:
            n = sum(1 for _ in overlays)
        else:
            n = 0

            def counted():
                nonlocal n
                for frame in overlays:
                    n += 1
                    yield frame

            write_video(tmp / "overlay.mp4", counted(), fps)
    elapsed = time.perf_counter() - start
    model = info.get("weights") or f"{info.get('features')} (untrained floor)"
    print(f"propagated {n} frames of {args.input} with {model}, preset {preset.name}, "
          f"in {elapsed:.1f}s ({n / elapsed:.2f} frames/s)")
    print(f"wrote {args.out / 'masks'}/*.png" + ("" if args.no_video else f" and {args.out / 'overlay.mp4'}"))
    return 0


def _checked_first_mask(path: Path, frame_hw: tuple[int, int]) -> np.ndarray:
    from vidcorr.io.masks import read_mask
    from vidcorr.labels import VOID

    mask = read_mask(path)
    if mask.shape != tuple(frame_hw):
        raise InputError(path, f"mask {path.name} is {mask.shape[1]}x{mask.shape[0]} "
                               f"but frames are {frame_hw[1]}x{frame_hw[0]}")
    if not np.any((mask != 0) & (mask != VOID)):
        raise InputError(path, "the first-frame mask is empty: it holds no object id (only 0 / void)")
    return mask


def _frame_names(source) -> list[str] | None:
    """Output names: the frame files' stems for a folder, None (00000, 00001, ...) for a video."""
    from vidcorr.io.video import list_frame_files

    return [p.stem for p in list_frame_files(source.path)] if source.backend == "folder" else None


def _propagate_and_write(encoder, preset, source, first_mask, mask_dir: Path, names, args) -> Iterator[np.ndarray]:
    """Yield overlay frames while writing each frame's indexed PNG (streaming, bounded memory)."""
    from vidcorr.io.masks import write_indexed_png
    from vidcorr.masks import propagate_mask
    from vidcorr.propagate import Propagator
    from vidcorr.viz import overlay_mask

    propagator = Propagator(encoder, preset, device=args.device, batch_size=args.batch_size)
    for t, (frame, labels) in enumerate(propagate_mask(propagator, source, first_mask)):
        write_indexed_png(mask_dir / f"{names[t] if names else f'{t:05d}'}.png", labels)
        yield overlay_mask(frame, labels)
