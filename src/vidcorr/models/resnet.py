"""ResNet-18 / ResNet-50 backbones with per-stage strides, for dense features at output stride 8.

Built from torchvision's definitions (restated in `vidcorr.models.resnet_blocks`: importing
torchvision costs seconds; never with downloaded weights; nothing here is pretrained) and changed
the way the methods change them (METHODS.md §1.2, §2.2, §3.2, §4.3):

- per-stage strides: the stride of the first block of a stage sits on the strided conv where
  torchvision puts it (BasicBlock.conv1, Bottleneck.conv2) and on the downsample 1x1 conv. We
  change those strides; we never dilate (UVC/CRW set layer3/4 stride 1 "without dilation").
- optional removal of the stem max-pool (STT: ``pool_type='none'``);
- padding mode of every padded conv (CRW's scratch model uses reflect padding);
- output layer: stages after it are not built, so state dicts stay small.

Parameter names match torchvision's (``conv1.weight``, ``layer3.1.bn2.running_var``, ...)
minus ``fc``, so torchvision-layout checkpoints load after stripping their prefixes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vidcorr.models.resnet_blocks import BasicBlock, Bottleneck, make_stage

STAGES = ("layer1", "layer2", "layer3", "layer4")
PADDING_MODES = ("zeros", "reflect")
# torchvision's resnet18 / resnet50: the block and the number of blocks of each stage
_ARCHS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}
_STAGE_WIDTHS = (64, 128, 256, 512)
_EXPANSION = {arch: block.expansion for arch, (block, _) in _ARCHS.items()}


class ResNetBackbone(nn.Module):
    """Randomly initialised ResNet trunk from the stem to ``out_layer``.

    Args:
        arch: ``"resnet18"`` (BasicBlock, 64/128/256/512 ch) or ``"resnet50"`` (Bottleneck,
            256/512/1024/2048 ch).
        strides: strides of layer1..layer4 (torchvision: (1, 2, 2, 2); UVC/CRW: (1, 2, 1, 1);
            STT d8: (1, 2, 2, 1) with ``maxpool=False``). Strides of unbuilt stages are ignored.
        maxpool: keep the stem's 3x3/2 max-pool.
        padding_mode: ``"zeros"`` or ``"reflect"``, applied to every conv with padding.
        out_layer: last stage built and returned by ``forward``.
        in_channels: input channels of the stem conv.

    ``forward``: x (B, in_channels, H, W) -> (B, out_channels, ~H/stride, ~W/stride).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        strides: Sequence[int] = (1, 2, 1, 1),
        maxpool: bool = True,
        padding_mode: str = "zeros",
        out_layer: str = "layer4",
        in_channels: int = 3,
    ):
        super().__init__()
        check_backbone_args(arch, strides, padding_mode, out_layer)
        self.arch = arch
        self.out_layer = out_layer
        self.strides = tuple(int(s) for s in strides)
        self.num_stages = STAGES.index(out_layer) + 1
        # Built on the meta device (torch's default init would draw from the global RNG, then be
        # overwritten), initialised once by `init_resnet_` in torchvision's module order; the
        # stride of a stage sits on its first block (make_stage).
        block, depths = _ARCHS[arch]
        with torch.device("meta"):
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if maxpool else nn.Identity()
            inplanes = 64
            for index in range(self.num_stages):
                planes = _STAGE_WIDTHS[index]
                self.add_module(STAGES[index], make_stage(block, inplanes, planes, depths[index], self.strides[index]))
                inplanes = planes * block.expansion
        # `to_empty(device="cpu")`, which it is but for empty_like: on meta tensors that runs torch's
        # Python reference kernels, whose first use imports sympy (~0.8 s of the first API call)
        self._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))
        init_resnet_(self)
        for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
            if any(p > 0 for p in conv.padding):
                conv.padding_mode = padding_mode

    def stage_stride(self, layer: str) -> int:
        """Output stride in pixels of ``layer`` ("layer1".."layer4"), without a forward pass."""
        stem = 2 * (2 if isinstance(self.maxpool, nn.MaxPool2d) else 1)
        return stem * math.prod(self.strides[: STAGES.index(layer) + 1])

    def stage_channels(self, layer: str) -> int:
        """Channels of ``layer``'s output, without a forward pass."""
        return _STAGE_WIDTHS[STAGES.index(layer)] * _EXPANSION[self.arch]

    @property
    def stride(self) -> int:
        return self.stage_stride(self.out_layer)

    @property
    def out_channels(self) -> int:
        return self.stage_channels(self.out_layer)

    def _stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, in_channels, H, W) -> {"layer1": ..., up to out_layer}, each (B, C_l, H_l, W_l).

        For losses on several pyramid levels (STT uses layer2 and layer3, METHODS.md §4.4).
        """
        x = self._stem(x)
        outputs = {}
        for name in STAGES[: self.num_stages]:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W) -> (B, out_channels, ~H/stride, ~W/stride)."""
        x = self._stem(x)
        for name in STAGES[: self.num_stages]:
            x = getattr(self, name)(x)
        return x

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, strides={self.strides}, out_layer={self.out_layer!r}"


def fold_batchnorm(backbone: ResNetBackbone) -> ResNetBackbone:
    """An inference copy of ``backbone`` with every BatchNorm folded into the conv before it.

    In eval mode a BN is a per-channel affine map, so the conv can absorb it (weight * gamma / std,
    plus a bias): one pass over every activation less (ResNet-18 to layer3 at 480p: 5-9 % of the
    features' time on a CPU). The features change by float rounding only (~1e-6 relative). The copy
    is in eval mode and must not be trained: its BNs are gone. ``backbone`` is left as it is.
    """
    folded = copy.deepcopy(backbone).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(folded, "conv1", "bn1")]
    for name in STAGES[: folded.num_stages]:
        for block in getattr(folded, name):
            convs = 3 if isinstance(block, Bottleneck) else 2
            pairs += [(block, f"conv{i}", f"bn{i}") for i in range(1, convs + 1)]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    for parent, conv, bn in pairs:
        if isinstance(getattr(parent, bn), nn.BatchNorm2d):  # an already folded backbone folds to itself
            setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
            setattr(parent, bn, nn.Identity())
    return folded


def check_backbone_args(arch: str, strides: Sequence[int], padding_mode: str, out_layer: str) -> None:
    """Raise ValueError for an unknown arch, padding mode or out layer, or bad strides."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(_ARCHS)}")
    if len(strides) != 4 or any(int(s) < 1 for s in strides):
        raise ValueError(f"strides must be 4 positive integers (layer1..layer4), got {strides}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {padding_mode!r}; expected one of {PADDING_MODES}")
    if out_layer not in STAGES[1:]:
        raise ValueError(f"out_layer must be one of {STAGES[1:]}, got {out_layer!r}")


def init_resnet_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """(Re-)initialise every conv and BN of ``module`` as torchvision initialises a ResNet.

    Kaiming normal (fan_out, ReLU gain) for convs; BN weight 1, bias 0, fresh running stats.
    With ``generator`` the draws come from it alone: the global RNG is neither used nor advanced.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
    return module
