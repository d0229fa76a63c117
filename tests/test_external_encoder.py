"""`--encoder MODULE:FACTORY`: a network of one's own, evaluated by the papers' protocols.

The equivalence check: our own random ResNet-18 floor loaded through a factory file gives the same
masks, bit for bit, as `--features random-resnet18`. Then a foreign module (torchvision's ResNet
at stride 16) runs end to end, and every way a factory can be wrong ends in a one-line message,
exit 2 and no output folder.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import _fails
from PIL import Image

from vidcorr.cli import main
from vidcorr.evaluate.davis import run_davis
from vidcorr.models.external import load_external_encoder, state_digest
from vidcorr.presets import customised_preset

FACTORIES = '''
import torch
import torchvision
from torch import nn

from vidcorr.models import build_encoder


def our_floor():
    return build_encoder("random-resnet18")


class Stride16(nn.Module):
    """torchvision's ResNet-18 to layer3 (stride 16), ImageNet-normalised input, seeded init."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, rgb):
        return self.body((rgb - self.mean) / self.std)


def stride16():
    return Stride16()


def flat():
    return nn.Flatten()  # (1, 3*112*112): not a feature map


class Quantised(nn.Module):
    def forward(self, rgb):
        return (rgb * 255).to(torch.uint8)  # an image's bytes, not float features


def quantised():
    return Quantised()


class ChannelsLast(nn.Module):
    """Stride-8 features permuted to (B, h, w, C): on a square frame they pass for (B, C, h, w)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, 8)

    def forward(self, rgb):
        return self.patch(rgb).permute(0, 2, 3, 1)


def channels_last():
    return ChannelsLast()


def broken():
    return undefined_name  # noqa: F821


not_a_function = 3
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text(FACTORIES)
    return path


def _masks(folder: Path) -> list[np.ndarray]:
    return [np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_our_floor_through_a_factory_gives_the_floors_masks(short_clip, factories, tmp_path, capsys):
    common = ["eval", "davis", "--root", str(short_clip), "--size", "120"]
    assert main([*common, "--out", str(tmp_path / "floor"), "--features", "random-resnet18"]) == 0
    assert main([*common, "--out", str(tmp_path / "ext"), "--encoder", f"{factories}:our_floor"]) == 0
    floor, ext = _masks(tmp_path / "floor" / "car-shadow"), _masks(tmp_path / "ext" / "car-shadow")
    assert len(floor) == len(ext) == 6 and all(np.array_equal(a, b) for a, b in zip(floor, ext))
    model = json.loads((tmp_path / "ext" / "results.json").read_text())["model"]
    assert model["encoder"] == f"{factories}:our_floor" and model["class"].endswith("FrameEncoder")
    assert model["parameters"] > 1e6 and len(model["state_sha256"]) == 64
    # from Python: the module in hand; the preset by name, or changed like --size
    module = load_external_encoder(f"{factories}:our_floor")[0]
    results = run_davis(module, customised_preset("crw", size=120), short_clip, tmp_path / "py")
    from_python = _masks(tmp_path / "py" / "car-shadow")
    assert results["preset"] == "crw" and len(from_python) == 6
    assert all(np.array_equal(a, b) for a, b in zip(floor, from_python))
    assert run_davis(module, "crw", short_clip, tmp_path / "named", sequences=["car-shadow"])["preset"] == "crw"


def test_a_foreign_module_at_stride_16_runs_and_resume_refuses_another(short_clip, factories, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(factories.parent)  # MODULE as a module name, found in the current folder
    out = tmp_path / "out"
    args = ["eval", "davis", "--root", str(short_clip), "--size", "120", "--out", str(out)]
    assert main([*args, "--encoder", "my_models:stride16"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["class"] == "my_models.Stride16" and 0.0 < results["J&F-Mean"] <= 1.0
    assert results["model"]["stride"] == 16  # measured: the module has no `stride` of its own
    assert len(_masks(out / "car-shadow")) == 6
    capsys.readouterr()
    # another network's folder is not continued
    assert main([*args, "--resume", "--encoder", f"{factories}:our_floor"]) == 2
    assert str(out) in capsys.readouterr().err


def test_the_digest_follows_the_weights_not_the_object() -> None:
    a, _ = load_external_encoder("vidcorr.models:lab_pixels")
    b, _ = load_external_encoder("vidcorr.models:lab_pixels")
    assert a is not b and state_digest(a) == state_digest(b)
    c, d = (load_external_encoder("vidcorr.models:random_resnet18")[0] for _ in range(2))
    assert state_digest(c) == state_digest(d)
    with torch.no_grad():
        next(d.parameters()).add_(1.0)
    assert state_digest(c) != state_digest(d)


@pytest.mark.parametrize("spec, problem", [
    ("{dir}/missing.py:build", "no such Python file"),
    ("no_such_module_here:build", "no module named 'no_such_module_here'"),
    ("{file}", "expected MODULE:FACTORY"),
    ("{file}:absent", "has no callable 'absent'"),
    ("{file}:not_a_function", "has no callable 'not_a_function'"),
    ("{file}:broken", "broken() failed: NameError"),
    ("{file}:flat", "expected float features (1, C, h, w)"),
    ("{file}:quantised", "gave (1, 3, 112, 112) torch.uint8 (not a floating-point dtype"),
    # was run as 28-channel features on a 28 x 16 grid (silently wrong numbers)
    ("{file}:channels_last", "gave 28 channels for a 224 px grey frame but 56 for a 448 px one"),
])
def test_a_wrong_factory_is_one_clear_line_and_no_output(short_clip, factories, tmp_path, capsys, spec, problem):
    spec = spec.format(dir=factories.parent, file=factories)
    out = tmp_path / "out"
    code = main(["eval", "davis", "--root", str(short_clip), "--size", "120", "--out", str(out), "--encoder", spec])
    err = capsys.readouterr().err
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    if problem.startswith("broken"):
        assert "my_models.py:" in err  # where in the user's file


def test_two_factory_files_of_one_name_are_two_modules(tmp_path) -> None:
    """``a/my_models.py`` and ``b/my_models.py`` shared one sys.modules name: loading the second
    replaced the first there, and the first network could no longer be pickled (torch.save of the
    module, spawned workers) - pickle finds a class by module and name."""
    source = '''
from torch import nn


class Scaled(nn.Module):
    def forward(self, x):
        return x[:, :, ::8, ::8] * {scale}


def build():
    return Scaled()
'''
    encoders = []
    for folder, scale in (("a", 1.0), ("b", 2.0)):
        path = tmp_path / folder / "my_models.py"
        path.parent.mkdir()
        path.write_text(source.format(scale=scale))
        encoders.append(load_external_encoder(f"{path}:build")[0])
    first, second = encoders
    assert type(first).__module__ != type(second).__module__
    frame = torch.rand(1, 3, 64, 64)
    for encoder, scale in zip(encoders, (1.0, 2.0)):
        copy = pickle.loads(pickle.dumps(encoder))
        assert torch.equal(copy(frame), frame[:, :, ::8, ::8] * scale)


def test_one_module_name_imported_from_two_folders_is_two_networks_on_resume(short_clip, tmp_path, capsys,
                                                                             monkeypatch) -> None:
    """`--encoder probe_enc:build` imports whichever probe_enc.py comes first on sys.path, the current
    folder among them. From another folder (or PYTHONPATH) the same name was another module, and two
    parameter-free networks share the state digest, class name, parameter count and stride: a resume
    continued the run with the other one without a word. The record holds the file imported, and a
    resume that imports another is refused naming both; an earlier version's record, without it,
    still resumes."""
    source = "from torch import nn\n\n\nclass Enc(nn.Module):\n    def forward(self, x):\n        return {}\n\n\n" \
             "def build():\n    return Enc()\n"
    for folder, features in (("a", "x[:, :, ::8, ::8]"), ("b", "1 - x[:, :, ::8, ::8]")):  # one state (none)
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "probe_enc.py").write_text(source.format(features))
    files = {folder: str((tmp_path / folder / "probe_enc.py").resolve()) for folder in "ab"}
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--size", "64", "--out", str(out),
            "--encoder", "probe_enc:build"]
    path = list(sys.path)

    def run_in(folder: str) -> None:
        """A fresh process's view from ``folder``: its current folder appended to sys.path, nothing cached."""
        sys.modules.pop("probe_enc", None)
        sys.path[:] = path
        monkeypatch.chdir(tmp_path / folder)

    try:
        run_in("a")
        assert main(argv) == 0
        record = json.loads((out / ".run.json").read_text())
        assert record["model"]["module_file"] == files["a"]
        assert json.loads((out / "results.json").read_text())["model"]["module_file"] == files["a"]
        run_in("a")
        assert main([*argv, "--resume"]) == 0
        run_in("b")
        capsys.readouterr()
        _fails([*argv, "--resume"], capsys,
               f"another model (probe_enc:build, other module_file {files['a']} -> {files['b']})")
        del record["model"]["module_file"]  # as an earlier version recorded it
        (out / ".run.json").write_text(json.dumps(record))
        run_in("a")
        assert main([*argv, "--resume"]) == 0
    finally:
        sys.modules.pop("probe_enc", None)
        sys.path[:] = path


