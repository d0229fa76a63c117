"""`vidcorr demo`: the README's main job, on the DAVIS sequence shipped in the package.

Propagates the first-frame mask of DAVIS-2016 ``car-shadow`` (CC BY-NC 4.0, see
assets/demo/davis/README.md) with the project's best weights — the shipped trained UVC weights, or
the better untrained floor while none are shipped, said so in the output — writes the per-frame
masks and an overlay video, then scores them with the DAVIS metrics.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vidcorr.cli.common import add_model_arguments, load_model, model_label, preset_label, resolve_preset
from vidcorr.errors import InputError
from vidcorr.io.atomic import atomic_dir, check_output_path, killed_run_note, sigterm_cleans_up

DEMO_ROOT = Path(__file__).resolve().parents[1] / "assets" / "demo" / "davis"
DEMO_SEQUENCE = "car-shadow"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="propagate + score the shipped DAVIS demo sequence",
        description=f"Propagate the first-frame mask of the shipped DAVIS-2016 sequence {DEMO_SEQUENCE!r} "
                    "with the project's best weights, write masks + an overlay video, print J&F.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"),
                   help="output folder (default: out/demo); an earlier demo's output there is replaced, a folder "
                        "holding anything else is refused")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vidcorr.evaluate.davis import write_davis_results, write_mask_sequence
    from vidcorr.evaluate.timing import RunStats
    from vidcorr.io.davis import DavisDataset
    from vidcorr.io.video import open_frames
    from vidcorr.metrics.davis import format_results_table, score_davis
    from vidcorr.presets import preset_knobs
    from vidcorr.propagate import Propagator

    check_output_path(args.out, folder=True)
    if args.out.is_dir():
        _earlier_demo(sorted(args.out.iterdir()))  # refused before the model loads
    dataset = DavisDataset(DEMO_ROOT, sequences=[DEMO_SEQUENCE])
    frame_paths = dataset.frames(DEMO_SEQUENCE)
    preset = resolve_preset(args)
    encoder, info = load_model(args, preset, fallback_to_floor=True)
    model = model_label(info, loud=True)
    how = preset_label(preset.name, args)  # a changed knob is named: the README's J&F is the preset's own
    print(f"demo: DAVIS-2016 '{DEMO_SEQUENCE}' ({len(frame_paths)} frames, 480p), preset {how}, {model}")

    start = time.perf_counter()
    propagator = Propagator(encoder, preset, device=args.device, batch_size=args.batch_size)
    # minutes on a CPU, where nothing showed between the first line and the table: a bar of the frames
    # read (the propagator reads a batch ahead)
    frames = tqdm(open_frames(frame_paths[0].parent), total=len(frame_paths), desc="propagate", unit="frame",
                  leave=False)
    # SIGTERM's default (`timeout`, `kill`) left a hidden .OUT.partial-* folder of half the masks beside OUT
    with sigterm_cleans_up("demo"), atomic_dir(args.out, replaces=_earlier_demo) as tmp:
        write_mask_sequence(propagator, frames, dataset.first_mask(DEMO_SEQUENCE),
                            tmp / DEMO_SEQUENCE, [p.stem for p in frame_paths], overlay=tmp / "overlay.mp4",
                            truth=dataset.masks(DEMO_SEQUENCE))
        elapsed = time.perf_counter() - start
        results = score_davis(DEMO_ROOT, tmp, sequences=[DEMO_SEQUENCE], progress=False, per_frame=True)
        results.update(preset=preset.name, preset_knobs=preset_knobs(preset), model=info,
                       timing=RunStats(len(frame_paths), elapsed, propagator.timing["features"],
                                       propagator.timing["propagation"], str(args.device)).as_dict())
        write_davis_results(results, tmp / "results.json")
    print(format_results_table(results))
    print(f"propagated {len(frame_paths)} frames in {elapsed:.1f}s on {args.device}; "
          f"model: {json.dumps(info)}")
    print(f"wrote {args.out / DEMO_SEQUENCE}/*.png, {args.out / 'overlay.mp4'}, {args.out / 'results.json'}, "
          f"{args.out / 'j_per_frame.png'}")
    print(f"J&F-Mean = {results['J&F-Mean']:.4f}  (preset {how}; {model})")
    return 0


# `vidcorr.cli` holds its start-up SIGTERM handler until `sigterm_cleans_up` replaces it: SIGTERM as the
# model loads ended the command at its default, exit 143 and not a word
run.takes_over_sigterm = True


# What `run` writes: the only entries an --out folder may hold for the demo to replace them (with
# the files a desktop's file browser leaves in any folder it opens).
DEMO_FILES = frozenset({"overlay.mp4", "results.json", "j_per_frame.png"})  # and the DEMO_SEQUENCE mask folder
BROWSER_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def _earlier_demo(entries: list[Path]) -> list[Path]:
    """Those of an --out folder's ``entries`` that an earlier demo wrote: all of them, or
    `InputError` naming the others (replacing the folder wholesale deleted a user's files, even the
    current folder's with --out .). Names alone do not make an entry the demo's: the mask folder
    must hold only frame PNGs, and results.json must be the demo's."""
    foreign = [e.name for e in entries if not _plain_file(e, BROWSER_FILES | DEMO_FILES)
               and not (e.name == DEMO_SEQUENCE and _holds_only_masks(e))]
    named_like_ours = [e for e in entries if e.name not in BROWSER_FILES]
    if not foreign and named_like_ours and not any(e.name == "results.json" and _demo_results(e)
                                                   for e in entries):  # a demo writes all at once
        foreign = [e.name for e in named_like_ours]
    if foreign:
        out = entries[0].parent
        raise InputError(out, f"holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which the "
                              f"demo did not write{killed_run_note(foreign)}; it replaces only its own earlier "
                              "output: choose another --out")
    return entries


def _plain_file(path: Path, names: frozenset[str]) -> bool:
    return path.name in names and path.is_file() and not path.is_symlink()


def _holds_only_masks(folder: Path) -> bool:
    """Whether ``folder`` is a demo's mask folder: nothing but 00000.png, 00001.png, ... (and a file
    browser's files)."""
    return folder.is_dir() and not folder.is_symlink() and all(
        _plain_file(p, BROWSER_FILES) or (p.suffix == ".png" and p.stem.isascii() and p.stem.isdigit()
                                          and p.is_file() and not p.is_symlink())
        for p in folder.iterdir())


def _demo_results(path: Path) -> bool:
    """Whether ``path`` is the results.json a demo wrote (its sequence is the only one scored)."""
    try:
        return list(json.loads(path.read_text()).get("per_sequence", {})) == [DEMO_SEQUENCE]
    except (OSError, ValueError, AttributeError):
        return False
