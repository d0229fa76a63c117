"""The run record of the eval commands (`RUN_STAMP`, ``OUT/.run.json``): which command, model,
protocol and data write OUT and which of its items (sequences, videos) they finished, so that
``--resume`` continues only the same run, names what changed otherwise, and cleans up after a killed
or unstarted one; and the output folder's checks (`check_output_folder`).

A runner opens its output folder with `recorded_run` and writes each item's outputs so that they
appear complete or not at all (a temporary folder or file renamed into place); the record names an
item only once its outputs are in place, so an item the record does not name is never trusted: a
resumed run does it again. None of it propagates or tracks, hence a module apart from the runners.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vidcorr.errors import InputError
from vidcorr.io.atomic import check_output_path, remove_atomic_leftovers, write_json_atomic

log = logging.getLogger(__name__)

RUN_STAMP = ".run.json"  # which command, model, protocol and data wrote this folder, and what it finished
# Under torchrun each rank but 0 records the items it finished in a file of its own (same schema,
# its items only): no two processes ever write one file, so no lock is needed (a lock file is
# unreliable on network file systems). Rank 0 writes RUN_STAMP, merges the rank files into it when
# the ranks stop, and removes them; a run killed before that left them, and the next run (any world
# size, or a single process) reads RUN_STAMP with them merged in (`_merged_record`). A rank file of
# another stamp is ignored: its items are not trusted and are done again.
RANK_RECORD = ".run.rank{}.json"
# A record without a command was written by `eval davis`, the only command that kept one then.
_FIRST_COMMAND = "eval davis"


def used_folder_message(command: str) -> str:
    """A used output folder refused without --resume (by the runner, and the CLI before the model loads)."""
    return (f"output folder exists and is not empty: --resume continues the `{command}` run it holds (same "
            "model and protocol); otherwise choose another --out or remove it")


def check_output_folder(out_dir: Path, resume: bool, command: str) -> None:
    """`InputError` naming ``out_dir`` unless ``command``'s runner may write there: a file in the way
    or a read-only parent (refused before hours of work); a used folder without ``resume`` (writing
    into it would mix runs: the items not done again would keep another model's outputs, which `score`
    would score beside the new ones); with ``resume``, a used folder that holds no run record
    (`RUN_STAMP`): another command's output (resumed, an `eval jhmdb` folder would lose its
    results.json to the DAVIS one) or the user's own files, not a run to continue."""
    check_output_path(out_dir, folder=True, empty=not resume, not_empty=used_folder_message(command))
    if resume and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / RUN_STAMP).is_file():
        raise InputError(out_dir, f"holds no `{command}` run to resume (no {RUN_STAMP}, the record of the "
                                  "model, protocol and finished items a run keeps there): choose another --out")


class RunRecord:
    """The record of one run in ``out_dir/RUN_STAMP``: its ``stamp`` (what makes two runs' results
    interchangeable), the items ``kept`` from the sessions before this one, every item ``finished``
    so far, in order, and the ``times`` each took ({"frames": n, "seconds": s, ...} per item), so
    that a resumed run reports the time of the whole run, not of its last session."""

    def __init__(self, out_dir: Path, stamp: dict, kept: list[str], times: dict[str, dict] | None = None,
                 path: Path | None = None):
        self.out_dir, self.stamp = out_dir, stamp
        self.path = path or out_dir / RUN_STAMP  # a rank's own file under torchrun (`RANK_RECORD`)
        self.kept = list(kept)
        self.finished = list(kept)
        self.times = {name: dict(time) for name, time in (times or {}).items() if name in kept}
        self.ranks, self.wall_seconds = 1, None  # a torchrun session's ranks and wall time (`run_items`)

    def finish(self, name: str, time: dict[str, float] | None = None) -> None:
        """Record ``name`` as finished, with what it took (``time``): call once its outputs are in
        place, never before."""
        self.finished.append(name)
        if time is not None:
            self.times[name] = dict(time)
        self.write()

    def totals(self) -> dict[str, float]:
        """Each measure of ``times`` summed over the finished items, in their order (so a resume with
        nothing left to do reports the sums the finished run reported). An item of a record written
        before times were recorded adds nothing."""
        sums: dict[str, float] = {}
        for name in self.finished:
            for key, value in self.times.get(name, {}).items():
                sums[key] = sums.get(key, 0) + value
        return sums

    def write(self) -> None:
        record = {**self.stamp, "finished": self.finished,
                  "timing": {name: self.times[name] for name in self.finished if name in self.times}}
        # NaN refused: no JSON, and unequal to itself when a resume compares stamps
        write_json_atomic(record, self.path)


