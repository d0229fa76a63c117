"""Where a benchmark's root is when ``--root`` names another folder: the hint for the usual slips.

A user points ``--root`` at the folder that holds the benchmark among others (``data/`` for
``data/jhmdb``) or at a folder inside it (one sequence, ``Rename_Images/``, ``JPEGImages/480p``).
Each reader knows what its root looks like (``is_root``); `misplaced_root_hint` looks one level down
and a few levels up for a folder that looks so, and the reader's "not a root" error ends with it.
`names_held` lists what a root holds after a name it does not hold.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

# Folders looked into below ``root``: enough for a data folder, bounded for a home directory.
MAX_CHILDREN = 200
LEVELS_UP = 4  # a DAVIS frame folder (ROOT/JPEGImages/480p/<seq>/) lies 3 levels below its root
NAMES_SHOWN = 10  # of what a root holds, after an unknown --sequences / --videos name


def names_held(names: Sequence[str]) -> str:
    """"N: a, b, ..." (the first `NAMES_SHOWN`): what a root or split holds, for an unknown name."""
    return f"{len(names)}: " + ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")


def misplaced_root_hint(root: str | Path, is_root: Callable[[Path], bool]) -> str:
    """"; ROOT/x is one: --root ROOT/x" when a folder one level inside ``root`` is a root (the
    first of them in name order), "; it lies inside the root R: --root R" when one of its parents
    is, else "". Paths are written as the user wrote ``root`` (relative stays relative)."""
    root = Path(root)
    if root.is_dir():
        children = itertools.islice((p for p in sorted(root.iterdir()) if p.is_dir()), MAX_CHILDREN)
        inside = [p for p in children if _looks(is_root, p)]
        if inside:
            more = f" (and {len(inside) - 1} more)" if len(inside) > 1 else ""
            return f"; {inside[0]}{more} is one: --root {inside[0]}"
    for parent in itertools.islice(root.absolute().parents, LEVELS_UP):
        if _looks(is_root, parent):
            shown = parent if root.is_absolute() else Path(os.path.relpath(parent))
            return f"; it lies inside the root {shown}: --root {shown}"
    return ""


def _looks(is_root: Callable[[Path], bool], folder: Path) -> bool:
    """``is_root(folder)``; False for a folder that cannot be listed (no permission)."""
    try:
        return is_root(folder)
    except OSError:
        return False
