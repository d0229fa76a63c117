"""Naive loop references shared by the golden tests: slow, obvious code to check the fast paths against."""

from __future__ import annotations

import math

import numpy as np


def bilinear_half_pixel(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv2.resize INTER_LINEAR (= torch bilinear, align_corners=False, no antialias) by loops: output
    pixel centre (i + 0.5) maps to source (i + 0.5) * H / h - 0.5, clamped at the borders, no
    antialiasing filter when shrinking. image: (H, W, ...) -> (out_h, out_w, ...) float64."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w) + image.shape[2:])
    for i in range(out_h):
        y = min(max((i + 0.5) * in_h / out_h - 0.5, 0.0), in_h - 1)
        y0 = int(math.floor(y))
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = min(max((j + 0.5) * in_w / out_w - 0.5, 0.0), in_w - 1)
            x0 = int(math.floor(x))
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            out[i, j] = ((1 - fy) * (1 - fx) * image[y0, x0] + (1 - fy) * fx * image[y0, x1]
                         + fy * (1 - fx) * image[y1, x0] + fy * fx * image[y1, x1])
    return out