@contextlib.contextmanager
def recorded_run(out_dir: Path, stamp: dict, names: Sequence[str], *, resume: bool, done: Callable[[str], bool],
                 folders: Iterable[Path] = ()) -> Iterator[RunRecord]:
    """Open ``out_dir`` for a run of ``stamp["command"]`` over the items ``names`` and yield its record.

    ``out_dir`` is created when missing (`check_output_folder` has passed). resume: keep the items
    that the run recorded there finished and whose outputs are in place (``done(name)``); a record
    of another command or configuration is an `InputError` naming ``out_dir`` (`finished_items`).
    A resume first deletes the temporary files a killed run left in ``out_dir`` and ``folders``
    (`remove_killed_run_files`). A run that fails or is stopped before any item is finished removes
    its record, the empty ``folders`` (deepest first) and ``out_dir`` if it created it: nothing is
    left to resume, and the same command, rerun, would be refused as a used folder.
    """
    folders = list(folders)
    record, created = open_record(out_dir, stamp, names, resume=resume, done=done, folders=folders)
    try:
        yield record
    except BaseException:
        if not record.finished:  # nothing to resume: no folder left that refuses the next run as a used one
            remove_unstarted_run(out_dir, created, folders)
        raise


def open_record(out_dir: Path, stamp: dict, names: Sequence[str], *, resume: bool, done: Callable[[str], bool],
                folders: Sequence[Path] = ()) -> tuple[RunRecord, bool]:
    """What `recorded_run` does before its items: -> the run's record, written, and whether
    ``out_dir`` was created. Under torchrun rank 0 alone calls it, before the ranks start."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = finished_items(out_dir, stamp, names, done) if resume else []
    if kept:
        log.info("resuming %s: %d of %d already done", out_dir, len(kept), len(names))
    if resume and (out_dir / RUN_STAMP).is_file():  # a run of ours, and this one (else refused above):
        remove_killed_run_files(out_dir, folders)  # never in a folder that held no run (a user's temporaries)
    times = _merged_record(out_dir).get("timing") if kept else None
    record = RunRecord(out_dir, stamp, kept, times if isinstance(times, dict) else None)
    record.write()
    _remove_rank_records(out_dir)  # merged into the record just written (after it: a kill between loses nothing)
    return record, created


def merge_rank_records(record: RunRecord, names: Sequence[str]) -> None:
    """Rank 0, once every rank stopped: take the items the other ranks recorded (`RANK_RECORD`) into
    ``record`` (the kept ones first, then the rest in the order of ``names``, as a single process
    records them), write it if it names any item, and remove the rank files."""
    ranked, times = _rank_items(record.out_dir, record.stamp)
    done = set(record.finished) | set(ranked)
    record.finished = record.kept + [name for name in names if name in done and name not in record.kept]
    record.times.update({name: time for name, time in times.items() if name in done})
    if record.finished:
        record.write()
    _remove_rank_records(record.out_dir)


def _rank_items(out_dir: Path, stamp: dict) -> tuple[list[str], dict[str, dict]]:
    """The items (and their times) that the `RANK_RECORD` files in ``out_dir`` of a run of ``stamp``
    name; a file of another run or unreadable is skipped with a warning (its items are done again)."""
    items, times = [], {}
    for path in sorted(out_dir.glob(RANK_RECORD.format("*"))):
        try:
            ranked = _read_record(path)
        except InputError as error:
            log.warning("%s: skipped, its items are done again", error)
            continue
        if _stamp_of(ranked) != _stamp_of(json.loads(json.dumps(stamp))):
            log.warning("%s: skipped, a record of another run: its items are done again", path)
            continue
        finished = [name for name in ranked.get("finished", []) if isinstance(name, str)]
        items += [name for name in finished if name not in items]
        timing = ranked.get("timing")
        times.update({k: v for k, v in timing.items() if k in finished} if isinstance(timing, dict) else {})
    return items, times


def _stamp_of(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("finished", "timing")}


def _merged_record(out_dir: Path) -> dict:
    """``out_dir/RUN_STAMP`` with the items of the rank files of the same run (`RANK_RECORD`) that a
    run killed under torchrun left beside it."""
    record = _read_record(out_dir / RUN_STAMP)
    items, times = _rank_items(out_dir, _stamp_of(record))
    finished = record.get("finished", [])
    timing = record.get("timing") if isinstance(record.get("timing"), dict) else {}
    if items and isinstance(finished, list):
        record = {**record, "finished": finished + [name for name in items if name not in finished],
                  "timing": {**timing, **times}}
    return record


def recorded_items(out_dir: Path) -> list[str]:
    """The items that the run recorded in ``out_dir`` finished, the rank files of the same run merged in
    (`_merged_record`, as ``--resume`` reads them); none without a readable record."""
    try:
        finished = _merged_record(out_dir).get("finished")
    except InputError:  # no record, or unreadable: nothing a resume keeps
        return []
    return [name for name in finished if isinstance(name, str)] if isinstance(finished, list) else []


def _remove_rank_records(out_dir: Path) -> None:
    for path in out_dir.glob(RANK_RECORD.format("*")):
        path.unlink(missing_ok=True)


def remove_unstarted_run(out_dir: Path, created: bool, folders: Iterable[Path] = ()) -> None:
    """Undo a run that failed or was stopped before its first item was finished: its run record
    (which would make the same command, rerun, fail as "output folder exists and is not empty" over
    a folder holding nothing to resume), the empty ``folders`` (deepest first), and ``out_dir`` itself
    when this run ``created`` it and it is empty now (a failed item removes its own files)."""
    (out_dir / RUN_STAMP).unlink(missing_ok=True)
    _remove_rank_records(out_dir)
    for folder in (*folders, *((out_dir,) if created else ())):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def finished_items(out_dir: Path, stamp: dict, names: Sequence[str], done: Callable[[str], bool]) -> list[str]:
    """The items of ``names`` that the run recorded in ``out_dir/RUN_STAMP`` finished and whose
    outputs are in place (``done``); none without a record. `InputError` naming ``out_dir`` if that
    run was another command's, or had another model, protocol, data or settings (a key either record
    lacks counts as changed), naming what changed (`_changes`)."""
    path = out_dir / RUN_STAMP
    if not path.is_file():
        return []
    earlier = _merged_record(out_dir)
    command = earlier.get("command", _FIRST_COMMAND)
    if command != stamp["command"]:
        raise InputError(out_dir, f"holds a run of `{command}`, not of `{stamp['command']}`: cannot resume it; "
                                  "choose a new --out")
    changes = stamp_changes({**earlier, "command": command}, stamp, ignored=("finished", "timing"))
    if changes:
        raise InputError(out_dir, f"holds a run with {changes}: cannot resume it; "
                                  "choose a new --out or drop --resume")
    return [name for name in names if name in earlier.get("finished", []) and done(name)]


def stamp_changes(earlier: dict, stamp: dict, ignored: Sequence[str] = ()) -> str | None:
    """What differs between a stopped run's record ``earlier`` and this run's ``stamp`` (keys in
    ``ignored`` aside; a key either lacks counts as changed), worded with both values as a refusal
    names them (`_changes`), or None when a resume would give an uninterrupted run's results."""
    # as it reads back (tuples become lists); an --encoder file by its absolute path on both sides: an
    # earlier version's record, and a model_info from Python (`load_external_encoder`), hold it as typed
    recorded = _with_resolved_model(json.loads(json.dumps(stamp)))
    earlier = _with_resolved_model(earlier)
    recorded, earlier = _later_fields_both_recorded(recorded, earlier)
    changed = sorted(k for k in (set(recorded) | set(earlier)) - set(ignored)
                     if _compared(k, earlier) != _compared(k, recorded))
    return _changes(changed, earlier, recorded) if changed else None


