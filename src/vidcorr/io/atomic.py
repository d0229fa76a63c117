"""Atomic outputs: build a file or folder beside its destination, move it into place at the end.

A write that fails or is interrupted halfway leaves the destination as it was (DESIGN.md, "Errors":
no half-written output). Every writer in vidcorr — result JSON, PNGs, videos, weights,
checkpoints, caches, output folders — goes through these helpers (`resumable_dir`: an output
folder that a stopped run keeps, for `propagate --resume`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from vidcorr.errors import InputError, said_elsewhere

log = logging.getLogger(__name__)
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside `sigterm_cleans_up`: unwinds the block as Ctrl-C does. A
    KeyboardInterrupt, so that every clean-up written for Ctrl-C runs for it too (the eval commands'
    run record, resume hint and torchrun ranks' stop together among them), not a copy of each."""


@dataclass
class _Block:
    """A running `sigterm_cleans_up` block: when SIGTERM came (``at``), the outputs `atomic_dir` put
    in place in it (``written``), and whether one is being put in place now (``deferring``: a
    SIGTERM then waits for the end of the move, ``pending``)."""

    at: float | None = None
    written: list[Path] = field(default_factory=list)
    deferring: bool = False
    pending: bool = False

    def stop(self) -> NoReturn:
        # Once: a second SIGTERM (a supervisor repeating itself) raised again inside the cleanup that
        # the first one started, and left part of the temporary output behind after all.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated


_blocks: list[_Block] = []  # the `sigterm_cleans_up` blocks running on the main thread, innermost last


def _block() -> _Block | None:
    """The innermost `sigterm_cleans_up` block, where this thread is the one its SIGTERM interrupts."""
    return _blocks[-1] if _blocks and threading.current_thread() is threading.main_thread() else None


def by_sigterm(interrupt: BaseException) -> bool:
    """Whether ``interrupt`` is SIGTERM unwinding a `sigterm_cleans_up` block, not Ctrl-C."""
    return isinstance(interrupt, _Terminated)


def seconds_since_sigterm() -> float | None:
    """Seconds since SIGTERM came to the `sigterm_cleans_up` block now running; None before one came,
    or outside such a block (the eval ranks wait for each other only so long after it)."""
    block = _block()
    return None if block is None or block.at is None else time.monotonic() - block.at


@contextlib.contextmanager
def sigterm_cleans_up(what: str, *, one_output: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM (`kill`, `timeout`, a container or job scheduler stopping, torchrun
    ending its ranks) unwinds it as Ctrl-C does, so `atomic_dir` and `atomic_file` remove their
    temporary output; then one line on stderr and SystemExit(143). Python's default, dying at once,
    left a hidden `.OUT.partial-*` folder holding part of the results. Further SIGTERMs are ignored
    while it unwinds, and the previous handler is restored after (the one the command line's
    start-up handler stands in for, where the block replaces that: `vidcorr.cli`, `takes_over_sigterm`);
    off the main thread (where no handler can be set) the block runs as it is.

    what: the command, for the message ("propagate"). one_output: the block writes one output
    folder (`atomic_dir`), and the line says whether SIGTERM came before it was in place ("nothing
    written") or after ("OUT was written in full"; a SIGTERM while it is being moved into place
    waits for the end of the move); False where the command says itself what it kept (the eval
    commands: the items finished before, `resume_hint`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    block = _Block()

    def terminate(signum, frame):
        block.at = block.at or time.monotonic()
        if block.deferring:  # atomic_dir is moving its finished output into place: it stops after
            block.pending = True
            return
        block.stop()

    _blocks.append(block)
    replaced = signal.signal(signal.SIGTERM, terminate)
    previous = getattr(replaced, "stands_in_for", replaced)  # not the start-up one's "while starting" after it
    try:
        yield
    except _Terminated as stop:
        if said_elsewhere(stop):  # under torchrun the lowest rank it stopped says it
            pass
        elif not one_output:
            print(f"vidcorr {what}: stopped by SIGTERM", file=sys.stderr)
        elif block.written:
            print(f"vidcorr {what}: stopped by SIGTERM after {block.written[-1]} was written in full", file=sys.stderr)
        else:
            print(f"vidcorr {what}: stopped by SIGTERM; nothing written", file=sys.stderr)
        raise SystemExit(SIGTERM_EXIT) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        _blocks.remove(block)


@contextlib.contextmanager
def _putting_in_place(out: Path) -> Iterator[None]:
    """`atomic_dir`'s move of its finished output into ``out``: a SIGTERM to the `sigterm_cleans_up`
    block around it waits for the end of the move, and then stops the command as written (it came
    between the rename and the end of the block, and the line said "nothing written" of a complete
    output). A move that fails raises its own error, the SIGTERM then dropped: the command fails anyway."""
    block = _block()
    if block is None:
        yield
        return
    block.deferring = True
    try:
        yield
        block.written.append(out)
    finally:
        block.deferring = False
    if block.pending:
        block.stop()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; it replaces ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (container formats are chosen by it). The result is
    made world-readable (``mkstemp`` creates 0600 files; results are meant to be shared).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# `atomic_file`'s temporary names: "." + the destination's name + "." + mkstemp's 8 random
# characters + ".tmp" + the destination's suffix (checked apart: it must be the name's own).
_TMP_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[^.]*)?)")


