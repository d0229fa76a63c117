"""`vidcorr eval otb` and `vidcorr eval vot`: track every sequence's first box, score OTB's OPE;
`eval vot --protocol vot-baseline` runs VOT's supervised experiment instead (re-initialisation after
each failure; accuracy and failures).

The model arguments are the shared ones, but of the preset only its feature layer is used (which
stage of trained weights is matched); every tracker knob is set with ``--set NAME=VALUE``
(docs/tracking.md lists them), and the propagation-only flags (--size, --topk, ...) are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from vidcorr.cli.common import (
    add_model_arguments,
    comma_list,
    load_model,
    model_line,
    refuse_propagation_flags,
    resolve_preset,
)
from vidcorr.cli.eval_runs import add_out_and_resume_arguments, alone, resume_hint
from vidcorr.errors import VidcorrError

_LAYOUTS = {
    "otb": "OTB-2015 layout: ROOT/<seq>/img/0001.jpg + ROOT/<seq>/groundtruth_rect.txt",
    "vot": "VOT layout: ROOT/<seq>/00000001.jpg + ROOT/<seq>/groundtruth.txt (polygons)",
}


def register(tasks: argparse._SubParsersAction) -> None:
    for benchmark, layout in _LAYOUTS.items():
        p = tasks.add_parser(
            benchmark, help=f"{benchmark.upper()} box tracking (success AUC, precision@20px"
                            + ("; or VOT's baseline accuracy / failures / EAO" if benchmark == "vot" else "") + ")",
            description=f"Track the first-frame box of every sequence under --root ({layout}) and score "
                        "OTB's one-pass evaluation; write OUT/<seq>.txt, OUT/results.json, OUT/success_plot.png."
                        + (" With --protocol vot-baseline: VOT's supervised experiment (docs/tracking.md)."
                           if benchmark == "vot" else ""),
        )
        add_sequence_arguments(
            p, benchmark, max_frames_help="track and score only the first N frames of each sequence",
            protocol_help="ope (default): OTB's one-pass evaluation, never re-initialised; vot-baseline: VOT's "
                          "supervised experiment (re-initialised 5 frames after each failure; accuracy, failures, "
                          "EAO; writes OUT/baseline/<seq>/<seq>_001.txt)")
        add_out_and_resume_arguments(p, "sequences")
        p.add_argument("--tracker", choices=("localise", "dcf"), default="localise",
                       help="UVC region localisation (default) or the DCFNet correlation filter")
        p.add_argument("--set", dest="options", action="append", default=[], metavar="NAME=VALUE",
                       help="tracker setting, repeatable (e.g. --set search_scale=3 --set topk=8; docs/tracking.md)")
        add_model_arguments(p, tracking=True)
        p.set_defaults(func=run, benchmark=benchmark)


def add_sequence_arguments(p: argparse.ArgumentParser, benchmark: str, *, max_frames_help: str,
                           protocol_help: str) -> None:
    """Which sequences, frames and protocol: shared by `eval otb|vot` and `score otb|vot` (--root,
    --sequences, --max-frames; for VOT --protocol and --eao-interval, which OTB, having its one-pass
    evaluation only, gets as fixed defaults)."""
    p.add_argument("--root", required=True, type=Path, help=f"benchmark root folder ({_LAYOUTS[benchmark]})")
    p.add_argument("--sequences", type=comma_list, help="comma-separated subset of the sequences")
    p.add_argument("--max-frames", type=int, help=max_frames_help)
    if benchmark == "vot":
        p.add_argument("--protocol", choices=("ope", "vot-baseline"), default="ope", help=protocol_help)
        add_eao_interval_argument(p)
    else:
        p.set_defaults(protocol="ope", eao_interval="vot2015")


def eao_interval_spec(text: str) -> str | tuple[int, int]:
    """``--eao-interval``: a challenge name (vot2015 ... vot2019) or LOW,HIGH."""
    from vidcorr.metrics.vot import eao_interval

    parts = text.split(",")
    if len(parts) == 2 and not all(v.strip().isdigit() for v in parts):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH as two whole numbers of frames, got {text!r}")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected a challenge name or LOW,HIGH, got {text!r}")
    spec = text if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    try:
        eao_interval(spec)
    except ValueError as error:  # an unknown name, low > high
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


def check_max_frames(args: argparse.Namespace) -> None:
    """``--max-frames`` (of `eval` and `score`): at least 2, the first box and one tracked frame."""
    if args.max_frames is not None and args.max_frames < 2:
        raise VidcorrError(f"--max-frames must be at least 2, got {args.max_frames}")


def add_eao_interval_argument(p: argparse.ArgumentParser) -> None:
    from vidcorr.metrics.vot import EAO_INTERVALS

    p.add_argument("--eao-interval", type=eao_interval_spec, default="vot2015", metavar="CHALLENGE|LOW,HIGH",
                   help="with --protocol vot-baseline: the sequence-length interval EAO averages over, a "
                        f"challenge's ({', '.join(f'{k} {a}-{b}' for k, (a, b) in EAO_INTERVALS.items())}) "
                        "or LOW,HIGH (default: vot2015)")


def _convert(field: dataclasses.Field, text: str):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise VidcorrError(f"--set {field.name}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise VidcorrError(f"--set {field.name}: expected {kind}, got {text!r}") from None


def tracker_options(args: argparse.Namespace) -> dict:
    """Tracker settings from ``--set NAME=VALUE``; the propagation-only model flags are refused."""
    from vidcorr.track import TRACKERS, tracker_settings

    refuse_propagation_flags(args, "use --set NAME=VALUE (docs/tracking.md)")
    fields = {f.name: f for f in dataclasses.fields(type(tracker_settings(args.tracker)))}
    other = next(t for t in TRACKERS if t != args.tracker)
    others = {f.name for f in dataclasses.fields(type(tracker_settings(other)))}
    options = {}
    for item in args.options:
        name, sep, text = item.partition("=")
        if sep and name not in fields and name in others:  # "expected NAME one of ..." did not say why
            raise VidcorrError(f"--set {name}: a setting of the {other} tracker, not of {args.tracker} "
                               f"(--tracker {other}); {args.tracker}'s: {', '.join(fields)}")
        if not sep or name not in fields:
            raise VidcorrError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
        options[name] = _convert(fields[name], text)
    return options


def _checked_options(args: argparse.Namespace):
    """The preset and the tracker settings the options name, refused before the model loads."""
    from vidcorr.track import tracker_settings

    try:  # first: it refuses the propagation flags, before the preset could refuse one as its own
        settings = tracker_settings(args.tracker, **tracker_options(args))
    except ValueError as error:
        raise VidcorrError(str(error)) from None
    preset = resolve_preset(args)
    check_max_frames(args)
    return preset, settings


def run(args: argparse.Namespace) -> int:
    from vidcorr.evaluate.ranks import eval_ranks
    from vidcorr.evaluate.runs import check_output_folder
    from vidcorr.evaluate.tracking import COMMANDS, run_tracking
    from vidcorr.evaluate.tracking_results import format_results_table

    start = time.perf_counter()
    with eval_ranks(args.device, COMMANDS[args.benchmark]) as ranks:  # rank 0 of 1 without torchrun
        # before the data is read and the model loaded (run_tracking checks again)
        ranks.agree(lambda: check_output_folder(args.out, args.resume, COMMANDS[args.benchmark]))
        preset, settings = ranks.agree(lambda: _checked_options(args))
        encoder, info = ranks.agree(lambda: load_model(args, preset))
        with resume_hint(args.out, "sequences", ranks.is_main):
            results = run_tracking(encoder, args.root, args.out, benchmark=args.benchmark, settings=settings,
                                   protocol=args.protocol, sequences=args.sequences, max_frames=args.max_frames,
                                   eao_interval=args.eao_interval, device=ranks.device, model_info=info,
                                   preset=preset.name, resume=args.resume, ranks=ranks)
    if results is None:  # a rank other than 0: rank 0 reports
        return 0
    print(format_results_table(results))
    print(f"protocol: {args.protocol}   tracker: {results['tracker']} {json.dumps(results['settings'])}")
    print(f"preset: {preset.name}   {model_line(info)}   "
          f"wall time: {time.perf_counter() - start:.1f}s")
    if args.protocol == "ope":
        print(f"wrote {args.out / 'results.json'}, {args.out / 'success_plot.png'} and one <seq>.txt per sequence")
    else:
        print(f"wrote {args.out / 'results.json'}, {args.out / 'eao_curve.png'} and "
              f"{args.out / 'baseline'}/<seq>/<seq>_001.txt per sequence "
              "(VOT trajectory format: 1 = initialised, 2 = failed, 0 = skipped, else x,y,w,h)")
    return 0


run.takes_over_sigterm = alone