def _with_resolved_model(record: dict) -> dict:
    """``record`` with its model's --encoder spec as `resolved_encoder_spec` gives it and its --weights
    by their absolute path (what a refusal shows), a relative file read from the current folder."""
    model = record.get("model")
    if not isinstance(model, dict):
        return record
    if isinstance(model.get("encoder"), str):
        model = {**model, "encoder": resolved_encoder_spec(model["encoder"])}
    if isinstance(model.get("weights"), str):
        model = {**model, "weights": str(Path(model["weights"]).resolve())}
    return {**record, "model": model}


# --encoder's fields that earlier versions did not record: the file imported (9c3b666), its bytes' digest
_LATER_MODEL_FIELDS = ("module_file", "module_sha256")


def _later_fields_both_recorded(one: dict, other: dict) -> tuple[dict, dict]:
    """Both records with each of their --encoder's `_LATER_MODEL_FIELDS` only if both hold it: a
    record of an earlier version, which did not record it, still resumes (compared by the rest)."""
    models = one.get("model"), other.get("model")
    if not all(isinstance(m, dict) for m in models):
        return one, other
    lacking = {key for key in _LATER_MODEL_FIELDS if sum(key in m for m in models) == 1}
    return tuple({**r, "model": {k: v for k, v in r["model"].items() if k not in lacking}} for r in (one, other))