def is_atomic_leftover(path: Path) -> bool:
    """Whether ``path`` is a temporary file of `atomic_file`, which only a run killed while writing
    it (SIGTERM, SIGKILL: no clean-up runs) leaves behind; never a result."""
    match = _TMP_FILE.fullmatch(path.name)
    return (match is not None and Path(match["name"]).suffix == match["suffix"] and path.is_file()
            and not path.is_symlink())


def remove_atomic_leftovers(folders: Iterable[Path]) -> list[Path]:
    """Delete the temporary files of `atomic_file` (`is_atomic_leftover`) directly in each of
    ``folders`` that exists -> them, folder by folder in name order. For a run's own folders only,
    once the run is established: its files are the only ones written there."""
    removed = [path for folder in folders if folder.is_dir()
               for path in sorted(folder.iterdir()) if is_atomic_leftover(path)]
    for path in removed:
        path.unlink()
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(data: dict, path: str | Path) -> None:
    """Write ``data`` to ``path`` as indented JSON, atomically (results, score files, propagated
    keypoints and boxes). NaN or infinity is a ValueError before anything is written: JSON has no
    such value, and Python's "NaN" token breaks strict readers."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


NOT_EMPTY = "output folder exists and is not empty; choose another --out or remove it"


def check_output_path(path: str | Path, *, folder: bool, empty: bool = False, not_empty: str = NOT_EMPTY) -> None:
    """`InputError` naming ``path`` unless an output folder (``folder``) or file can be made there.

    Refused: a file where a folder goes or a folder where a file goes, and a nearest existing
    folder (``path`` itself for an existing output folder, else a parent) that is a file or not
    writable; with ``empty``, an output folder that holds anything (`atomic_dir`'s rule; the error
    says ``not_empty`` and names a killed run's leftovers). Cheap, so a command checks its output
    before its work: these ended a finished run (a scored split, a propagated video) in a raw
    traceback and lost its results.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputError(path, f"is a symbolic link to {os.readlink(path)}, which does not exist")
    if path.exists() and path.is_dir() != folder:
        raise InputError(path, "is a file, not a folder" if folder else "is a folder; expected a file name")
    if empty and path.is_dir() and any(path.iterdir()):
        raise InputError(path, not_empty + killed_run_note(p.name for p in path.iterdir()))
    full = path.absolute()
    nearest = next(p for p in ((full, *full.parents) if folder else full.parents) if p.exists())
    if not nearest.is_dir():
        raise InputError(path, f"cannot be created: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InputError(path, f"cannot be created: folder {nearest} is not writable")


def killed_run_note(names: Iterable[str]) -> str:
    """" (A: left by a run that was killed)" naming the temporary folders of `atomic_dir` among an
    output folder's entry ``names`` (a killed run cannot remove its own), else ""."""
    leftovers = sorted(name for name in names if ".partial-" in name)
    return f" ({', '.join(leftovers)}: left by a run that was killed)" if leftovers else ""


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, replaces: Callable[[list[Path]], list[Path]] | None = None) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block succeeds.

    ``out`` must not exist or be an empty folder (an existing result is never overwritten
    piecemeal); on any error the temporary folder is removed. A new ``out`` is the temporary folder,
    built beside it and renamed. An existing one (".", a symlink, a mount point: none can be
    removed and replaced) is filled in place: the temporary folder is made inside it and its entries
    are moved up at the end, so only ``out`` needs to be writable.

    ``replaces`` lets ``out`` hold an earlier result: given ``out``'s entries (this run's temporary
    folder left out) it returns those the new result replaces, raising `InputError` for anything
    else. It is asked before the work and again at the end, and the old entries give way only when
    the new ones are complete: an interrupted or failed run leaves the earlier result as it was.
    """
    out = Path(out)
    check_output_path(out, folder=True, empty=replaces is None)
    in_place = out.is_dir()
    if replaces is not None and in_place:
        replaces(sorted(out.iterdir()))  # refused before the work
    try:  # what check_output_path cannot foresee (a read-only file system, /proc) fails here, before any work
        if not in_place:
            out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out if in_place else out.parent, prefix=f".{out.absolute().name}.partial-"))
    except OSError as error:
        raise InputError(out, f"cannot create the output folder ({error.strerror or error})") from None
    try:
        yield tmp
        with _putting_in_place(out):
            if in_place:
                # by name: mkdtemp's path is absolute from Python 3.12 on, iterdir's relative for a relative out
                old = replaces([e for e in sorted(out.iterdir()) if e.name != tmp.name]) if replaces is not None else []
                _move_entries(tmp, out, replacing=old)
                _discard(tmp, out)
            else:
                tmp.chmod(0o755)
                tmp.rename(out)
    except BaseException:  # also after the move: tmp is gone then (renamed, or deleted by _discard)
        if tmp.exists() and not any(tmp.glob(".replaced-*/*")):  # else an earlier result that could not be put back
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _discard(tmp: Path, out: Path) -> None:
    """Delete the temporary folder, which holds only the replaced entries once the result is in
    ``out``. A Ctrl-C in the middle made the command fail although its result was complete, and
    the half-deleted .partial folder made the next run refuse ``out``: the deletion is finished
    first, then the interrupt goes on."""
    interrupt = None
    while True:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            break
        except KeyboardInterrupt as caught:
            interrupt = caught
    if interrupt is not None:
        log.warning("%s: interrupted after the result was in place; it is complete", out)
        raise interrupt


def _move_entries(tmp: Path, out: Path, replacing: list[Path]) -> None:
    """Move every entry of ``tmp`` into ``out`` in place of ``replacing`` (``out``'s entries the
    result replaces; ``out`` held nothing else when the run began), which go into ``tmp``: all of
    them or, on any failure, none (those already moved are removed again and the replaced ones put
    back). Renames within one file system: the swap takes moments, and a run killed during it
    leaves one folder, ``tmp``, which `check_output_path` names."""
    entries = sorted(tmp.iterdir())
    stash = Path(tempfile.mkdtemp(dir=tmp, prefix=".replaced-")) if replacing else tmp
    stashed: list[Path] = []
    moved: list[Path] = []
    try:
        for entry in replacing:
            entry.rename(stash / entry.name)
            stashed.append(entry)
        clashes = [e.name for e in entries if os.path.lexists(out / e.name)]
        if clashes:  # something wrote into OUT while the run used it
            raise InputError(out, f"{', '.join(clashes[:3])} appeared in the output folder during the run; "
                                  "nothing was moved in")
        for entry in entries:
            entry.rename(out / entry.name)
            moved.append(out / entry.name)
    except BaseException:
        _undo(moved, stashed, stash)
        raise


def _undo(moved: list[Path], stashed: list[Path], stash: Path) -> None:
    """Remove the entries ``moved`` into the output folder and put the ``stashed`` ones back, each
    step tried even when another fails (the error that started the undo is the one raised)."""
    for path in moved:
        with contextlib.suppress(OSError):
            _remove(path)
    for entry in stashed:
        with contextlib.suppress(OSError):
            (stash / entry.name).rename(entry)
    if stashed and any(stash.iterdir()):  # kept, not deleted with the temporary folder: say where
        log.error("%s: the earlier output could not be put back; it is in %s", stash.parents[1], stash)


def _remove(path: Path) -> None:
    """Delete a file, a symlink or a whole folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def partial_path(out: str | Path) -> Path:
    """Where `resumable_dir` builds ``out``: ``OUT.partial`` beside it (a fixed name, unlike
    `atomic_dir`'s, so that a resumed run finds it; visible, so that a user sees what a stop kept)."""
    full = Path(out).absolute()
    return full.parent / f"{full.name}.partial"


