"""Shared by the test_uvc_track_* files: a cell-wise random encoder and videos of textured squares."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidcorr.presets import SizePolicy, get_preset


CELL = 8


PRESET = get_preset("uvc").with_overrides(size=SizePolicy("native"))


class CellEncoder(nn.Module):
    """A fixed random embedding of each 8x8 cell, L2-normalised and scaled so that the raw dot
    product of the `uvc` preset (no L2 norm, tau 1) peaks sharply at the identical cell."""

    def __init__(self, channels: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Conv2d(3, channels, CELL, stride=CELL, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g) * 0.2)

    def forward(self, x):
        return 8.0 * F.normalize(self.proj(x - 0.5), dim=1)


def _blocks(rng, rows, cols, sub=2):
    """Random colour texture of rows x cols cells made of sub x sub pixel blocks."""
    n = CELL // sub
    texture = rng.random((rows * n, cols * n, 3))
    return np.repeat(np.repeat(texture, sub, 0), sub, 1)


def _object_video(n_frames=7, hw=(12, 20), obj=3, start=(1, 2), step=1, distractor=None, seed=0):
    """A textured square of ``obj`` cells sliding right by ``step`` cells a frame over a static
    textured background (sizes in cells). ``distractor``: (first frame, cell x, cell y) of a
    look-alike (70 % the object's texture, 30 % another) that appears and stays still."""
    rng = np.random.default_rng(seed)
    background, texture = _blocks(rng, *hw), _blocks(rng, obj, obj)
    look_alike = 0.7 * texture + 0.3 * _blocks(rng, obj, obj)
    frames, masks = [], []
    for t in range(n_frames):
        img = background.copy()
        if distractor is not None and t >= distractor[0]:
            dx, dy = distractor[1] * CELL, distractor[2] * CELL
            img[dy:dy + obj * CELL, dx:dx + obj * CELL] = look_alike
        x, y = (start[0] + step * t) * CELL, start[1] * CELL
        img[y:y + obj * CELL, x:x + obj * CELL] = texture[:, : max(0, img.shape[1] - x)]
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[y:y + obj * CELL, x:x + obj * CELL] = 1
        frames.append((img * 255).round().astype(np.uint8))
        masks.append(mask)
    return frames, masks


def _iou(pred, truth):
    inter = np.logical_and(pred == 1, truth == 1).sum()
    return inter / max(1, np.logical_or(pred == 1, truth == 1).sum())
