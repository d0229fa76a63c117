"""Where a tqdm bar drawn while another is open can be shown (`inner_bar_options`).

tqdm draws such a bar on the line below the open one and, after each refresh, moves the cursor
back up (ESC[A). Only a terminal does that: a log file keeps a stray ESC[A per refresh and per
bar, and Jupyter's output drops it, so that each refresh there starts a new line. A bar alone
(no other open) rewrites its own line with a carriage return, which a terminal, Jupyter and a
log file (as for every other vidcorr bar) all take. Hence the rule: a bar that may be nested is
shown alone anywhere, nested on a terminal only.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def inner_bar_options(stream: TextIO | None = None) -> dict[str, bool]:
    """tqdm keywords for a bar about to be opened on ``stream`` (default: ``sys.stderr``, tqdm's own)
    that may be nested under another bar (eval otb/vot's per-frame bar under the sequences' bar):
    ``{}`` where it draws well (tqdm's default, so TQDM_DISABLE=1 still hides it; an explicit
    ``disable=False`` overrode it), ``{"disable": True}`` when another bar is open and ``stream``
    is not a terminal."""
    stream = sys.stderr if stream is None else stream
    # tqdm's registry of open bars, from which it gives a new bar its line (disabled bars leave it,
    # closed ones too); private, so tests/test_progress.py opens real bars to check it.
    nested = bool(tqdm._instances)
    on_terminal = hasattr(stream, "isatty") and stream.isatty()
    return {"disable": True} if nested and not on_terminal else {}
