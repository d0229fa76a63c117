"""DAVIS overlay frames (`vidcorr.evaluate.davis_overlays.overlay_frames`): captioned with their frame
number."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vidcorr.evaluate.davis_overlays import overlay_frames


def test_overlay_frames_are_captioned_with_their_frame_number(tmp_path):
    """The eval and demo overlay videos did not say which frame was shown: the propagated side reads
    "propagated · frame t", and an overlay without annotations "frame t", in the top-left corner."""
    frame = np.full((120, 160, 3), 100, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[40:80, 60:100] = 1
    annotation = tmp_path / "00001.png"
    Image.fromarray(labels).save(annotation)
    names = ["00000", "00001", "00002"]
    for truth, width in (([annotation], 2 * 160 + 8), ([], 160)):
        drawn = list(overlay_frames([(frame, labels)] * 3, names, truth))
        assert drawn[0].shape == (120, width, 3)
        changed = (drawn[0] != drawn[2]).any(axis=2)  # same frame and masks, frames 0 and 2
        rows, cols = np.nonzero(changed)
        assert changed.any() and rows.max() < 25 and cols.max() < 160