def _compared(key: str, record: dict) -> Any:
    """``record[key]`` as two runs' records are compared: trained weights by their sha256, not their
    path, where the model records one (`vidcorr.api.resolve_encoder` does): the same file named from
    another folder, by its absolute path or through a link was refused as another model."""
    value = record.get(key)
    if key == "model" and isinstance(value, dict) and isinstance(value.get("sha256"), str):
        return {k: v for k, v in value.items() if k != "weights"}
    return value


def resolved_encoder_spec(spec: str) -> str:
    """An ``--encoder`` spec whose MODULE is a Python file, with that file's absolute path, symlinks
    resolved ("my_models.py:build" -> "/home/me/work/my_models.py:build"), as a run record holds it:
    recorded as typed, the same relative path from another folder would resume a run of another file,
    and the absolute path of the same file would be refused as another model. A module name
    ("my_package.models:build") is returned as it is."""
    from vidcorr.models.external import names_a_file, split_spec  # torch: only where an encoder is named

    parts = split_spec(spec)
    if parts is None or not names_a_file(parts[0]):
        return spec
    return f"{Path(parts[0]).resolve()}:{parts[1]}"


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"unreadable run record: {error}") from None
    if not isinstance(record, dict):
        raise InputError(path, "unreadable run record: not a JSON object")
    return record


def _changes(changed: list[str], before: dict, after: dict) -> str:
    """What differs between two runs' records, for a message, each with both values: "another model
    (lab-pixels -> random-resnet18)" (`_model_changes`), "another protocol (ope -> vot-baseline),
    max_frames (5 -> 6)", a preset's knobs one by one (`_preset_changes`), and so a tracker's settings
    ("other settings (topk 8 -> 5)"); another tracker by both names ("another tracker (dcf ->
    localise)"), without the settings it brings."""
    # The preset's record holds every knob, and its changes are named one by one: "another preset"
    # for a changed --size would send users looking for a --preset they had not changed.
    what = []
    if "tracker" in changed:  # both names: the settings, each "(not recorded)" on one side, would say nothing
        what.append(f"another tracker ({before.get('tracker')} -> {after.get('tracker')})")
        changed = [key for key in changed if key not in ("tracker", "settings")]
    detailed = [key for key in changed if key not in ("preset", "model")
                and isinstance(before.get(key), dict) and isinstance(after.get(key), dict)]
    # each key with both values: "another protocol" alone leaves users comparing command lines for the change
    others = [_model_changes(before.get(key), after.get(key)) if key == "model" else
              f"{key} ({_value_text(key, before, _UNSET)} -> {_value_text(key, after, _UNSET)})"
              for key in changed if key != "preset" and key not in detailed]
    what += [f"another {', '.join(others)}"] if others else []
    if "preset" in changed:
        what.append(_preset_changes(before.get("preset"), after["preset"]))
    what += [f"other {key} ({_knob_changes(_flat_knobs(before[key]), _flat_knobs(after[key]))})" for key in detailed]
    return " and ".join(what)


def _preset_changes(before: dict | str | None, after: dict | str) -> str:
    """How two runs' `preset_knobs` records differ, for a message: "another preset (crw -> stt)", or
    the knobs of the same preset that changed, "other preset knobs (size 240 -> 200, topk.k 10 -> 5)"
    (as the records name them: --topk sets topk.k, --context n_previous). A record may hold only
    the preset's name (the trackers use only its feature layer)."""
    name_before = before.get("name") if isinstance(before, dict) else before
    name_after = after["name"] if isinstance(after, dict) else after
    if not isinstance(before, dict) or not isinstance(after, dict) or name_before != name_after:
        return f"another preset ({name_before or 'not recorded'} -> {name_after})"
    return f"other preset knobs ({_knob_changes(_flat_knobs(before), _flat_knobs(after))})"


