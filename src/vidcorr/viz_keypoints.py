"""Skeleton overlays for propagated keypoints (the mask overlay lives in `vidcorr.viz`).

Drawn with Pillow so that no OpenCV is needed at run time. Colours follow the rainbow palette the
UVC / CRW / STT pose visualisers use, one colour per joint (its edge to the parent takes it too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# 16 colours from red through yellow, green, cyan and blue to magenta (RGB).
JOINT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255),
)


def draw_skeleton(
    frame: np.ndarray,
    points: np.ndarray,
    visible: np.ndarray,
    edges: Sequence[tuple[int, int]] = (),
    *,
    radius: float | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Draw edges and joint dots onto a copy of an RGB frame.

    frame: (H, W, 3) uint8; points: (J, 2) pixel coordinates (x, y); visible: (J,) bool — joints
    not visible (or with non-finite coordinates) and edges touching them are skipped. edges:
    (i, j) index pairs, coloured like joint i. radius / width default to ~1% of the frame size.
    Returns (H, W, 3) uint8.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    shown = np.asarray(visible, bool) & np.all(np.isfinite(points), axis=1)
    scale = max(frame.shape[:2]) / 100.0
    radius = max(2.0, scale) if radius is None else radius
    width = max(1, round(scale * 0.6)) if width is None else width
    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    for i, j in edges:
        if shown[i] and shown[j]:
            draw.line([tuple(points[i]), tuple(points[j])], fill=_colour(i), width=width)
    for k in np.flatnonzero(shown):
        x, y = points[k]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_colour(k), outline=(0, 0, 0))
    return np.asarray(image)


def _colour(index: int) -> tuple[int, int, int]:
    return JOINT_COLOURS[index % len(JOINT_COLOURS)]
