"""Untrained reference extractors: the floors a trained encoder has to beat.

Both are ordinary `FrameEncoder`s (same forward contract, stride 8), so the propagation code
and presets treat them exactly like a trained model:

- ``"lab-pixels"``: raw colour, no learning at all; 8x8 average-pooled Lab pixels.
- ``"random-resnet18"``: architecture without training; a fixed-seed random ResNet-18.
"""

from __future__ import annotations

import torch
from torch import nn

from vidcorr.models.encoder import PRESETS, FrameEncoder
from vidcorr.models.resnet import init_resnet_

FLOOR_STRIDE = 8
RANDOM_RESNET18_SEED = 0


def lab_pixels() -> FrameEncoder:
    """Lab pixels averaged over 8x8 cells: (B, 3, H, W) RGB -> (B, 3, ceil(H/8), ceil(W/8)).

    Normalisation: (L/50 - 1, a/127, b/127), i.e. colour mode "lab" (STT's input statistics,
    METHODS.md §4.3). Each channel's full range maps to about [-1, 1], so after the propagation
    preset's L2 norm no channel dominates by its units. We deliberately do not divide a and b by
    their (smaller, data-dependent) spread in natural video: that would amplify chroma, which
    H.264/JPEG store at half resolution and with the most compression noise, and tie the floor
    to dataset statistics. Reusing STT's normalisation also makes this floor exactly "STT's input
    without a network". ``ceil_mode`` pools the partial last cell over its valid pixels only, so
    the grid matches the ResNets' (480x854 -> 60x107).
    """
    pool = nn.AvgPool2d(kernel_size=FLOOR_STRIDE, ceil_mode=True)
    return FrameEncoder(pool, colour_mode="lab", stride=FLOOR_STRIDE, out_channels=3).eval()


def random_resnet18(seed: int = RANDOM_RESNET18_SEED) -> FrameEncoder:
    """Random-init ResNet-18, CRW strides (layer3/4 stride 1), layer3 (256-d, OS 8), RGB input.

    Deterministic: weights are drawn from a private generator seeded with ``seed``, whatever
    the global RNG state (and the global RNG is left as it was). Returned in eval mode, so BN
    uses its initial running statistics rather than per-batch ones.
    """
    config = PRESETS["resnet18"].replace(out_layer="layer3")
    with torch.random.fork_rng(devices=[]):  # the throw-away first init must not move global RNG
        encoder = FrameEncoder.from_config(config)
    init_resnet_(encoder.backbone, torch.Generator().manual_seed(seed))
    return encoder.eval()


FLOORS = {"lab-pixels": lab_pixels, "random-resnet18": random_resnet18}
