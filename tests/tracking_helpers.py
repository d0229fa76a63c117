"""Reduced copies of real tracking sequences (their first `N_FRAMES` frames, shrunk): the
`otb_root` and `vot_root` fixtures of conftest.py."""

from __future__ import annotations

from PIL import Image

N_FRAMES = 30


def reduced_copy(frames, boxes, dst, factor, name_of):
    """Write the first N_FRAMES frames shrunk by `factor`; return their boxes (0-based) shrunk alike."""
    dst.mkdir(parents=True)
    for i, src in enumerate(frames[:N_FRAMES]):
        with Image.open(src) as im:
            im.resize((im.width // factor, im.height // factor), Image.BILINEAR).save(dst / name_of(i))
    return boxes[:N_FRAMES] / factor
