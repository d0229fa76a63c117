"""Shared by the test_vot_* files: the diamond, squares as polygons, and the code of a tracked frame."""

from __future__ import annotations

import numpy as np

from vidcorr.io.vot_trajectory import VOT_TRACKED


# A square turned by 45 degrees: corners (10, 0), (20, 10), (10, 20), (0, 10); area 200. Its axis-aligned
# box is [0, 20] x [0, 20] (area 400).
DIAMOND = np.array([10, 0, 20, 10, 10, 20, 0, 10], np.float64)


def _square(x, y, side):
    return np.array([x, y, x + side, y, x + side, y + side, x, y + side], np.float64)


T = VOT_TRACKED
