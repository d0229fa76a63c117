"""Training methods: each an ``nn.Module`` taking a batch and returning a dict of named losses.

UVC (`vidcorr.methods.uvc`): joint region localisation and pixel matching through one affinity.
CycleTime (`vidcorr.methods.cycletime`): patches tracked backward and forward in time, cycle consistency.
"""

from __future__ import annotations

from vidcorr.methods.cycletime import CycleTime, CycleTimeConfig
from vidcorr.methods.uvc import (
    LOSS_TERMS,
    RECIPES,
    UVC,
    UVCConfig,
    ablate,
    recipe,
    stage_switches,
)

__all__ = ["CycleTime", "CycleTimeConfig", "LOSS_TERMS", "RECIPES", "UVC", "UVCConfig", "ablate", "recipe",
           "stage_switches"]
