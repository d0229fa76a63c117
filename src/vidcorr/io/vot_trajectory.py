"""VOT baseline trajectories on disk: the VOT toolkit's results files of its supervised experiment.

A trajectory (`write_vot_trajectory`, `read_vot_trajectory`) is the VOT toolkit's results file,
one line per frame holding the predicted region (a box ``x,y,w,h`` or, as rotated-box trackers
write, a polygon ``x1,y1,...,x4,y4``; 0-based like VOT's ground truth) or a code: 1 the tracker was
(re-)initialised on this frame, 2 it failed here, 0 no prediction (the frames skipped before a
re-initialisation; a region with a NaN value reads as 0 too, as the toolkit reads it). Read back,
the lines must come in the order the supervised experiment writes them: regions and a 2 only after
a 1, a 1 only first or after a 2.

Apart from the benchmarks' readers (`vidcorr.io.tracking`), whose line parser it shares, because
these files are a tracker's output: `eval vot --protocol vot-baseline` writes them, `score vot`
reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.atomic import write_text_atomic
from vidcorr.io.tracking import annotation_lines, parse_line, region_corners

# The VOT toolkit's trajectory codes: a results line holding one of these instead of a region.
VOT_SKIPPED, VOT_INITIALISED, VOT_FAILED = 0, 1, 2
VOT_TRACKED = -1  # not a code: the frame's line holds the predicted box


def write_vot_trajectory(path: str | Path, status: np.ndarray, boxes: np.ndarray) -> None:
    """Write a VOT baseline trajectory as the toolkit's results file (``<seq>_001.txt``).

    status: (T,) per frame `VOT_TRACKED` or a code (`VOT_INITIALISED`, `VOT_FAILED`, `VOT_SKIPPED`);
    boxes: (T, 4) 0-based x, y, w, h, written with 4 decimals (pysot's ``%.4f``) where tracked.
    Written atomically, its folder created: an interrupted write leaves no file a resumed run or
    `score` would take for a result.
    """
    status = np.asarray(status)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    lines = [",".join(f"{v:.4f}" for v in box) if code == VOT_TRACKED else f"{int(code)}"
             for code, box in zip(status, boxes)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_vot_trajectory(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A VOT results file (`write_vot_trajectory`, or another tracker's) -> status (T,) int and the
    predicted regions, float64 and NaN where the line is a code: boxes (T, 4) x, y, w, h, or, when
    any line is a polygon, corners (T, 8) x1, y1, ..., x4, y4 with every box as its 4 corners
    (`vidcorr.metrics.vot.region_overlap` scores either). A line is one code (0, 1 or 2), 4 values
    (a box) or 8 (a polygon), in the supervised experiment's order (`_check_trajectory_order`); a
    region with a NaN value reads as the code 0 (unknown), as the VOT toolkit reads it."""
    path = Path(path)
    status, regions = [], []
    for number, text in annotation_lines(path, "results"):
        values = parse_line(text, path, number, (1, 4, 8))
        if len(values) == 1:
            if values[0] not in (VOT_SKIPPED, VOT_INITIALISED, VOT_FAILED):
                raise InputError(path, f"line {number}: a one-value line must be the code 0, 1 or 2, "
                                       f"got {text.strip()!r}")
            status.append(int(values[0]))
            regions.append(None)
        elif np.isnan(values).any():
            # The VOT toolkit reads a region with a NaN value as the special region 0, "unknown"
            # (votchallenge/toolkit vot/region/io.py `parse`: ``if any(math.isnan(el) ...): return
            # Special(0)``): left out of the accuracy (vot/analysis/supervised.py `compute_accuracy`,
            # ignore_unknown=True), overlap 0 in EAO, never a failure. Scored as a region, it added
            # an overlap of 0 to the accuracy instead.
            status.append(VOT_SKIPPED)
            regions.append(None)
        else:
            status.append(VOT_TRACKED)
            regions.append(values)
    _check_trajectory_order(path, status)
    width = 8 if any(r is not None and len(r) == 8 for r in regions) else 4
    return np.array(status, np.int64), np.stack([
        np.full(width, np.nan) if r is None else r if width == 4 else region_corners(r) for r in regions])


def _check_trajectory_order(path: Path, status: Sequence[int]) -> None:
    """The supervised experiment's order: a box or a failure (2) only while the tracker runs (after
    an initialisation 1, before the next 2), an initialisation only while it does not (first, or
    after a failure); 0 anywhere. Scoring pairs the k-th initialisation with the k-th failure (the
    EAO fragments) and needs the initialisations for the accuracy's burn-in: a file out of this
    order (boxes without codes, a failure before any initialisation) would be mis-scored or crash."""
    running, failed = None, None  # lines of the initialisation running now / of the last failure
    for number, code in enumerate(status, start=1):
        if code == VOT_INITIALISED and running is not None:
            raise InputError(path, f"line {number}: initialised (1) again without a failure (2) since "
                                   f"the initialisation on line {running}")
        if code in (VOT_FAILED, VOT_TRACKED) and running is None:
            what = "a failure (2)" if code == VOT_FAILED else "a predicted region"
            where = (f"after the failure on line {failed} without a re-initialisation (1)" if failed else
                     "before the first initialisation (1): a trajectory starts with the code 1")
            raise InputError(path, f"line {number}: {what} {where}")
        if code == VOT_INITIALISED:
            running = number
        elif code == VOT_FAILED:
            running, failed = None, number


