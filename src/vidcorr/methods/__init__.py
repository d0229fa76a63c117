"""Training methods: each an ``nn.Module`` taking a batch and returning a dict of named losses.

UVC (`vidcorr.methods.uvc`): joint region localisation and pixel matching through one affinity.
CycleTime (`vidcorr.methods.cycletime`): patches tracked backward and forward in time, cycle consistency.
STT (`vidcorr.methods.stt`): temporal reconstruction with correlation distillation from a teacher
trained by image-level contrastive learning (`vidcorr.methods.moco`, MoCo v2).
"""

from __future__ import annotations

from vidcorr.methods.cycletime import CycleTime, CycleTimeConfig
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.methods.stt import STT, STTConfig
from vidcorr.methods.uvc import (
    LOSS_TERMS,
    RECIPES,
    UVC,
    UVCConfig,
    ablate,
    recipe,
    stage_switches,
)

__all__ = ["STT", "CycleTime", "CycleTimeConfig", "LOSS_TERMS", "MoCo", "MoCoConfig", "RECIPES", "STTConfig", "UVC",
           "UVCConfig", "ablate", "recipe", "stage_switches"]