# What a key means where a stamp leaves it out (at its default, so that the records of earlier runs
# still match: `vidcorr.evaluate.davis.run_stamp`), and where it holds a dict: `_value_text`.
_UNSTAMPED = {"resolution": ("480p", None), "track": ("off", "on")}
_UNSET = "(not recorded)"  # a key or knob the record of an older version lacks


def _value_text(key: str, record: dict, unset: str) -> str:
    """``record[key]`` for a message: as `_knob_text` writes it; a dict (a record's group of
    settings, the other record lacking it) by what it means (`_UNSTAMPED`) or "recorded"; a key the
    record lacks by what its absence means, else ``unset``."""
    absent, present = _UNSTAMPED.get(key, (unset, None))
    if key not in record:
        return absent
    value = record[key]
    return (present or "recorded") if isinstance(value, dict) else _knob_text(value)


def _model_changes(before: dict | None, after: dict | None) -> str:
    """"model (lab-pixels -> random-resnet18)": each model by what the user named (--encoder's spec,
    the weights' path or the floor); the same name on both sides (weights retrained in place, an
    edited encoder file) with the fields that differ: "model (w.safetensors, other sha256, steps)"."""
    def name(info: dict | None) -> str:
        info = info if isinstance(info, dict) else {}
        return str(info.get("encoder") or info.get("weights") or info.get("features") or _UNSET)

    if name(before) != name(after):
        return f"model ({name(before)} -> {name(after)})"
    before, after = before if isinstance(before, dict) else {}, after if isinstance(after, dict) else {}
    fields = [key for key in [*after, *(k for k in before if k not in after)] if before.get(key) != after.get(key)]
    # one module name, two files (another folder or PYTHONPATH): which files, or the user cannot tell; their
    # bytes differing goes without saying. One file's bytes differing: it was edited, and which file it is.
    if "module_file" in fields and "module_sha256" in fields:
        fields.remove("module_sha256")
    fields = [f"module_file {before.get(k)} -> {after.get(k)}" if k == "module_file" else
              f"module_sha256 ({after.get('module_file')} edited since that run)" if k == "module_sha256" else k
              for k in fields]
    return f"model ({name(after)}, other {', '.join(fields)})"


def _knob_changes(old: dict, new: dict) -> str:
    """"size 120 -> 96, topk.k 10 -> 5": the flat knobs that differ, in the new record's order."""
    return ", ".join(f"{k} {_knob_text(old.get(k, _UNSET))} -> {_knob_text(new.get(k, _UNSET))}"
                     for k in [*new, *(k for k in old if k not in new)] if old.get(k, _UNSET) != new.get(k, _UNSET))


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


def write_item_folder(out_dir: Path, name: str, write: Callable[[Path], int]) -> int:
    """``write(folder)`` into a hidden ``out_dir/.<name>.partial`` folder renamed ``out_dir/<name>``
    when complete -> what ``write`` returns: an interrupted item leaves nothing that a scorer or
    ``--resume`` would take for a result.

    An ``out_dir/<name>`` already there (a resumed run's item that its record did not name) is
    renamed aside (``.<name>.replaced``) and deleted once the new folder is in place; a stop
    (Ctrl-C, SIGTERM) between the two renames puts it back. Deleting it first would leave, after a
    stop before the rename, a complete ``.<name>.partial`` and no ``<name>`` (or a half-deleted one)."""
    tmp, final, old = out_dir / f".{name}.partial", out_dir / name, out_dir / f".{name}.replaced"
    for leftover in (tmp, old):  # a run killed (SIGKILL: no cleanup runs) while it wrote this item left them
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        result = write(tmp)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException:
        if old.exists() and not final.exists():  # stopped between the renames: the folder as it was
            old.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return result


def remove_killed_run_files(out_dir: Path, folders: Iterable[Path] = ()) -> list[Path]:
    """Delete the temporary files of `atomic_file` that a run killed while writing one (SIGTERM,
    SIGKILL: no cleanup runs) left in ``out_dir`` and ``folders``, and log them; returns them.

    Only names of exactly that pattern go: they are never a result (and a resumed run would otherwise
    keep them for ever). Folders renamed into place only when complete need no look.
    """
    removed = remove_atomic_leftovers([out_dir, *folders])
    if removed:
        log.info("removed %d temporary file(s) left by a killed run: %s", len(removed),
                 ", ".join(str(p.relative_to(out_dir)) for p in removed))
    return removed
