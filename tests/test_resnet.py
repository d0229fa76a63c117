"""ResNet backbones: shapes, strides without dilation, pruned layers, padding mode, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from vidcorr.models.resnet import STAGES, ResNetBackbone, fold_batchnorm, init_resnet_

ARCHS = ["resnet18", "resnet50"]
# (strides, maxpool) -> expected output stride of layer2, layer3, layer4
STRIDE_CONFIGS = {
    "uvc-crw": ((1, 2, 1, 1), True, (8, 8, 8)),
    "stt-d8": ((1, 2, 2, 1), False, (4, 8, 8)),
    "stt-train": ((1, 2, 2, 4), False, (4, 8, 32)),
    "torchvision": ((1, 2, 2, 2), True, (8, 16, 32)),
}
WIDTHS = {"resnet18": (128, 256, 512), "resnet50": (512, 1024, 2048)}
H, W = 48, 72  # not multiples of 32: output sizes are ceil(size / stride)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", list(STRIDE_CONFIGS))
@pytest.mark.parametrize("out_layer", STAGES[1:])
def test_output_shape_stride_and_channels(arch, config, out_layer):
    strides, maxpool, expected_strides = STRIDE_CONFIGS[config]
    index = STAGES.index(out_layer) - 1
    net = ResNetBackbone(arch, strides, maxpool, out_layer=out_layer).eval()
    assert net.stride == expected_strides[index]
    assert net.out_channels == WIDTHS[arch][index]
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        y, stages = net(x), net.forward_stages(x)
    assert y.shape == (1, net.out_channels, math.ceil(H / net.stride), math.ceil(W / net.stride))
    assert torch.isfinite(y).all()
    assert list(stages) == list(STAGES[: index + 2]) and torch.equal(stages[out_layer], y)
    for name, feats in stages.items():
        stride = net.stage_stride(name)
        assert feats.shape[1:] == (net.stage_channels(name), math.ceil(H / stride), math.ceil(W / stride))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", ["uvc-crw", "stt-d8"])
def test_strides_are_conv_strides_never_dilation(arch, config):
    strides, maxpool, _ = STRIDE_CONFIGS[config]
    net = ResNetBackbone(arch, strides, maxpool, out_layer="layer4")
    assert all(m.dilation == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))
    for stage, stride in zip(STAGES, strides, strict=True):
        block = getattr(net, stage)[0]
        strided = block.conv2 if arch == "resnet50" else block.conv1  # where torchvision puts it
        assert strided.stride == (stride, stride)
        if block.downsample is not None:
            assert block.downsample[0].stride == (stride, stride)
    assert isinstance(net.maxpool, nn.MaxPool2d) == maxpool


def test_layer1_stride_adds_a_downsample_shortcut():
    net = ResNetBackbone("resnet18", (2, 2, 1, 1), out_layer="layer2")
    assert net.layer1[0].downsample[0].stride == (2, 2)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 128, 4, 4)
    assert net.stride == 16


@pytest.mark.parametrize("arch", ARCHS)
def test_layers_after_out_layer_are_not_kept(arch):
    net = ResNetBackbone(arch, out_layer="layer3")
    keys = net.state_dict().keys()
    assert not hasattr(net, "layer4") and not hasattr(net, "fc")
    assert not any(k.startswith(("layer4.", "fc.", "avgpool")) for k in keys)
    assert "layer3.0.conv1.weight" in keys  # torchvision parameter names


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("out_layer", STAGES[1:])
def test_every_parameter_gets_a_gradient(arch, out_layer):
    net = ResNetBackbone(arch, (1, 2, 1, 1), out_layer=out_layer, padding_mode="reflect").train()
    feats = net(torch.rand(2, 3, 32, 32))
    (feats * torch.randn_like(feats)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_reflect_padding_applied_to_every_padded_conv():
    net = ResNetBackbone("resnet18", padding_mode="reflect", out_layer="layer4").eval()
    padded = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert padded and all(m.padding_mode == "reflect" for m in padded)
    # A constant image stays constant through reflect-padded convs (eval BN is affine, the
    # max-pool ignores its padding), but zero padding darkens the borders.
    x = torch.full((1, 3, 48, 48), 0.7)
    with torch.no_grad():
        reflect = net(x)
        for m in padded:
            m.padding_mode = "zeros"
        zeros = net(x)
    spread = lambda y: (y.amax(dim=(2, 3)) - y.amin(dim=(2, 3))).max()  # noqa: E731
    assert spread(reflect) < 1e-4 * reflect.abs().max()
    assert spread(zeros) > 1e-2 * zeros.abs().max()


def test_in_channels():
    net = ResNetBackbone("resnet18", in_channels=1, out_layer="layer2")
    assert net.conv1.in_channels == 1
    assert net(torch.rand(1, 1, 32, 32)).shape == (1, 128, 4, 4)


def test_init_matches_torchvision_and_seeded_init_leaves_global_rng():
    net = ResNetBackbone("resnet18", out_layer="layer2")
    fan_out = 64 * 7 * 7  # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
    assert abs(net.conv1.weight.std().item() / math.sqrt(2 / fan_out) - 1) < 0.05
    assert torch.equal(net.bn1.weight, torch.ones(64)) and torch.equal(net.bn1.running_var, torch.ones(64))
    nets = [ResNetBackbone(out_layer="layer2") for _ in range(3)]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    seeded = [init_resnet_(net, torch.Generator().manual_seed(seed)).state_dict()
              for net, seed in zip(nets, (3, 3, 4), strict=True)]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(seeded[0][k], seeded[1][k]) for k in seeded[0])
    assert not torch.equal(seeded[0]["conv1.weight"], seeded[2]["conv1.weight"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"arch": "resnet34"}, "unknown arch 'resnet34'"),
     ({"strides": (1, 2, 1)}, r"strides must be 4 positive integers .* got \(1, 2, 1\)"),
     ({"strides": (1, 0, 1, 1)}, r"strides must be 4 positive integers .* got \(1, 0, 1, 1\)"),
     ({"padding_mode": "circular"}, "unknown padding mode 'circular'"),
     ({"out_layer": "layer1"}, "out_layer must be one of .* got 'layer1'")],
    ids=["arch", "three-strides", "zero-stride", "padding", "out-layer"],
)
def test_invalid_arguments(kwargs, message):
    # The message, not just the type: three strides also fail later, in a zip(strict=True) of the stages.
    with pytest.raises(ValueError, match=message):
        ResNetBackbone(**kwargs)


def _random_batchnorm_(backbone: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BNs are the identity map, so folding them would prove nothing: give them real statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.5, generator=g)
            bn.running_var.uniform_(0.2, 3.0, generator=g)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0, 0.3, generator=g)
    return backbone.eval()


@pytest.mark.parametrize(("arch", "kwargs"), [
    ("resnet18", {"strides": (1, 2, 1, 1), "padding_mode": "reflect", "out_layer": "layer3"}),
    ("resnet18", {"strides": (2, 2, 1, 1), "out_layer": "layer4"}),  # layer1 gets a downsample
    ("resnet50", {"strides": (1, 2, 2, 1), "maxpool": False, "out_layer": "layer3"}),
])
def test_fold_batchnorm_gives_the_same_features(arch, kwargs):
    backbone = _random_batchnorm_(ResNetBackbone(arch, **kwargs))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    folded = fold_batchnorm(backbone)
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        expected, got = backbone(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert n_bn > 0 and all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert folded.layer1[0].conv1.padding_mode == backbone.layer1[0].conv1.padding_mode
    refolded = fold_batchnorm(folded)  # nothing left to fold
    with torch.no_grad():
        assert torch.equal(refolded(x), got)


def _torchvision_trunk(arch: str, strides: tuple[int, ...], out_layer: str) -> nn.Module:
    """torchvision's own ResNet, its stages' strides moved as ours are, cut after ``out_layer``."""
    net = getattr(torchvision.models, arch)(weights=None)
    for name, stride in zip(STAGES, strides, strict=True):
        block = getattr(net, name)[0]
        (block.conv2 if arch == "resnet50" else block.conv1).stride = (stride, stride)
        block.stride = stride
        if block.downsample is not None:
            block.downsample[0].stride = (stride, stride)
        elif stride != 1:
            channels = block.conv1.in_channels
            block.downsample = nn.Sequential(nn.Conv2d(channels, channels, 1, stride=stride, bias=False),
                                             nn.BatchNorm2d(channels))
    kept = STAGES[: STAGES.index(out_layer) + 1]
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *(getattr(net, name) for name in kept))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("strides, out_layer", [((1, 2, 1, 1), "layer3"), ((2, 2, 2, 1), "layer4")])
def test_our_blocks_are_torchvisions_module_for_module(arch, strides, out_layer):
    """The blocks are restated (`vidcorr.models.resnet_blocks`: importing torchvision cost ~2 s at
    the first API call): the same modules in the same order (which seeded inits draw in), the same
    parameter names and shapes, and the same features as torchvision's ResNet with our weights."""
    ours = ResNetBackbone(arch, strides, out_layer=out_layer).eval()
    theirs = _torchvision_trunk(arch, strides, out_layer).eval()
    names = {"0": "conv1", "1": "bn1", "2": "relu", "3": "maxpool",
             **{str(4 + i): stage for i, stage in enumerate(STAGES)}}

    def ours_name(name: str) -> str:
        head, _, rest = name.partition(".")
        return f"{names[head]}.{rest}" if rest else names[head]

    assert [(n, repr(m)) for n, m in ours.named_modules() if n] == \
        [(ours_name(n), repr(m)) for n, m in theirs.named_modules() if n]
    with torch.no_grad():
        for bn in (m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)):  # a trained net's statistics
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
        state = ours.state_dict()
        theirs.load_state_dict({k: state[ours_name(k)] for k in theirs.state_dict()})  # strict: same names, shapes
        x = torch.rand(2, 3, 40, 56)
        assert torch.equal(ours(x), theirs(x))
