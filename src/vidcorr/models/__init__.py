"""Model zoo: frame encoders (ResNet backbones in three colour modes), untrained floors, UVC's
Lab auto-encoder, and released-weights I/O.

Everything downstream uses one contract, `FrameEncoder`: RGB (B, 3, H, W) in [0, 1] ->
features (B, C, ~H/8, ~W/8), with ``stride``, ``out_channels`` and ``colour_mode`` attributes.
"""

from __future__ import annotations

from typing import Any

from vidcorr.models.autoencoder import LabAutoencoder, LabDecoder, LabEncoder
from vidcorr.models.colour import (
    COLOUR_MODES,
    ColourNormalise,
    lab_to_rgb,
    lab_to_uvc_normalised,
    rgb_to_lab,
    rgb_to_lightness,
    uvc_normalised_to_lab,
)
from vidcorr.models.encoder import PRESETS, EncoderConfig, FrameEncoder
from vidcorr.models.floors import FLOORS, lab_pixels, random_resnet18
from vidcorr.models.resnet import ResNetBackbone
from vidcorr.models.weights import (
    AUTOENCODER_CONFIG,
    WeightsFile,
    load_autoencoder,
    load_encoder,
    load_weights_into,
    read_weights,
    save_weights,
    sidecar_path,
)

ENCODER_NAMES = tuple(PRESETS) + tuple(FLOORS)


def build_encoder(name_or_config: str | EncoderConfig | dict[str, Any], **overrides: Any) -> FrameEncoder:
    """Build a randomly initialised (or, for floors, untrained) `FrameEncoder`.

    name_or_config: a preset name (``"uvc"``, ``"crw"``, ``"stt"``, ``"stt-r50"``,
        ``"cycletime"``, ``"resnet18"``, ``"resnet50"``), a floor (``"lab-pixels"``,
        ``"random-resnet18"``), an `EncoderConfig`, or its dict form.
    overrides: `EncoderConfig` fields replacing the preset's, e.g.
        ``build_encoder("crw", out_layer="layer4")``. Not accepted for floors, which are fixed.
    To load trained weights use `load_encoder`.
    """
    if isinstance(name_or_config, str):
        if name_or_config in FLOORS:
            if overrides:
                raise ValueError(f"floor {name_or_config!r} takes no overrides, got {sorted(overrides)}")
            return FLOORS[name_or_config]()
        if name_or_config not in PRESETS:
            raise ValueError(f"unknown encoder {name_or_config!r}; expected one of {ENCODER_NAMES}")
        config = PRESETS[name_or_config]
    elif isinstance(name_or_config, dict):
        config = EncoderConfig.from_dict(name_or_config)
    else:
        config = name_or_config
    return FrameEncoder.from_config(config.replace(**overrides) if overrides else config)


__all__ = [
    "AUTOENCODER_CONFIG",
    "COLOUR_MODES",
    "ENCODER_NAMES",
    "FLOORS",
    "PRESETS",
    "ColourNormalise",
    "EncoderConfig",
    "FrameEncoder",
    "LabAutoencoder",
    "LabDecoder",
    "LabEncoder",
    "ResNetBackbone",
    "WeightsFile",
    "build_encoder",
    "lab_pixels",
    "lab_to_rgb",
    "lab_to_uvc_normalised",
    "load_autoencoder",
    "load_encoder",
    "load_weights_into",
    "random_resnet18",
    "read_weights",
    "rgb_to_lab",
    "rgb_to_lightness",
    "save_weights",
    "sidecar_path",
    "uvc_normalised_to_lab",
]
