"""Synthetic stand-ins shared by tests: tiny deterministic encoders, an endless video."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn


class PatchEncoder(nn.Module):
    """A fixed random stride-8 patch embedding: deterministic, cheap, good enough to match texture.

    Follows the `FrameEncoder` contract: RGB (B, 3, H, W) in [0, 1] -> (B, C, H/8, W/8).
    """

    stride = 8

    def __init__(self, channels: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Conv2d(3, channels, 8, stride=8)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g) * 0.2)
            self.proj.bias.zero_()

    def forward(self, x):
        return self.proj(x - 0.5)  # centred, so unrelated patches have near-orthogonal codes


class PositionCodes(nn.Module):
    """A fixed random 64-d code per feature cell, stride 8: every cell matches only itself."""

    stride = 8

    def forward(self, x):
        h, w = -(-x.shape[-2] // 8), -(-x.shape[-1] // 8)
        codes = torch.randn(64, h, w, generator=torch.Generator().manual_seed(0))
        return codes.expand(x.shape[0], -1, -1, -1)


def endless(frames: Sequence, pulled: list[int]) -> Iterator:
    """``frames`` over and over, for ever, appending each index to ``pulled`` as it is taken: how
    far ahead of its output a streaming consumer reads."""
    t = 0
    while True:
        pulled.append(t)
        yield frames[t % len(frames)]
        t += 1
