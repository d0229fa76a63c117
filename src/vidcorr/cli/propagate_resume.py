"""`vidcorr propagate --resume`: what a stopped propagation keeps, and the checks before it continues.

A run builds its results in ``OUT.partial`` (`vidcorr.io.atomic.resumable_dir`), renamed to OUT when
every frame is done. In it, `STATE` holds what the results on disk do not: the propagator's state
(`vidcorr.propagate.Propagator.state`: the ring buffer's labels, the shot-cut watch; no features, which
a resume embeds again from the frames), the per-frame records kept in memory (keypoints, UVC-track's
boxes), the time spent, and the run's stamp: what must be the same for a resume to give the results of
an uninterrupted run (input, first-frame annotation, model, preset, outputs). States are taken at the
end of each encoder batch (a resumed run's batches must be the first run's, `Propagator.resume`) and
written every `SAVE_SECONDS` and on Ctrl-C / SIGTERM, atomically: a kill during a write leaves the
previous one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from vidcorr.errors import InputError
from vidcorr.io.atomic import atomic_file, partial_path

STATE = ".propagate-state.pt"
FORMAT = "vidcorr-propagate-state/1"
# Seconds between saves: a kill loses at most this much work plus a batch. A save writes the ring
# buffer's labels (1.0 MB for crw's 20 frames of one object at 480p) and fsyncs the results written
# since the last one: tens of ms, invisible once a minute (docs/propagation.md, "Long videos").
SAVE_SECONDS = 60.0


def annotation_digest(args: argparse.Namespace) -> dict[str, Any]:
    """The first-frame annotation as a stamp records it: its kind, its file (which only names it in a
    refusal: `check_stamp`) and the sha256 of its bytes."""
    for kind in ("mask", "keypoints", "labels"):
        path = getattr(args, kind)
        if path is not None:
            return {"kind": kind, "file": str(Path(path).absolute()),
                    "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return {"kind": "box", "box": list(args.box)}


def input_record(source, max_frames: int | None) -> dict[str, Any]:
    """The whole input (``source`` before ``--max-frames`` cuts it) as a stamp records it: frame
    size, bytes (the file's, or the frame files' together) and, without ``max_frames``, frames (with
    it, the frames propagated are the run's ``max_frames``: a count of the whole video would cost a
    long video's demuxing, and one of the first N would name another --max-frames "other input").
    Not its path: the same video moved elsewhere continues."""
    files = source.files if source.files is not None else [source.path]
    return {"frames": source.num_frames if max_frames is None else None,
            "size": f"{source.size[1]}x{source.size[0]}", "bytes": sum(os.path.getsize(f) for f in files)}


def run_stamp(args: argparse.Namespace, input_rec: dict, model_info: dict, preset_record: dict, outputs: str) -> dict:
    """What makes a resumed run's results those of an uninterrupted one (compared key by key as the
    eval commands' run records are, `vidcorr.evaluate.runs`); ``input_rec``: `input_record`'s."""
    return {"command": "propagate", "input": input_rec, "annotation": annotation_digest(args),
            "model": model_info, "preset": preset_record,
            "run": {"outputs": outputs, "max_frames": args.max_frames, "batch_size": args.batch_size,
                    "device": args.device, "track": bool(args.track), "labels_dtype": args.labels_dtype,
                    "video": not args.no_video, "fps": args.fps}}


def check_partial(out: Path, resume: bool) -> dict[str, Any] | None:
    """Before anything is read: the saved state to continue (with ``resume``), else None.
    `InputError` for a partial folder without ``resume`` (never silently reused or thrown away),
    and for ``resume`` with nothing resumable."""
    partial = partial_path(out)
    if not resume:
        if partial.exists():
            what = ("a stopped `vidcorr propagate`'s results so far: add --resume to continue it, or"
                    if (partial / STATE).is_file() else
                    "what a `vidcorr propagate` killed before its first save left (nothing to resume):")
            raise InputError(partial, f"holds {what} delete it to start again")
        return None
    if not partial.is_dir():
        raise InputError(out, f"nothing to resume: no {partial} (what a stopped run of this command keeps); "
                              "run it without --resume")
    if not (partial / STATE).is_file():
        raise InputError(partial, "holds no saved progress (killed before its first save): delete it and run "
                                  "the command without --resume")
    return load_state(partial / STATE)


def load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign
        raise InputError(path, f"unreadable saved state ({type(error).__name__}: {error}); delete "
                               f"{path.parent} and run the command without --resume") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(path, f"not a saved `vidcorr propagate` state (expected format {FORMAT})")
    return state


def check_stamp(partial: Path, saved: dict[str, Any], stamp: dict) -> None:
    """`InputError` naming ``partial`` unless ``stamp`` is the stopped run's, naming what differs
    with both values."""
    from vidcorr.evaluate.runs import stamp_changes

    earlier = saved["stamp"]
    # the annotation by its bytes: a mask moved elsewhere still resumes; another one's refusal names both files
    if earlier.get("annotation", {}).get("sha256") == stamp["annotation"].get("sha256"):
        earlier, stamp = (_without_annotation_file(record) for record in (earlier, stamp))
    changes = stamp_changes(earlier, stamp)
    if changes:
        raise InputError(partial, f"holds a stopped propagation with {changes}: cannot "
                                  "resume it; give the input, first-frame annotation, model and options it was "
                                  "started with, or delete it")


def _without_annotation_file(stamp: dict) -> dict:
    return {**stamp, "annotation": {k: v for k, v in stamp.get("annotation", {}).items() if k != "file"}}


def _json_ready(stamp: dict) -> dict:
    """``stamp`` as it reads back from a state (tuples as lists), so that the two compare equal."""
    return json.loads(json.dumps(stamp))


class StateSaver:
    """Takes the propagator's state at each batch end (`take`: references, no copy) and writes the
    last one taken every `SAVE_SECONDS` (`maybe_save`) and on a stop (`save`)."""

    def __init__(self, partial: Path, stamp: dict, records: list, *, elapsed_before: float = 0.0,
                 saved_frames: int = 0):
        self.path, self.stamp, self.records = partial / STATE, _json_ready(stamp), records
        self.elapsed_before, self.started = elapsed_before, time.perf_counter()
        self.saved_frames = saved_frames  # frames done as of the state on disk (0: none written)
        self._taken: tuple[dict, int, float] | None = None
        self._last = time.monotonic()
        self._synced: set[str] = set()  # result files fsynced by an earlier save of this session

    def elapsed(self) -> float:
        """Seconds spent on this run, every session together."""
        return self.elapsed_before + time.perf_counter() - self.started

    def take(self, state: dict[str, Any]) -> None:
        """The state after frame ``state["frames_taken"]``, its results written."""
        self._taken = (state, state["frames_taken"] + 1, self.elapsed())

    def maybe_save(self) -> None:
        if time.monotonic() - self._last >= SAVE_SECONDS:
            self.save()

    def save(self) -> None:
        """Write the last state taken, if newer than the one on disk. The results before it are synced
        first: after a power cut, a state on disk must not name results that are not."""
        self._last = time.monotonic()
        if self._taken is None or self._taken[1] <= self.saved_frames:
            return
        state, frames, elapsed = self._taken
        propagator = {**state, "context": [{**slot, "labels": None if slot["labels"] is None else
                                            slot["labels"].detach().to("cpu").clone()}
                                           for slot in state["context"]]}
        self._sync_results()
        with atomic_file(self.path) as tmp:
            torch.save({"format": FORMAT, "stamp": self.stamp,
                        "frames_done": frames, "elapsed": elapsed, "propagator": propagator,
                        "records": list(self.records[:frames])}, tmp)
            _fsync(tmp)
        _fsync(self.path.parent)  # the rename into place
        self.saved_frames = frames

    def _sync_results(self) -> None:
        """fsync the result files written since the last save, and the folders naming them: this run's
        files only (os.sync() waited for every file system's dirty pages, other jobs' included)."""
        partial = self.path.parent
        for folder in [partial, *(path for path in partial.iterdir() if path.is_dir())]:
            for entry in os.scandir(folder):
                if entry.is_file() and entry.name != STATE and entry.path not in self._synced:
                    _fsync(entry.path)
                    self._synced.add(entry.path)
            _fsync(folder)


def _fsync(path: str | Path) -> None:
    """Flush a file's or a folder's (its entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
