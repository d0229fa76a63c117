"""`FrameEncoder`: RGB frames in [0, 1] -> dense feature maps, the one interface the rest of the
library codes against.

An encoder owns its colour conversion and input normalisation (`colour.ColourNormalise`), so
callers always pass RGB in [0, 1]. It does not L2-normalise its output and applies no
temperature: label propagation and the training methods decide those (METHODS.md §5).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vidcorr.models.colour import COLOUR_MODES, ColourNormalise
from vidcorr.models.resnet import ResNetBackbone, check_backbone_args, fold_batchnorm
from vidcorr.strict_dict import DictConfig


@dataclass(frozen=True)
class EncoderConfig(DictConfig):
    """Everything needed to rebuild a ResNet `FrameEncoder`; stored in weights sidecars.

    Defaults give a plain RGB ResNet-18 at output stride 8 (layer3 and layer4 stride 1, as UVC
    and CRW do), returning layer3. ``head_channels``: optional 1x1 conv (no bias) + ReLU after
    the backbone, CycleTime's ``afterconv1`` 1024 -> 512 (METHODS.md §2.2).
    """

    LABEL = "encoder config"  # in errors: "unknown encoder config keys"

    arch: str = "resnet18"
    strides: tuple[int, int, int, int] = (1, 2, 1, 1)
    maxpool: bool = True
    padding_mode: str = "zeros"
    out_layer: str = "layer3"
    colour_mode: str = "rgb"
    head_channels: int | None = None

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        check_backbone_args(self.arch, self.strides, self.padding_mode, self.out_layer)
        if self.colour_mode not in COLOUR_MODES:
            raise ValueError(f"unknown colour mode {self.colour_mode!r}; expected {COLOUR_MODES}")
        if self.head_channels is not None and self.head_channels < 1:
            raise ValueError(f"head_channels must be positive, got {self.head_channels}")

    def replace(self, **changes: Any) -> EncoderConfig:
        return dataclasses.replace(self, **changes)


# Every shipped preset has output stride 8 (METHODS.md §0: "last used stage at OS 8").
PRESETS: dict[str, EncoderConfig] = {
    # UVC (§1.2): R18, layer3/4 stride 1 without dilation, max-pool kept, layer4 (512-d), sees L.
    "uvc": EncoderConfig(out_layer="layer4", colour_mode="gray-l"),
    # CRW (§3.2): same strides, reflect padding (scratch model), tested on layer3 (256-d).
    "crw": EncoderConfig(padding_mode="reflect", out_layer="layer3"),
    # STT d8 (§4.6): no max-pool, strides (1, 2, 2, 1), layer3 (256-d), normalised Lab input.
    "stt": EncoderConfig(strides=(1, 2, 2, 1), maxpool=False, colour_mode="lab"),
    "stt-r50": EncoderConfig(arch="resnet50", strides=(1, 2, 2, 1), maxpool=False, colour_mode="lab"),
    # CycleTime (§2.2): R50 res4 (layer3) stride 1 -> OS 8, 1024 -> 512 1x1 conv + ReLU.
    "cycletime": EncoderConfig(arch="resnet50", head_channels=512),
    # Plain RGB backbones at OS 8, layer3.
    "resnet18": EncoderConfig(),
    "resnet50": EncoderConfig(arch="resnet50"),
}


class FrameEncoder(nn.Module):
    """Colour mode + normalisation + backbone (+ optional head).

    Attributes:
        stride: output stride in pixels (8 for every shipped model).
        out_channels: channels C of the features.
        colour_mode: "rgb" | "gray-l" | "lab", the input the backbone was trained on.
        config: the `EncoderConfig` it was built from (None for non-ResNet encoders such as the
            "lab-pixels" floor).

    ``forward``: rgb (B, 3, H, W) float in [0, 1], RGB order -> features (B, C, h, w) with
    h = ceil(H / stride), w = ceil(W / stride) for the shipped ResNets (480x854 -> 60x107).
    Not L2-normalised. For channels_last, call ``encoder.to(memory_format=torch.channels_last)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        colour_mode: str,
        stride: int,
        out_channels: int,
        head: nn.Module | None = None,
        config: EncoderConfig | None = None,
    ):
        super().__init__()
        self.colour = ColourNormalise(colour_mode)
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        self.stride = stride
        self.out_channels = out_channels
        self.colour_mode = colour_mode
        self.config = config

    @classmethod
    def from_config(cls, config: EncoderConfig) -> FrameEncoder:
        """Build a randomly initialised ResNet encoder from ``config``."""
        backbone = ResNetBackbone(
            arch=config.arch,
            strides=config.strides,
            maxpool=config.maxpool,
            padding_mode=config.padding_mode,
            out_layer=config.out_layer,
        )
        head, channels = None, backbone.out_channels
        if config.head_channels is not None:
            conv = nn.Conv2d(channels, config.head_channels, kernel_size=1, bias=False)
            head, channels = nn.Sequential(conv, nn.ReLU(inplace=True)), config.head_channels
        return cls(backbone, config.colour_mode, backbone.stride, channels, head, config)

    def normalise(self, rgb: Tensor) -> Tensor:
        """rgb: (B, 3, H, W) in [0, 1] -> (B, 3, H, W) backbone input of this colour mode.

        Exposed so a method can alter the input before `features` (STT's Lab channel dropout).
        """
        return self.colour(rgb)

    def features(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) already normalised (see `normalise`) -> (B, C, h, w)."""
        return self.head(self.backbone(x))

    def forward(self, rgb: Tensor) -> Tensor:
        """rgb: (B, 3, H, W) float in [0, 1], RGB order -> (B, C, ceil(H/stride), ceil(W/stride)),
        in the weights' dtype (an encoder made ``.half()`` takes float32 frames too)."""
        normalised = self.normalise(rgb)
        return self.features(normalised.to(_weights_dtype(self) or normalised.dtype))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, out_channels={self.out_channels}"


