"""FrameEncoder: presets, the forward contract, config round trip, channels_last."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from vidcorr.cli import main
from vidcorr.errors import VidcorrError
from vidcorr.models import PRESETS, EncoderConfig, FrameEncoder, build_encoder, lab_pixels
from vidcorr.models.encoder import feature_problem, inference_encoder
from vidcorr.models.external import load_external_encoder
from vidcorr.models.weights import load_encoder

EXPECTED = {  # preset -> (out_channels, colour_mode); METHODS.md §5 "feature" row
    "uvc": (512, "gray-l"),
    "crw": (256, "rgb"),
    "stt": (256, "lab"),
    "stt-r50": (1024, "lab"),
    "cycletime": (512, "rgb"),
    "resnet18": (256, "rgb"),
    "resnet50": (1024, "rgb"),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_forward_contract(name):
    encoder = build_encoder(name).eval()
    assert isinstance(encoder, FrameEncoder)
    assert (encoder.out_channels, encoder.colour_mode) == EXPECTED[name]
    assert encoder.stride == 8
    h, w = 37, 53  # odd sizes: ceil(H / 8) x ceil(W / 8)
    with torch.no_grad():
        feats = encoder(torch.rand(2, 3, h, w))
    assert feats.shape == (2, encoder.out_channels, math.ceil(h / 8), math.ceil(w / 8))
    assert torch.isfinite(feats).all()


def test_preset_architectures_follow_methods():
    uvc, crw, stt = PRESETS["uvc"], PRESETS["crw"], PRESETS["stt"]
    assert (uvc.arch, uvc.strides, uvc.maxpool, uvc.out_layer) == ("resnet18", (1, 2, 1, 1), True, "layer4")
    assert (crw.padding_mode, crw.out_layer) == ("reflect", "layer3")
    assert (stt.strides, stt.maxpool, stt.out_layer) == ((1, 2, 2, 1), False, "layer3")
    assert PRESETS["cycletime"].head_channels == 512


def test_features_are_not_l2_normalised():
    encoder = build_encoder("uvc").eval()
    with torch.no_grad():
        norms = encoder(torch.rand(1, 3, 32, 32)).norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-2)


def test_normalise_then_features_equals_forward():
    encoder = build_encoder("stt").eval()
    rgb = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(encoder.features(encoder.normalise(rgb)), encoder(rgb))


def test_config_dict_round_trip_through_json():
    config = EncoderConfig(arch="resnet50", strides=(1, 2, 2, 1), maxpool=False, padding_mode="reflect",
                           out_layer="layer2", colour_mode="lab", head_channels=64)
    assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert EncoderConfig.from_dict({"arch": "resnet50"}) == EncoderConfig(arch="resnet50")
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({"arch": "resnet18", "dilation": 2})


@pytest.mark.parametrize("bad", [{"colour_mode": "hsv"}, {"arch": "vgg16"}, {"out_layer": "layer5"},
                                 {"head_channels": 0}, {"padding_mode": "circular"}])
def test_invalid_config_is_rejected(bad):
    with pytest.raises(ValueError):
        EncoderConfig(**bad)


def test_build_encoder_accepts_name_config_dict_and_overrides():
    by_dict = build_encoder({"out_layer": "layer2"})
    assert by_dict.out_channels == 128 and by_dict.config == EncoderConfig(out_layer="layer2")
    overridden = build_encoder("crw", out_layer="layer4")
    assert overridden.out_channels == 512 and overridden.config.padding_mode == "reflect"
    assert build_encoder(EncoderConfig(colour_mode="gray-l")).colour_mode == "gray-l"
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("resnet101")


def test_colour_statistics_are_not_in_state_dict():
    keys = build_encoder("uvc").state_dict().keys()
    assert all(k.startswith("backbone.") for k in keys)
    assert "backbone.layer4.1.conv2.weight" in keys


def test_every_parameter_including_head_gets_a_gradient():
    encoder = build_encoder("cycletime").train()
    feats = encoder(torch.rand(2, 3, 32, 32))
    (feats * torch.randn_like(feats)).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_channels_last_gives_same_features():
    encoder = build_encoder("crw").eval()
    rgb = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        expected = encoder(rgb)
        encoder = encoder.to(memory_format=torch.channels_last)
        got = encoder(rgb.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_inference_encoder_folds_and_goes_channels_last_on_cpu(davis2016_root):
    encoder = load_encoder("weights/uvc_r18.safetensors", out_layer="layer3")  # trained BN statistics
    frame = Image.open(davis2016_root / "JPEGImages/480p/car-shadow/00000.jpg").convert("RGB").resize((214, 120))
    rgb = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float() / 255
    ready = inference_encoder(encoder, "cpu")
    with torch.no_grad():
        expected, got = encoder(rgb), ready(rgb)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert not ready.training and not any(isinstance(m, torch.nn.BatchNorm2d) for m in ready.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())  # the caller's is untouched
    assert (ready.stride, ready.out_channels, ready.colour_mode) == (encoder.stride, encoder.out_channels, "gray-l")


def test_inference_encoder_leaves_other_modules_as_the_caller_has_them():
    floor = lab_pixels()
    ready = inference_encoder(floor, "cpu")
    assert ready.wrapped is floor and ready.stride == floor.stride  # attributes read through
    conv = torch.nn.Conv2d(3, 4, 3).train()
    ready = inference_encoder(conv, "cpu")
    seen = []
    conv.register_forward_hook(lambda module, args, out: seen.append(module.training))
    ready(torch.rand(1, 3, 8, 8))
    assert ready.wrapped is conv and seen == [False] and conv.training  # called in eval mode, given back
    elsewhere = inference_encoder(conv, "meta")  # another device: a copy there, the caller's stays put
    assert elsewhere.wrapped is not conv and elsewhere.wrapped.weight.is_meta and conv.weight.device.type == "cpu"


@pytest.mark.parametrize(("feats", "problem"), [
    (torch.zeros(2, 4, 3, 3), None),
    (torch.zeros(2, 4, 3, 3, dtype=torch.float16), None),  # half precision: converted by the propagator
    (torch.zeros(2, 4, 3, 3, dtype=torch.bfloat16), None),
    (torch.zeros(2, 4, 3, 3, dtype=torch.float64), None),
    (torch.zeros(2, 4, 3, 3, dtype=torch.int64), "(2, 4, 3, 3) torch.int64 (not a floating-point dtype"),
    (torch.zeros(2, 4, 3, 3, dtype=torch.uint8), "(2, 4, 3, 3) torch.uint8 (not a floating-point dtype"),
    (torch.zeros(2, 4, 3, 3, dtype=torch.bool), "(2, 4, 3, 3) torch.bool (not a floating-point dtype"),
    (torch.zeros(2, 4, 3, 3, dtype=torch.complex64), "(2, 4, 3, 3) torch.complex64 (not a floating-point dtype"),
    (torch.zeros(2, 4, 3, 3, device="meta"), "(2, 4, 3, 3) torch.float32 on the meta device (shapes only, no data"),
    (torch.zeros(1, 4, 3, 3), "(1, 4, 3, 3) torch.float32"),  # another batch size
    (torch.zeros(2, 3, 3), "(2, 3, 3) torch.float32"),
    ((torch.zeros(2, 4, 3, 3),), "tuple"),
])
def test_feature_problem_says_what_the_features_are_instead(feats, problem):
    """Integer features were refused without saying the dtype was the problem; meta tensors (no data)
    passed and failed later in a raw ``.to()`` ("Cannot copy out of meta tensor")."""
    got = feature_problem(feats, 2)
    if problem is None:
        assert got is None
    else:
        assert got.startswith(problem), got


def test_inference_encoder_refuses_weights_on_the_meta_device():
    with pytest.raises(ValueError, match=r"encoder Conv2d has weights on the meta device .*load_state_dict"):
        inference_encoder(torch.nn.Conv2d(3, 4, 3, device="meta"), "cpu")


META_FACTORIES = '''
import torch
from torch import nn


def meta_conv():
    return nn.Conv2d(3, 8, 8, stride=8, device="meta")


def meta_built():
    with torch.device("meta"):
        return nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.BatchNorm2d(8))
'''


@pytest.mark.parametrize("factory", ["meta_conv", "meta_built"])
def test_an_encoder_factory_with_meta_weights_gets_the_meta_message(tmp_path, capsys, factory):
    """`--encoder FILE:FACTORY` returning an unloaded (meta) module: a Conv2d passed the probe and died in
    a raw "Cannot copy out of meta tensor" traceback; a Sequential failed the probe with torch's "Tensor on
    device meta is not on the expected device cpu". Now one line that says the weights were never loaded."""
    module = tmp_path / "unloaded.py"
    module.write_text(META_FACTORIES)
    meta = "has weights on the meta device (shapes only, no data): load its weights"
    with pytest.raises(VidcorrError, match=rf"^--encoder .*unloaded.py:{factory}: .*{re.escape(meta)}"):
        load_external_encoder(f"{module}:{factory}")
    frames, out = tmp_path / "frames", tmp_path / "out"
    frames.mkdir()
    for t in range(2):
        Image.new("RGB", (64, 48)).save(frames / f"{t:05d}.png")
    code = main(["propagate", str(frames), "--box", "8,8,16,16", "--out", str(out), "--encoder", f"{module}:{factory}"])
    err = capsys.readouterr().err
    assert code == 2 and meta in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
