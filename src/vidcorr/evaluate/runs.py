"""The run record of `eval davis` (`RUN_STAMP`, ``OUT/.run.json``): which model, protocol and split
write OUT and which sequences they finished, so that ``--resume`` continues only the same run, names
what changed otherwise, and cleans up after a killed or unstarted one; and the output folder's
checks (`check_output_folder`). Apart from `vidcorr.evaluate.davis` since none of it propagates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from vidcorr.errors import InputError
from vidcorr.evaluate.davis_overlays import OVERLAYS
from vidcorr.io.atomic import check_output_path, is_atomic_leftover, write_text_atomic
from vidcorr.io.davis import DavisDataset
from vidcorr.presets import PropagationPreset, preset_knobs
from vidcorr.track_uvc import TrackOptions

log = logging.getLogger(__name__)

RUN_STAMP = ".run.json"  # which model, protocol and split wrote this folder, and which sequences it finished
# `run_davis`' refusal of a used output folder without resume (and the CLI's, before the model loads)
USED_OUT = ("output folder exists and is not empty: --resume continues the run it holds (same model and "
            "protocol); otherwise choose another --out or remove it")


def remove_unstarted_run(out_dir: Path, created: bool) -> None:
    """Undo a run that failed or was stopped before its first sequence was finished: its run
    record (which made the same command, rerun, fail as "output folder exists and is not empty"
    over a folder holding nothing to resume), an empty overlays folder, and ``out_dir`` itself when
    this run ``created`` it and it is empty now (a failed sequence removes its own files)."""
    (out_dir / RUN_STAMP).unlink(missing_ok=True)
    for folder in (out_dir / OVERLAYS, *((out_dir,) if created else ())):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def check_output_folder(out_dir: Path, resume: bool) -> None:
    """`InputError` naming ``out_dir`` unless `run_davis` may write there: a file in the way or a
    read-only parent (refused before hours of work); a used folder without ``resume`` (writing into
    it mixed runs: the sequences not propagated again kept another model's masks, which `score
    davis` then scored beside the new ones); with ``resume``, a used folder that holds no run record
    (`RUN_STAMP`): another command's output (an `eval jhmdb` folder lost its results.json to the
    DAVIS one) or the user's own files, not a run to continue."""
    check_output_path(out_dir, folder=True, empty=not resume, not_empty=USED_OUT)
    if resume and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / RUN_STAMP).is_file():
        raise InputError(out_dir, f"holds no `eval davis` run to resume (no {RUN_STAMP}, the record of the "
                                  "model, protocol and finished sequences a run keeps there): choose another --out")


def write_stamp(out_dir: Path, stamp: dict, finished: list[str]) -> None:
    write_text_atomic(out_dir / RUN_STAMP, json.dumps({**stamp, "finished": finished}, indent=2) + "\n")


def finished_sequences(out_dir: Path, stamp: dict, sequences: list[str]) -> list[str]:
    """The sequences of ``sequences`` that the run recorded in ``out_dir/RUN_STAMP`` finished
    (none without a record). `InputError` naming ``out_dir`` if that run had another model,
    protocol, split or tracking (a key either record lacks counts as changed); a changed protocol
    is named knob by knob (`_preset_changes`)."""
    path = out_dir / RUN_STAMP
    if not path.is_file():
        return []
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"unreadable run record: {error}") from None
    recorded = json.loads(json.dumps(stamp))  # as it reads back: tuples become lists
    changed = sorted(k for k in (set(recorded) | set(earlier)) - {"finished"} if earlier.get(k) != recorded.get(k))
    if changed:
        # The preset's record holds every knob: "another preset" for a changed --size sent users
        # looking for a --preset they had not changed, so its changes are named one by one.
        others = [key for key in changed if key != "preset"]
        what = [f"another {', '.join(others)}"] if others else []
        if "preset" in changed:
            what.append(_preset_changes(earlier.get("preset"), recorded["preset"]))
        raise InputError(out_dir, f"holds a run with {' and '.join(what)}: cannot resume it; "
                                  "choose a new --out or drop --resume")
    return [seq for seq in sequences if seq in earlier.get("finished", []) and (out_dir / seq).is_dir()]


def _preset_changes(before: dict | None, after: dict) -> str:
    """How two runs' `preset_knobs` records differ, for a message: "another preset (crw -> stt)", or
    the knobs of the same preset that changed, "other preset knobs (size 240 -> 200, topk.k 10 -> 5)"
    (as the records name them: --topk sets topk.k, --context n_previous)."""
    if not isinstance(before, dict) or before.get("name") != after["name"]:
        name = before.get("name") if isinstance(before, dict) else None
        return f"another preset ({name or 'not recorded'} -> {after['name']})"
    old, new = _flat_knobs(before), _flat_knobs(after)
    unset = "(not recorded)"  # a knob the record of an older version lacks
    return "other preset knobs (" + ", ".join(
        f"{k} {_knob_text(old.get(k, unset))} -> {_knob_text(new.get(k, unset))}"
        for k in [*new, *(k for k in old if k not in new)] if old.get(k, unset) != new.get(k, unset)) + ")"


def _flat_knobs(knobs: dict) -> dict:
    """{"topk": {"k": 10}, "n_previous": 20} -> {"topk.k": 10, "n_previous": 20}, without "name". The
    size policy reads as --size gives it: "native", "240" (short side) or "320x320" (square)."""
    flat = {}
    for key, value in knobs.items():
        if key == "size" and isinstance(value, dict):
            side = value.get("size")
            flat[key] = {"native": "native", "square": f"{side}x{side}"}.get(value.get("mode"), side)
            flat["size.long_multiple"] = value.get("long_multiple")
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in _flat_knobs(value).items()})
        elif key != "name":
            flat[key] = value
    return flat


def _knob_text(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true / false / null, as the run record writes them
    return f"{value:g}" if isinstance(value, float) else str(value)


def remove_killed_run_files(out_dir: Path) -> list[Path]:
    """Delete the temporary files of `atomic_file` that a run killed while writing one (SIGTERM,
    SIGKILL: no cleanup runs) left in ``out_dir`` and ``out_dir/overlays``, and log them; returns them.

    Only names of exactly that pattern go: they are never a result (and a resumed run otherwise kept
    them for ever). The sequence folders need no look: they are renamed into place only when complete.
    """
    removed = []
    for folder in (out_dir, out_dir / OVERLAYS):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if is_atomic_leftover(path):
                path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by a killed run: %s", len(removed),
                 ", ".join(str(p.relative_to(out_dir)) for p in removed))
    return removed


def run_stamp(model_info: dict | None, preset: PropagationPreset, dataset: DavisDataset,
              track: TrackOptions | None) -> dict:
    """What makes two runs' results interchangeable (`RUN_STAMP`): model, protocol, data."""
    stamp = {"model": model_info or {}, "preset": preset_knobs(preset), "year": dataset.year, "split": dataset.split}
    if track is not None:  # absent for plain propagation, so earlier runs' stamps still match
        stamp["track"] = asdict(track)
    if dataset.resolution != "480p":  # likewise
        stamp["resolution"] = dataset.resolution
    return stamp
