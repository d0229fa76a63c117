"""What the eval commands share about their runs: ``--resume`` and, on Ctrl-C, how to continue
(`vidcorr.evaluate.runs` keeps the record of a run in its output folder); the whole run of the
video tasks with a square protocol variant (`eval jhmdb`, `eval vip`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vidcorr.cli.common import (
    KNOB_OVERRIDES,
    changed_knobs,
    load_model,
    model_line,
    refuse_windowless_window_first,
)


def add_out_and_resume_arguments(p: argparse.ArgumentParser, items: str) -> None:
    """--out and --resume of an eval command whose run is made of ``items`` ("sequences", "videos")."""
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (must not exist or be empty, unless --resume continues the run in it)")
    p.add_argument("--resume", action="store_true",
                   help=f"keep the {items} an interrupted run of the same model and protocol finished in OUT")


@contextlib.contextmanager
def resume_hint(out: Path, items: str, tell: bool = True) -> Iterator[None]:
    """On Ctrl-C, say how to continue when the run had started (its record is there), then let the
    interrupt go on (exit 130): that the ``items`` finished so far are kept in ``out`` when its
    record, with the ranks' own records merged (`recorded_items`, as --resume reads them), names one,
    else that none was finished. A run that finished none removes its record, except where rank 0
    left without the others after SIGTERM (`PeersGone`, a peer killed outright): the line said
    "kept" there too, and what a peer finished is then only in its own record.
    tell: False on the torchrun ranks other than 0 (rank 0 says it once)."""
    from vidcorr.evaluate.runs import RUN_STAMP, recorded_items

    try:
        yield
    except KeyboardInterrupt:
        if tell and recorded_items(out):
            print(f"vidcorr: the {items} finished so far are kept in {out}; the same command with --resume "
                  "continues the run", file=sys.stderr)
        elif tell and (out / RUN_STAMP).is_file():
            print(f"vidcorr: none of the {items} was finished; the same command with --resume starts the run "
                  f"again in {out}", file=sys.stderr)
        raise


def protocol_preset(args: argparse.Namespace, variant: Callable):
    """``variant(get_preset(--preset), size=--size)`` with the knob overrides (--topk, --context, ...) on top.

    The task's protocol variant sets the benchmark's knobs first so that explicit command-line
    overrides still win; --size is the side of the square input here.
    """
    from vidcorr.presets import get_preset

    changes = {knob: getattr(args, arg) for arg, knob in KNOB_OVERRIDES if getattr(args, arg) is not None}
    preset = variant(get_preset(args.preset), size=args.size)
    preset = preset.with_overrides(**changes) if changes else preset
    refuse_windowless_window_first(args, preset)  # after the variant, which may set a window of its own
    return preset


def run_video_task(
    args: argparse.Namespace,
    command: str,
    task: str,
    dataset_from: Callable[[argparse.Namespace], Any],
    variant: Callable,
    run: Callable[..., dict | None],
    format_table: Callable[[dict], str],
    *,
    skip_first_frame: bool,
    dataset_note: Callable[[Any], str] = lambda dataset: "",
) -> int:
    """`eval jhmdb` and `eval vip`: propagate and score a video dataset with a preset's square
    ``task`` variant ("JHMDB", "VIP"), then report. -> the exit status, 0.

    Every rank (one without torchrun) agrees, in this order, that OUT may be written (before the
    data is read and the model loaded; ``run`` checks again), on ``dataset_from(args)``, on the
    preset (`protocol_preset` of ``variant``) and on the model; ``run(encoder, preset, dataset, OUT,
    ...)`` (`run_jhmdb`, `run_vip`) then propagates each rank's share. Rank 0 alone prints
    ``format_table(results)``, the preset (with ``dataset_note(dataset)`` after it), the timing and
    what it wrote.
    """
    from vidcorr.evaluate.ranks import eval_ranks
    from vidcorr.evaluate.runs import check_output_folder

    with eval_ranks(args.device, command) as ranks:  # rank 0 of 1 without torchrun
        ranks.agree(lambda: check_output_folder(args.out, args.resume, command))
        dataset = ranks.agree(lambda: dataset_from(args))
        preset = ranks.agree(lambda: protocol_preset(args, variant))
        encoder, info = ranks.agree(lambda: load_model(args, preset))
        with resume_hint(args.out, "videos", ranks.is_main):
            results = run(encoder, preset, dataset, args.out, skip_first_frame=skip_first_frame,
                          device=ranks.device, batch_size=args.batch_size, model_info=info,
                          resume=args.resume, ranks=ranks)
    if results is None:  # a rank other than 0: rank 0 reports
        return 0
    print(format_table(results))
    print(f"preset: {variant_label(preset.name, task, preset.size.size, args)}   {dataset_note(dataset)}"
          f"{model_line(info)}")
    print(f"timing: {json.dumps(results['timing'])}")
    print(f"wrote {args.out / 'results.json'}")
    return 0


def variant_label(name: str, task: str, side: int, args: argparse.Namespace) -> str:
    """How `run_video_task` names the preset ``name``'s square ``task`` variant at ``side`` pixels:
    "crw (JHMDB variant, square 320)", or "crw (JHMDB variant, square; --size 240 --topk 5)" with the
    knobs the command line changed (`changed_knobs`, as every command names them): the side once,
    from --size where given (it read "square 240; --size 240")."""
    size = f" {side}" if args.size is None else ""  # else --size names it, among the knobs
    knobs = " ".join(changed_knobs(args))
    return f"{name} ({task} variant, square{size}{'; ' + knobs if knobs else ''})"


def alone(args: argparse.Namespace) -> bool:
    """An eval command's ``takes_over_sigterm`` (`vidcorr.cli`): in a process of its own (no torchrun
    WORLD_SIZE above 1) the start-up SIGTERM handler is held until `eval_ranks`' own takes over, so a
    SIGTERM in between (the command's imports) says so instead of exiting 143 silently. Under torchrun
    a rank ended before the ranks meet dies silently, by design (docs/metrics.md, "Several processes")."""
    return os.environ.get("WORLD_SIZE", "1").strip() == "1"
