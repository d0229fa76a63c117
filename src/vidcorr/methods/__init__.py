"""Training methods: each an ``nn.Module`` taking a batch and returning a dict of named losses.

UVC (`vidcorr.methods.uvc`): joint region localisation and pixel matching through one affinity.
"""

from __future__ import annotations

from vidcorr.methods.uvc import (
    LOSS_TERMS,
    RECIPES,
    UVC,
    UVCConfig,
    ablate,
    recipe,
    stage_switches,
)

__all__ = ["LOSS_TERMS", "RECIPES", "UVC", "UVCConfig", "ablate", "recipe", "stage_switches"]
