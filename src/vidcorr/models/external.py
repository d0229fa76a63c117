"""Any network as the encoder: ``--encoder MODULE:FACTORY`` on the command line.

The papers' propagation protocols are how the field compares features, so a researcher with a
network of their own (a ViT, a ResNet with their weights) wants it evaluated exactly as ours are,
without writing an evaluation loop. ``FACTORY`` is called with no arguments and returns an
``nn.Module`` that maps RGB (B, 3, H, W), float in [0, 1], to features (B, C, h, w) on a grid
covering the frame; its stride is free (a preset's window radius is in feature cells) and is
measured where one is needed (`measure_stride`), never guessed. ``MODULE`` is a path to a ``.py``
file or an importable module name (the current folder is searched too).

The module is checked once on a small test frame before any output is written, and the file it
was imported from, a digest of that file's bytes and one of its state dict go into the results, so
``--resume`` never mixes two networks in one folder.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from vidcorr.errors import EncoderOutputError, InputError, VidcorrError
from vidcorr.models.encoder import (EvalModeCall, FrameEncoder, as_given, check_weights_hold_data, feature_problem,
                                   inference_encoder)

# Divisible by 8, 14 and 16, the strides and patch sizes of the usual backbones.
PROBE_HW = (112, 112)
# `measure_stride`'s frame sides: multiples of 8, 14, 16 and 32, so stride-32 features are measured too.
STRIDE_PROBES = (224, 448)


def load_external_encoder(spec: str) -> tuple[nn.Module, dict[str, Any]]:
    """``"path/to/file.py:factory"`` or ``"package.module:factory"`` -> (encoder, what was loaded).

    Raises `VidcorrError` (an `InputError` naming the file where there is one) when the module
    cannot be imported, has no such factory, the factory fails, or what it returns does not map
    a (1, 3, 112, 112) frame to a (1, C, h, w) float tensor.
    """
    parts = split_spec(spec)
    if parts is None:
        raise VidcorrError(f"--encoder {spec!r}: expected MODULE:FACTORY, e.g. my_models.py:build or "
                           "my_package.models:build")
    target, factory_name = parts
    module = _import(target, spec)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        raise VidcorrError(f"--encoder {spec}: {target} has no callable {factory_name!r}")
    try:
        encoder = factory()
    except Exception as err:
        raise VidcorrError(f"--encoder {spec}: {factory_name}() failed: {error_origin(err)}") from err
    if not isinstance(encoder, nn.Module):
        raise VidcorrError(f"--encoder {spec}: {factory_name}() returned {type(encoder).__name__}, "
                           "not a torch.nn.Module")
    try:  # before the probe, whose generic "failed on a test frame" would hide why
        check_weights_hold_data(encoder)
    except ValueError as err:
        raise VidcorrError(f"--encoder {spec}: {err}") from None
    _probe(encoder, spec)
    try:
        stride = encoder_stride(encoder)
    except VidcorrError as err:
        raise VidcorrError(f"--encoder {spec}: {err}") from None
    info = {"encoder": spec, "module_file": module_file(module), "module_sha256": module_digest(module),
            "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
            "parameters": sum(p.numel() for p in encoder.parameters()),
            "stride": stride, "state_sha256": state_digest(encoder), "trained": None}
    return encoder, info


def module_file(module: ModuleType) -> str | None:
    """The absolute path (symlinks resolved) of the file a module was imported from, None for one
    without a file. A module name finds whichever file comes first on sys.path (the current folder
    among them): the same name from another folder or PYTHONPATH can be another module, and a
    parameter-free network (or one of the same weights) has the same `state_digest`."""
    path = getattr(module, "__file__", None)
    return str(Path(path).resolve()) if path else None


def module_digest(module: ModuleType) -> str | None:
    """SHA-256 of the bytes of the file a module was imported from, None for one without a readable
    file (built in, from a zip). An edited ``forward`` keeps the parameters and so the `state_digest`:
    a resume after it would mix two networks' results. Only this file: the modules it imports (the
    user's helpers, installed packages) are not followed."""
    path = getattr(module, "__file__", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def split_spec(spec: str) -> tuple[str, str] | None:
    """``"MODULE:FACTORY"`` -> (MODULE, FACTORY), None unless both are there and FACTORY is a name.
    The last ':' splits: a Windows path has one too."""
    target, sep, factory = spec.rpartition(":")
    return (target, factory) if sep and target and factory.isidentifier() else None


def names_a_file(target: str) -> bool:
    """Whether a spec's MODULE is a path to a Python file (``path/my_models.py``), not a module name."""
    return target.endswith(".py") or "/" in target or "\\" in target


def encoder_stride(encoder: nn.Module, device: str | torch.device = "cpu") -> int | None:
    """Output stride in pixels: a `FrameEncoder`'s own (exact: its backbone's), any other module's
    measured (`measure_stride`; None when its grid does not follow the input size). encoder: on
    ``device``, as given or wrapped for inference (`inference_encoder`)."""
    if isinstance(inner := as_given(encoder), FrameEncoder):
        return inner.stride
    return measure_stride(encoder, device)


@torch.inference_mode()
def measure_stride(encoder: nn.Module, device: str | torch.device = "cpu") -> int | None:
    """The output stride in pixels of any encoder, as it behaves: two grey frames, STRIDE_PROBES
    pixels square, in eval mode; stride = growth of the input / growth of its feature grid
    (both axes), rounded.

    The growth, not one frame's ratio: padded convolutions give ceil(H / s) cells, unpadded ones and
    a patch model that resizes to a multiple of its patch floor(H / s) or fewer, and the difference
    between the two grids is the same for all. An attribute is not read: a module's ``stride`` may
    be a tuple (``nn.Conv2d``) or not what its forward does. None when the grid does not grow with
    the frame (a module that resizes every input to one size). `EncoderOutputError` naming the module's
    class when it fails on a probe, gives no (1, C, h, w) float features, or gives another number of
    channels for each probe (channels-last features, whose "grid" (h, w) of (h, w, C) would otherwise
    be propagated as channels and cells: silently wrong numbers).
    """
    name = type(as_given(encoder)).__name__
    (c1, h1, w1), (c2, h2, w2) = (_grey_features(encoder, (side, side), f"encoder {name}", "grey frame (measuring "
                                                 "its stride)", device).shape[1:] for side in STRIDE_PROBES)
    if c1 != c2:  # a layout error, not a network: its "grid" was (h, w) of (h, w, C) features
        raise EncoderOutputError(f"encoder {name} gave {c1} channels for a {STRIDE_PROBES[0]} px grey frame but "
                                 f"{c2} for a {STRIDE_PROBES[1]} px one: the channels must not depend on the frame's "
                                 "size. Channels-last features (1, h, w, C)? Return (1, C, h, w), "
                                 "e.g. .permute(0, 3, 1, 2)")
    cells = (h2 - h1) + (w2 - w1)
    if cells <= 0:
        return None
    return max(1, round(2 * (STRIDE_PROBES[1] - STRIDE_PROBES[0]) / cells))


def check_own_module(encoder: nn.Module, device: str | torch.device = "cpu") -> None:
    """A module of one's own, as given or ready on ``device`` (`inference_encoder`), checked as
    ``--encoder``'s factory output is, before propagating with it (`measure_stride`: grey frames of
    two sizes): `EncoderOutputError` naming it unless it gives (1, C, h, w) float features whose
    channels do not change with the frame's size (channels-last (1, h, w, C) ones would be
    propagated as channels and cells, silently wrong). Our own `FrameEncoder` needs no probe, nor
    an inference copy made for one."""
    if isinstance(as_given(encoder), FrameEncoder):
        check_weights_hold_data(encoder)  # meta weights refused at the call, as its inference copy would
        return
    measure_stride(encoder if isinstance(encoder, EvalModeCall) else inference_encoder(encoder, device), device)


def state_digest(module: nn.Module) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes and values): the same network and weights
    give the same digest in any process."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _import(target: str, spec: str) -> ModuleType:
    if names_a_file(target):
        path = Path(target)
        if not path.is_file():
            raise InputError(path, f"no such Python file (from --encoder {spec})")
        # One name per file, not per stem: two my_models.py in different folders would otherwise
        # share one sys.modules entry, and the first file's classes could no longer be pickled by name.
        name = f"vidcorr_external_{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise InputError(path, "not importable as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # classes defined there must be findable by name (pickling)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise InputError(path, f"importing it failed: {error_origin(err)}") from err
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))  # appended: a file here must not shadow installed packages
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if err.name is not None and target.startswith(err.name):
            raise VidcorrError(f"--encoder {spec}: no module named {target!r} (give a .py file's path, "
                               "or a module importable from the current folder or the environment)") from err
        raise VidcorrError(f"--encoder {spec}: importing {target} failed: {error_origin(err)}") from err
    except Exception as err:
        raise VidcorrError(f"--encoder {spec}: importing {target} failed: {error_origin(err)}") from err


