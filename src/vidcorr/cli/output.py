"""Atomic output folders: build the result beside its destination, rename it into place at the end.

A command that fails or is interrupted halfway leaves nothing at the destination (DESIGN.md,
"Errors": no half-written output).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidcorr.errors import InputError


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block succeeds.

    ``out`` must not exist or be an empty folder (an existing result is never overwritten
    piecemeal); on any error the temporary folder is removed.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "output folder exists and is not empty; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.chmod(0o755)
    tmp.rename(out)
