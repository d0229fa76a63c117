"""Atomic outputs: build a file or folder beside its destination, move it into place at the end.

A write that fails or is interrupted halfway leaves the destination as it was (DESIGN.md, "Errors":
no half-written output). Every writer in vidcorr — result JSON, PNGs, videos, weights,
checkpoints, caches, output folders — goes through these two helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidcorr.errors import InputError


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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def check_output_path(path: str | Path, *, folder: bool) -> None:
    """`InputError` naming ``path`` unless an output folder (``folder``) or file can be made there.

    Refused: a file where a folder goes or a folder where a file goes, and a nearest existing
    folder (``path`` itself for an existing output folder, else a parent) that is a file or not
    writable. Cheap, so a command checks its output before its work: these ended a finished run
    (a scored split, a propagated video) in a raw traceback and lost its results.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise InputError(path, "is a file, not a folder" if folder else "is a folder; expected a file name")
    full = path.absolute()
    nearest = next(p for p in ((full, *full.parents) if folder else full.parents) if p.exists())
    if not nearest.is_dir():
        raise InputError(path, f"cannot be created: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InputError(path, f"cannot be created: folder {nearest} is not writable")


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block succeeds.

    ``out`` must not exist or be an empty folder (an existing result is never overwritten
    piecemeal); on any error the temporary folder is removed.
    """
    out = Path(out)
    check_output_path(out, folder=True)
    if out.is_dir() and any(out.iterdir()):
        raise InputError(out, "output folder exists and is not empty; choose another --out or remove it")
    target = out.absolute()  # "." has no name and is its own parent: the temporary folder goes beside it
    try:  # what check_output_path cannot foresee (a read-only file system, /proc) fails here, before any work
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    except OSError as error:
        raise InputError(out, f"cannot create the output folder ({error.strerror or error})") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        target.rmdir()
    tmp.chmod(0o755)
    tmp.rename(target)