@contextlib.contextmanager
def resumable_dir(out: str | Path, state: str, *, resumed: bool) -> Iterator[Path]:
    """`atomic_dir` for a command that can continue where it stopped: yield `partial_path` (made, or
    with ``resumed`` the one a stopped run left), which becomes ``out`` when the block succeeds.

    ``out`` must not exist or be an empty folder; an empty folder gets the entries moved in. The
    partial folder stays where the block is interrupted (Ctrl-C, SIGTERM) once it holds the file
    ``state`` names, what a resume starts from; a run killed outright leaves it as it is. Otherwise
    it is deleted, except one ``resumed`` (an error of this session must not lose an earlier one's
    work). ``state`` is deleted from the finished ``out``, after the move: a kill between the two
    leaves a finished result with a stray hidden file, never a finished result that looks stopped.
    """
    out = Path(out)
    check_output_path(out, folder=True, empty=True)
    partial = partial_path(out)
    try:
        partial.mkdir(parents=True, exist_ok=resumed)
    except OSError as error:
        raise InputError(out, f"cannot create the output folder {partial} ({error.strerror or error})") from None
    try:
        yield partial
        with _putting_in_place(out):
            if out.is_dir():  # an empty folder (".", a mount point): filled, not replaced
                _move_entries(partial, out, replacing=[])
                _discard(partial, out)  # a Ctrl-C here left a half-deleted DIR.partial that the next run refused
            else:
                partial.chmod(0o755)
                partial.rename(out)
            (out / state).unlink(missing_ok=True)
    except KeyboardInterrupt:
        if partial.exists() and not (partial / state).is_file() and not resumed:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    except BaseException:
        if partial.exists() and not resumed:
            shutil.rmtree(partial, ignore_errors=True)
        raise