def test_an_encoder_file_edited_between_runs_is_another_network_on_resume(short_clip, tmp_path, capsys) -> None:
    """An edited ``forward`` keeps the parameters, so state digest, class, parameter count and stride
    are the same: a resume continued the run with the new code, one folder holding two networks'
    results. The record holds a digest of the file's bytes, and a resume whose file differs is
    refused naming it; a record without the digest (an earlier version's) still resumes."""
    source = "from torch import nn\n\n\nclass Enc(nn.Module):\n    def forward(self, x):\n        return {}\n\n\n" \
             "def build():\n    return Enc()\n"
    path = tmp_path / "edited_enc.py"
    path.write_text(source.format("x[:, :, ::8, ::8]"))
    out = tmp_path / "out"
    argv = ["eval", "davis", "--root", str(short_clip), "--size", "64", "--out", str(out),
            "--encoder", f"{path}:build"]
    assert main(argv) == 0
    record = json.loads((out / ".run.json").read_text())
    assert record["model"]["module_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert main([*argv, "--resume"]) == 0
    path.write_text(source.format("1 - x[:, :, ::8, ::8]"))  # the same (no) parameters, other features
    capsys.readouterr()
    err = _fails([*argv, "--resume"], capsys, f"other module_sha256 ({path.resolve()} edited since that run)")
    assert "module_file" not in err  # the same file
    del record["model"]["module_sha256"]  # as an earlier version recorded it
    (out / ".run.json").write_text(json.dumps(record))
    assert main([*argv, "--resume"]) == 0