def check_weights_hold_data(module: nn.Module) -> None:
    """ValueError naming ``module``'s class when a parameter or buffer is on the meta device (shapes
    only, no data: a module built under ``torch.device("meta")`` whose weights were never loaded)."""
    if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):
        raise ValueError(f"encoder {type(module).__name__} has weights on the meta device (shapes only, no "
                         "data): load its weights (e.g. module.to_empty(device=...) then load_state_dict) first")


def inference_encoder(encoder: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``encoder`` made ready for propagation on ``device``, in eval mode.

    A `FrameEncoder` with a ResNet backbone becomes a copy with its BatchNorms folded into the convs
    (`fold_batchnorm`) and, on a CPU, its weights in channels-last memory, the layout oneDNN's
    convolutions run fastest in: our ResNet-18 to layer3 at 480p goes from 560 to 436 ms per frame
    on one thread of our 2-core EPYC, 308 to 217 on two (`benchmarks/features.py`,
    docs/benchmarks.md); the features move by float rounding only. The caller's encoder is not
    changed. Any other module is left as the caller has it too (`EvalModeCall`): called in eval
    mode, on a copy when it lives on another device. Weights on the meta device: ValueError.
    """
    device = torch.device(device)
    # .to(device) would fail with torch's "Cannot copy out of meta tensor" and no module named
    check_weights_hold_data(encoder)
    if not (isinstance(encoder, FrameEncoder) and isinstance(encoder.backbone, ResNetBackbone)):
        return EvalModeCall(encoder if _lives_on(encoder, device) else copy.deepcopy(encoder).to(device))
    ready = FrameEncoder(
        fold_batchnorm(encoder.backbone), encoder.colour_mode, encoder.stride, encoder.out_channels,
        copy.deepcopy(encoder.head), encoder.config,
    ).to(device).eval()
    return ready.to(memory_format=torch.channels_last) if device.type == "cpu" else ready


class EvalModeCall(nn.Module):
    """Calls ``wrapped`` in eval mode and gives it back the mode it had.

    A module of one's own may be a model in training, evaluated between epochs: ``.eval()`` on it
    (what propagation did before 2026-12-06) left it in eval mode, its BatchNorm statistics frozen
    for the rest of the training, without a word. Other attributes (``stride``) read through.
    """

    def __init__(self, wrapped: nn.Module):
        super().__init__()
        self.wrapped = wrapped

    def forward(self, rgb: Tensor) -> Tensor:
        was_training = self.wrapped.training
        self.wrapped.eval()
        try:
            return self.wrapped(rgb.to(_weights_dtype(self.wrapped) or rgb.dtype))
        finally:
            self.wrapped.train(was_training)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["wrapped"], name)


def _weights_dtype(module: nn.Module) -> torch.dtype | None:
    """The one floating dtype of ``module``'s parameters, None for none or several. Frames are
    float32: a module in half precision (``.half()``, ``.bfloat16()``) or double got them as
    torch's "Input type (float) and bias type (c10::Half) should be the same"."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def as_given(encoder: nn.Module) -> nn.Module:
    """The module as the caller gave it: the one an `EvalModeCall` wraps, else ``encoder`` itself
    (for messages that name its class, and for telling our `FrameEncoder` from a module of one's own)."""
    return encoder.wrapped if isinstance(encoder, EvalModeCall) else encoder


def feature_problem(feats: object, batch: int) -> str | None:
    """None when ``feats`` are floating-point features (batch, C, h, w) that hold data, as
    propagation needs them from any encoder; else what they are instead, for a message that goes
    on "expected float features (batch, C, h, w)": "(1, 64, 96) torch.float32", "tuple", or the
    shape and dtype with why they are refused (an integer or bool dtype, the meta device).

    Half precision (float16, bfloat16) is accepted, and features on another real device: the
    propagator converts them to float32 on its own device. A meta tensor has no values to move.
    """
    if not isinstance(feats, Tensor):
        return type(feats).__name__
    got = f"{tuple(feats.shape)} {feats.dtype}"
    if feats.ndim != 4 or feats.shape[0] != batch:
        return got
    if not feats.is_floating_point():
        return f"{got} (not a floating-point dtype: return float features, e.g. .float())"
    if feats.is_meta:
        return (f"{got} on the meta device (shapes only, no data: a module built on torch.device('meta') "
                "whose weights were never loaded?)")
    return None


def _lives_on(module: nn.Module, device: torch.device) -> bool:
    """Whether every parameter and buffer of ``module`` is on ``device`` ("cuda" = any GPU index)."""
    return all(t.device.type == device.type and (device.index is None or t.device.index == device.index)
               for t in [*module.parameters(), *module.buffers()])
