"""Walk from one propagation preset to another, one group of knobs at a time, scoring each step on DAVIS.

Which protocol difference makes `uvc` score so far below `crw` with the same weights (docs/uvc.md,
"From uvc to crw, one knob at a time")? Variant 0 is the --from preset at --size, each further
variant changes one group of knobs (`GROUPS`, in that order; a group in which the two presets agree
is skipped) to the --to preset's values, and the last variant is the --to preset itself. Each is
propagated and scored by `vidcorr.evaluate.davis.run_davis`, the path of `vidcorr eval davis`:

    .venv/bin/python scripts/preset_walk.py --root /work/shared/data/davis2016 --out /tmp/walk/uvc-crw \\
        --size 240 --threads 1 --json docs/benchmarks/preset-walk-uvc-crw-240.json

Resumable: a variant whose OUT/<NN-name>/results.json exists is read back, not run again; one an
interrupted run left half done continues (`run_davis(resume=True)`). Writes the walk as JSON
(each variant's knobs, what it changed, J&F/J/F and the step's change in J&F) and prints it as a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from vidcorr.cli.common import comma_list, positive_int
from vidcorr.errors import VidcorrError
from vidcorr.evaluate.davis import run_davis
from vidcorr.io.atomic import write_json_atomic, write_text_atomic
from vidcorr.presets import PRESETS, PropagationPreset, customised_preset, preset_knobs

# (label, knobs) in walking order. Knob names are `PropagationPreset.with_overrides` keys (topk's
# reached by name). L2 normalisation and temperature go together: a temperature is only meaningful
# for one feature scale (raw dot products at 0.05 saturate the softmax). The weighting before the
# selection: per-frame top-k with top-k-then-softmax is defined, joint top-k of softmax_topk's
# per-frame probabilities too, so either order is a protocol; this one changes the arithmetic first.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("L2 + temperature", ("l2_normalise", "temperature")),
    ("top-k then softmax", ("normalisation",)),
    ("joint top-k", ("scope", "k")),
    ("local window", ("radius", "shape", "window_first")),
    ("context length", ("n_previous",)),
    ("initial context", ("initial_context",)),
    ("label downsampling", ("label_downsample",)),
    ("context label min-max", ("normalise_context_labels",)),
    ("output resize + min-max", ("output_resize", "output_minmax")),
    ("input size rule", ("size",)),
    ("feature layer", ("feature_layer",)),
)
TOPK_KNOBS = ("k", "temperature", "radius", "shape", "scope", "normalisation", "tile", "chunk")


class Variant(NamedTuple):  # not a dataclass: tests/test_docs_commands.py loads the script outside sys.modules
    name: str  # the folder under OUT: "03-joint-top-k"
    step: str | None  # the group's label; None for the starting preset
    changed: dict[str, list]  # knob -> [before, after]
    preset: PropagationPreset


def knob(preset: PropagationPreset, name: str):
    """A knob's value, reaching into topk for its keys."""
    return getattr(preset.topk if name in TOPK_KNOBS else preset, name)


def walk(start: PropagationPreset, end: PropagationPreset) -> list[Variant]:
    """``start``, then one variant per group of `GROUPS` in which the presets differ, the last being
    ``end`` itself. ValueError if a knob that differs belongs to no group (the walk would not reach
    ``end``)."""
    variants = [Variant(f"00-{start.name}", None, {}, start)]
    current = start
    for label, names in GROUPS:
        changes = {n: knob(end, n) for n in names if knob(current, n) != knob(end, n)}
        if not changes:
            continue
        before = current
        # named for its place in the walk: results.json and the progress bar must not call it `start`
        current = replace(current.with_overrides(**changes), name=f"{start.name}-to-{end.name}-{len(variants):02d}")
        slug = label.replace(" + ", "-").replace(" ", "-")
        changed = {n: [_plain(knob(before, n)), _plain(knob(current, n))] for n in changes}
        variants.append(Variant(f"{len(variants):02d}-{slug}", label, changed, current))
    if replace(current, name=end.name) != end:
        left = {k for k, v in preset_knobs(replace(current, name=end.name)).items() if v != preset_knobs(end)[k]}
        raise ValueError(f"the groups do not cover every knob in which the presets differ: {', '.join(sorted(left))}")
    last = variants[-1]
    variants[-1] = Variant(last.name, last.step, last.changed, end)  # the named preset, as eval davis runs it
    return variants


