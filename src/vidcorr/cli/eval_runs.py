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
