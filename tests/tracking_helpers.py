"""Tracking sequences for the tests: reduced copies of real ones (their first `N_FRAMES` frames,
shrunk: the `otb_root` and `vot_root` fixtures of conftest.py), and blank OTB ones made by hand."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

N_FRAMES = 30


def reduced_copy(frames, boxes, dst, factor, name_of):
    """Write the first N_FRAMES frames shrunk by `factor`; return their boxes (0-based) shrunk alike."""
    dst.mkdir(parents=True)
    for i, src in enumerate(frames[:N_FRAMES]):
        with Image.open(src) as im:
            im.resize((im.width // factor, im.height // factor), Image.BILINEAR).save(dst / name_of(i))
    return boxes[:N_FRAMES] / factor


def blank_otb_sequence(root: Path, name: str, n_frames: int, size: tuple[int, int], groundtruth: str) -> Path:
    """An OTB sequence folder ``root/name``: img/0001.jpg.. of n_frames black frames, ``size`` (width,
    height), and groundtruth_rect.txt holding the text ``groundtruth`` -> the folder."""
    folder = root / name
    (folder / "img").mkdir(parents=True)
    for i in range(n_frames):
        Image.new("RGB", size).save(folder / "img" / f"{i + 1:04d}.jpg")
    (folder / "groundtruth_rect.txt").write_text(groundtruth)
    return folder