def _plain(value):
    """A knob value as JSON holds it (the size policy as a dict)."""
    return asdict(value) if is_dataclass(value) else value


def score(variant: Variant, encoder, info: dict, args: argparse.Namespace) -> dict:
    """The variant's results.json, read back if it exists, else propagated and scored."""
    out = args.out / variant.name
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    return run_davis(encoder, variant.preset, args.root, out, sequences=args.sequences, device=args.device,
                     batch_size=args.batch_size, model_info=info, resume=True)


def row(variant: Variant, results: dict, previous: dict | None) -> dict:
    """One variant of the walk's JSON."""
    jf = results["J&F-Mean"]
    return {"variant": variant.name, "step": variant.step, "changed": variant.changed,
            "J&F": jf, "J": results["J-Mean"], "F": results["F-Mean"],
            "delta_J&F": None if previous is None else jf - previous["J&F"],
            "seconds": results.get("timing", {}).get("seconds"),
            "preset_knobs": preset_knobs(variant.preset)}


def markdown(rows: list[dict], complete: bool = True) -> str:
    """The walk as a Markdown table: one line per variant, what it changed and its scores; complete: the
    last row is the end preset (not a partial walk's, `--steps`), and says so."""
    lines = ["| # | step | changed (before → after) | J&F | J | F | Δ J&F |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        changed = "; ".join(f"{k} {_short(a)} → {_short(b)}" for k, (a, b) in r["changed"].items())
        delta = "" if r["delta_J&F"] is None else f"{r['delta_J&F']:+.3f}"
        step = r["step"] or f"start: `{r['preset_knobs']['name']}`"
        if complete and i == len(rows) - 1:
            step += f" (= `{r['preset_knobs']['name']}`)"
        lines.append(f"| {i} | {step} | {changed} | {r['J&F']:.3f} | {r['J']:.3f} | {r['F']:.3f} | {delta} |")
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    if isinstance(value, dict):  # a size policy
        return f"{value['mode']} {value['size']}" + (f" /{value['long_multiple']}" if value["long_multiple"] else "")
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)")
    p.add_argument("--out", type=Path, required=True, help="folder for each variant's eval davis output")
    p.add_argument("--from", dest="start", choices=sorted(PRESETS), default="uvc",
                   help="starting preset (default: uvc)")
    p.add_argument("--to", dest="end", choices=sorted(PRESETS), default="crw", help="final preset (default: crw)")
    p.add_argument("--size", type=positive_int, help="input short side for every variant, in each preset's "
                                                     "own sizing (default: the presets' own)")
    p.add_argument("--weights", type=Path, help="weights (default: the shipped default weights)")
    p.add_argument("--sequences", type=comma_list, help="comma-separated subset of the val sequences")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="frames per encoder batch (default: 4)")
    p.add_argument("--steps", type=positive_int, help="walk only this many steps after the start (a partial walk: a "
                                                      "costly resolution, one question; default: all)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, help="write the walk here (default: OUT/walk.json)")
    p.add_argument("--markdown", type=Path, help="also write the table here (default: OUT/walk.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vidcorr.api import resolve_encoder

    args = build_parser().parse_args(argv)
    if args.start == args.end:
        print(f"error: --from and --to are both {args.start!r}: nothing to walk", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start, end = (customised_preset(name, size=args.size) for name in (args.start, args.end))
    variants = walk(start, end)[:None if args.steps is None else args.steps + 1]
    rows: list[dict] = []
    encoders: dict[str | None, tuple] = {}  # by feature layer: the feature-layer step cuts the weights elsewhere
    try:
        for variant in variants:
            layer = variant.preset.feature_layer
            encoders[layer] = encoders.get(layer) or resolve_encoder(variant.preset, args.weights)
            encoder, info = encoders[layer]
            results = score(variant, encoder, info, args)
            rows.append(row(variant, results, rows[-1] if rows else None))
            print(f"{variant.name}: J&F {rows[-1]['J&F']:.4f}", flush=True)
    except VidcorrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    walk_json = {"from": args.start, "to": args.end, "size": args.size, "steps": len(rows) - 1,
                 "root": str(args.root),
                 "sequences": sorted(results["per_sequence"]), "model": info, "torch_threads": torch.get_num_threads(),
                 "variants": rows}
    json_path = args.json or args.out / "walk.json"
    write_json_atomic(walk_json, json_path)
    table = markdown(rows, complete=len(rows) == len(walk(start, end)))
    write_text_atomic(args.markdown or args.out / "walk.md", table)
    print(table, end="")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