@torch.inference_mode()
def _probe(encoder: nn.Module, spec: str) -> None:
    """Run one grey test frame through the encoder (in eval mode, restored afterwards): VidcorrError
    unless it gives (1, C, h, w) float features."""
    _grey_features(encoder, PROBE_HW, f"--encoder {spec}: the module", "test frame")


def _grey_features(encoder: nn.Module, hw: tuple[int, int], who: str, frame: str,
                   device: str | torch.device = "cpu") -> Tensor:
    """The encoder's features (1, C, h, w) of one grey (H, W) = ``hw`` frame, in eval mode;
    `EncoderOutputError` (a `VidcorrError`) starting with ``who`` when it fails or gives anything else."""
    try:
        out = EvalModeCall(encoder)(torch.full((1, 3, *hw), 0.5, device=device))
    except Exception as err:
        raise EncoderOutputError(f"{who} failed on a 1 x 3 x {hw[0]} x {hw[1]} {frame}: "
                                 f"{error_origin(err)}") from err
    if (got := feature_problem(out, 1)) is not None:
        raise EncoderOutputError(f"{who} gave {got} for a 1 x 3 x {hw[0]} x {hw[1]} {frame}; expected float "
                                 "features (1, C, h, w)")
    return out


def error_origin(err: BaseException) -> str:
    """'TypeError: message (file.py:12)', the innermost frame: enough to find a bug in one's own code."""
    frames = traceback.extract_tb(err.__traceback__)
    place = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{place}"
