"""torchvision's ResNet blocks, restated: the same modules, parameter names and forward.

Why not import them: ``import torchvision`` imports every torchvision model, op and dataset, and
with its ops ``torch._dynamo``, ~2 s at the first API call (`vidcorr.propagate_masks` with the
shipped weights) for two classes of a dozen lines. Everything here matches torchvision 0.29's
``torchvision.models.resnet`` (v1.5: a Bottleneck's stride on its 3x3 conv, no groups, no dilation,
BatchNorm2d), down to the order modules are registered in, which `init_resnet_`'s seeded draws
follow: tests/test_resnet.py checks names, order, and outputs against torchvision's own.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (the first strided) and a shortcut: ResNet-18/34's block."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # after the convs, as torchvision
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 down, 3x3 (strided), 1x1 up (x4) and a shortcut: ResNet-50's block."""

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def make_stage(block: type[BasicBlock | Bottleneck], inplanes: int, planes: int, blocks: int,
               stride: int) -> nn.Sequential:
    """torchvision's ``ResNet._make_layer``: ``blocks`` blocks, the first strided, with a 1x1 conv
    + BN shortcut where the stride or the width changes."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)
