"""What the eval commands share about their runs: ``--resume`` and, on Ctrl-C, how to continue
(`vidcorr.evaluate.runs` keeps the record of a run in its output folder)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path


def add_out_and_resume_arguments(p: argparse.ArgumentParser, items: str) -> None:
    """--out and --resume of an eval command whose run is made of ``items`` ("sequences", "videos")."""
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (must not exist or be empty, unless --resume continues the run in it)")
    p.add_argument("--resume", action="store_true",
                   help=f"keep the {items} an interrupted run of the same model and protocol finished in OUT")


@contextlib.contextmanager
def resume_hint(out: Path, items: str, tell: bool = True) -> Iterator[None]:
    """On Ctrl-C, say that the ``items`` finished so far are kept in ``out`` and how to continue,
    when the run had started (its record is there), then let the interrupt go on (exit 130).
    tell: False on the torchrun ranks other than 0 (rank 0 says it once)."""
    from vidcorr.evaluate.runs import RUN_STAMP

    try:
        yield
    except KeyboardInterrupt:
        if tell and (out / RUN_STAMP).is_file():
            print(f"vidcorr: the {items} finished so far are kept in {out}; the same command with --resume "
                  "continues the run", file=sys.stderr)
        raise
