"""Released weights: a ``.safetensors`` file plus a JSON sidecar (DESIGN.md, "Weights").

``model.safetensors`` holds the learned tensors (parameters in fp16 by default; buffers such as
BN running statistics stay float32, they are tiny and their range is not bounded) and, in its
metadata, the model config, so a lone file still loads. ``model.json`` holds the config, the
caller's training meta (data, steps, metrics), the library version and the weights' sha256, so a
sidecar that belongs to another file is caught. Both are written atomically (temp file in the
same folder + ``os.replace``), so an interrupted save leaves the previous files intact.

Training checkpoints (optimizer, scheduler, RNG state) are the trainer's business, not this file's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

import vidcorr
from vidcorr.defaults import DEFAULT_WEIGHTS
from vidcorr.errors import WeightsError
from vidcorr.io.atomic import atomic_file, write_json_atomic
from vidcorr.models.autoencoder import LabAutoencoder
from vidcorr.models.encoder import EncoderConfig, FrameEncoder
from vidcorr.models.resnet import STAGES

log = logging.getLogger(__name__)

FORMAT = "vidcorr-weights/1"
AUTOENCODER_CONFIG = {"model": "lab-autoencoder"}


@dataclass
class WeightsFile:
    """Contents of a weights file: float32 tensors, the model config, the training meta and the
    file's sha256 (hex; what provenance records: results, a run's --init)."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    meta: dict[str, Any]
    vidcorr_version: str | None
    sha256: str


def sidecar_path(path: str | Path) -> Path:
    """``model.safetensors`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def _file_sha256(path: Path) -> str:
    """Hex sha256 of a file (sidecars, `WeightsFile.sha256`)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dtype_name(dtype: torch.dtype) -> str:
    """The dtype's name without "torch." (float16): as the sidecar records it and errors name it."""
    return str(dtype).removeprefix("torch.")


def beyond_range(module: nn.Module, dtype: torch.dtype) -> tuple[str, float] | None:
    """The first floating-point parameter of ``module`` holding a finite value that the cast to ``dtype``
    makes infinite, with the largest such magnitude; None when every parameter fits.

    Decided by the cast itself, so the boundary is exact: float16's largest value is 65504, but
    anything below 65520 rounds to it (a rounding, like any other); 65520 and above become infinite.
    Element by element: a NaN elsewhere in the tensor does not hide an overflow."""
    for name, tensor in module.named_parameters():
        tensor = tensor.detach()
        if not tensor.is_floating_point():
            continue
        overflow = torch.isfinite(tensor) & ~torch.isfinite(tensor.to(dtype))
        if bool(overflow.any()):
            return name, tensor[overflow].abs().max().item()
    return None


def export_dtype(module: nn.Module) -> torch.dtype:
    """float16, the release format, unless a parameter of ``module`` exceeds its range: then
    float32, with a warning. For exports that have no other choice to offer (the end of a training
    run, `vidcorr train export`): `save_weights`' refusal would end them there."""
    overflow = beyond_range(module, torch.float16)
    if overflow is None:
        return torch.float16
    log.warning("%s holds values up to %g, beyond float16's range: exporting float32 weights", *overflow)
    return torch.float32


def _export_tensors(module: nn.Module, dtype: torch.dtype, path: Path) -> dict[str, torch.Tensor]:
    """The state dict on the CPU, parameters in ``dtype``; `WeightsError` naming ``path`` for a value
    the cast makes infinite (`beyond_range`: 65520 or more for float16): loading would refuse the file."""
    overflow = beyond_range(module, dtype)
    if overflow is not None:
        raise WeightsError(path, f"{overflow[0]} holds values up to {overflow[1]:g}, beyond "
                                 f"{_dtype_name(dtype)}'s range; save with dtype=torch.float32")
    parameters = {name for name, _ in module.named_parameters()}
    tensors = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if name in parameters and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()  # channels_last models hold non-contiguous weights
    return tensors


def save_weights(
    module: nn.Module,
    path: str | Path,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``module``'s state dict to ``path`` (.safetensors) and its sidecar ``path.json``.

    config: what rebuilds the model: ``EncoderConfig.to_dict()`` for a `FrameEncoder` (the
        default when ``module`` has an ``EncoderConfig`` in ``.config``), `AUTOENCODER_CONFIG`
        for the Lab auto-encoder.
    meta: JSON-serialisable training record (data, steps, metrics, ...); a NaN or infinity in it
        or in ``config`` is a ValueError naming the sidecar and the key, before anything is written.
    dtype: storage dtype of floating-point parameters; loading always gives float32.
    Returns ``path``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights must be written to a .safetensors file")
    if config is None:
        if not isinstance(getattr(module, "config", None), EncoderConfig):
            raise ValueError(f"{path}: no config given and {type(module).__name__} has none")
        config = module.config.to_dict()
    meta = meta or {}
    _refuse_non_finite(path, {"config": config, "meta": meta})  # fail before writing anything
    config_json, meta_json = json.dumps(config), json.dumps(meta)
    metadata = {"format": FORMAT, "config": config_json, "meta": meta_json,
                "vidcorr_version": vidcorr.__version__}
    tensors = _export_tensors(module, dtype, path)
    with atomic_file(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata)
    sidecar = {
        "format": FORMAT,
        "weights": path.name,
        "sha256": _file_sha256(path),
        "dtype": _dtype_name(dtype),
        "vidcorr_version": vidcorr.__version__,
        "config": config,
        "meta": meta,
    }
    write_json_atomic(sidecar, sidecar_path(path))
    return path


def _refuse_non_finite(path: Path, value: Any, key: str = "") -> None:
    """ValueError naming ``path``'s sidecar and the key of a NaN or infinity anywhere in ``value``
    (a diverged loss among the metrics, say): JSON has no such value, and Python's "NaN" token, which
    json.dumps writes by default, breaks strict readers. Asked before the weights are written, so a
    refused save leaves neither file."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{sidecar_path(path)}: {key} is {value}; the weights' sidecar takes finite "
                         "numbers only (JSON has no NaN or infinity), nothing was written")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for name, item in items:
        where = f"{key}[{name}]" if isinstance(name, int) else f"{key}.{name}" if key else str(name)
        _refuse_non_finite(path, item, where)


def _read_sidecar(path: Path, sha256: str) -> dict[str, Any] | None:
    """The sidecar of ``path`` (None if absent), checked against the file's ``sha256``."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(sidecar, f"unreadable sidecar of {path.name}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise WeightsError(sidecar, f"sidecar of {path.name} has no 'config' object")
    if "sha256" in data and data["sha256"] != sha256:
        raise WeightsError(path, f"does not match its sidecar {sidecar.name} (sha256 differs): "
                                 "the weights were replaced, corrupted, or the sidecar is stale")
    return data


def _metadata_json(metadata: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(metadata.get(key, "{}"))
    except json.JSONDecodeError as error:
        raise WeightsError(path, f"metadata {key!r} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise WeightsError(path, f"metadata {key!r} is not a JSON object")
    return value


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` starts as ``torch.save`` writes: a zip archive, or (the legacy format) a
    pickle's protocol byte. Asked only of a file safetensors could not read: a safetensors header
    length may begin with 0x80 too."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def warn_if_unfinished(weights: WeightsFile, path: str | Path) -> bool:
    """Log a warning when ``weights`` were exported before their training recipe's end (by
    ``--max-steps`` or from a stopped run's checkpoint: sidecar ``"finished": false``); True if so."""
    if weights.meta.get("finished") is not False:
        return False
    log.warning("%s: weights of an unfinished training run (exported at step %s, before its recipe's "
                "end): expect less than the finished recipe gives", path, weights.meta.get("steps", "?"))
    return True


def read_weights(path: str | Path) -> WeightsFile:
    """Read a weights file; tensors come back as float32 (non-float buffers unchanged).

    Raises `WeightsError` naming the file if it is missing, not a valid (or a truncated)
    safetensors file, or if no config is found in either the sidecar or the file's metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, _no_weights_file(path))
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError) as error:
        if _is_torch_file(path):  # `eval --weights RUN_DIR/checkpoint.pt` said "header too large"
            if hint := _autoencoder_hint(path.parent):
                raise WeightsError(path, "is a PyTorch file (torch.save): an auto-encoder training "
                                         f"checkpoint; {hint}") from None
            raise WeightsError(path, "is a PyTorch file (torch.save), not safetensors weights; for a training "
                                     "checkpoint, export its encoder first: `vidcorr train export --checkpoint "
                                     f"{path} --out W.safetensors`, then give W") from None
        if path.suffix.lower() == ".json" and path.with_suffix(".safetensors").is_file():
            # the sidecar beside the weights, picked by tab completion: "header too large" said nothing
            raise WeightsError(path, "is the JSON sidecar of the weights, not the weights: give "
                                     f"{path.with_suffix('.safetensors')}") from None
        raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    sha256 = _file_sha256(path)
    sidecar = _read_sidecar(path, sha256)
    if sidecar is not None:
        config, meta, version = sidecar["config"], sidecar.get("meta", {}), sidecar.get("vidcorr_version")
    elif "config" in metadata:
        config, meta = _metadata_json(metadata, "config", path), _metadata_json(metadata, "meta", path)
        version = metadata.get("vidcorr_version")
    else:
        raise WeightsError(path, f"no model config: sidecar {sidecar_path(path).name} is missing "
                                 "and the file carries no vidcorr metadata")
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return WeightsFile(tensors, config, meta, version, sha256)


def _no_weights_file(path: Path) -> str:
    """Why there are no weights at ``path``, with the file most likely meant: a training run's
    folder, the name without ``.safetensors``, a shipped file's bare name (all were "weights file
    does not exist", a folder too)."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        if len(found) == 1:
            return f"is a folder, not a weights file: give {path / found[0]}"
        if found:
            return f"is a folder, not a weights file; it holds {_listed(found)}: give one of them"
        if hint := _autoencoder_hint(path):
            return f"is a folder, not a weights file: an auto-encoder training run; {hint}"
        if checkpoint := _latest_checkpoint(path):  # a training run's folder, not yet exported
            return ("is a folder, not a weights file: export the encoder of its checkpoint first, `vidcorr train "
                    f"export --checkpoint {checkpoint} --out W.safetensors`, then give W")
        return "is a folder, not a weights file (.safetensors)"
    if (named := path.with_name(path.name + ".safetensors")).is_file():
        return f"weights file does not exist; {named} does: give the file's whole name"
    if len(path.parts) == 1 and (shipped := DEFAULT_WEIGHTS.parent / path.name).is_file():
        return f"weights file does not exist here; the shipped weights are {shipped}"
    return "weights file does not exist"


def _autoencoder_hint(run_dir: Path) -> str | None:
    """Where the weights of the auto-encoder run in ``run_dir`` are, by the last command in its
    run.json; None for another method's run, or without a readable run.json. `train export`, which
    the other hints name, refuses an auto-encoder checkpoint: such a run writes its own --out."""
    try:
        info = json.loads((run_dir / "run.json").read_text())
        commands = info["commands"] if info.get("method") == "autoencoder" else []
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not commands or not isinstance(commands[-1], str):
        return None
    return f"the run writes its weights to its --out: give that file (its last command: `{commands[-1]}`)"


def _latest_checkpoint(folder: Path) -> Path | None:
    """A training run's latest checkpoint in ``folder``: ``checkpoint.pt`` (the trainer rewrites it at
    every save), else the newest stage checkpoint ``checkpoint-<stage>.pt`` (stage names, e.g.
    ``warmup``, do not sort by time). Sorted by name, a stage's came first (``-`` sorts before ``.``)."""
    from vidcorr.train.checkpoint import LATEST  # here: the trainer's imports are no part of reading weights

    if (folder / LATEST).is_file():
        return folder / LATEST
    stages = sorted(folder.glob("checkpoint-*.pt"), key=lambda path: path.stat().st_mtime)
    return stages[-1] if stages else None


def _listed(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _load_state(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)``, with a short error naming the file and the first offenders."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    reshaped = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
                for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    # load_state_dict copies integers into float parameters (and floats into integer buffers) silently
    retyped = [f"{k} {_dtype_name(tensors[k].dtype)} vs {_dtype_name(v.dtype)}"
               for k, v in expected.items() if k in tensors and tensors[k].is_floating_point() != v.is_floating_point()]
    problems = [f"{len(found)} {kind} ({_listed(found)})" for kind, found in
                (("missing", missing), ("unexpected", unexpected), ("with wrong shape", reshaped),
                 ("of the wrong kind of number", retyped)) if found]
    if problems:
        raise WeightsError(path, "tensors do not match the model in its config: " + "; ".join(problems))
    # A diverged training run exports NaN weights: the masks came out empty without a word.
    broken = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:
        raise WeightsError(path, f"{len(broken)} tensors hold NaN or infinite values ({_listed(broken)}): "
                                 "weights of a diverged training run?")
    module.load_state_dict(tensors, strict=True)


def _encoder_config(weights: WeightsFile, path: Path) -> EncoderConfig:
    if weights.config.get("model") == AUTOENCODER_CONFIG["model"]:  # said plainly, not as a config error
        raise WeightsError(path, "holds UVC's Lab auto-encoder (from `vidcorr train autoencoder`, an input to "
                                 "`vidcorr train uvc --autoencoder`), not a frame encoder (what --weights, --init and "
                                 "--teacher take)")
    try:
        return EncoderConfig.from_dict(weights.config)
    except (ValueError, TypeError) as error:
        raise WeightsError(path, f"invalid encoder config {weights.config}: {error}") from None


def load_weights_into(module: nn.Module, path: str | Path) -> WeightsFile:
    """Copy the weights at ``path`` into ``module`` in place (strict: every tensor, same shapes).

    When ``module`` is a `FrameEncoder`, the file's encoder config must equal the module's (the
    same shapes can mean another input colour space or another layer). Raises `WeightsError`
    naming the file and what differs. Returns what was read (its meta, for provenance).
    """
    path = Path(path)
    weights = read_weights(path)
    config = getattr(module, "config", None)
    if isinstance(config, EncoderConfig):
        theirs = _encoder_config(weights, path).to_dict()  # fields a file predates take their defaults
        ours = config.to_dict()
        differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        if differ:
            raise WeightsError(path, "encoder config differs from the model being trained: " + "; ".join(
                f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in differ))
    _load_state(module, weights.tensors, path)
    return weights


def _truncate(
    config: EncoderConfig, tensors: dict[str, torch.Tensor], out_layer: str, path: Path
) -> tuple[EncoderConfig, dict[str, torch.Tensor]]:
    """Drop the stages after ``out_layer`` (and the head on top of them) from config and tensors."""
    keep, saved = STAGES.index(out_layer), STAGES.index(config.out_layer)
    if keep > saved:
        raise WeightsError(path, f"cannot take {out_layer}: the weights end at {config.out_layer}")
    if keep == saved:
        return config, tensors
    dropped = (*(f"backbone.{stage}." for stage in STAGES[keep + 1 :]), "head.")
    tensors = {k: v for k, v in tensors.items() if not k.startswith(dropped)}
    return config.replace(out_layer=out_layer, head_channels=None), tensors


def load_encoder(
    path: str | Path, device: str | torch.device = "cpu", out_layer: str | None = None
) -> FrameEncoder:
    """Rebuild a `FrameEncoder` from released weights, in float32 and eval mode, on ``device``.

    out_layer: take features from an earlier stage than the one trained (CRW and STT train
        through layer4 but propagate with layer3, METHODS.md §3.2, §4.6); later stages and
        any head are dropped. Every remaining tensor must match (strict loading).
    Raises `WeightsError` naming the file for missing/corrupt files, a missing or invalid config
    and tensors that do not match the architecture.
    """
    return encoder_from_weights(read_weights(path), path, device, out_layer)


def encoder_from_weights(
    weights: WeightsFile, path: str | Path, device: str | torch.device = "cpu", out_layer: str | None = None
) -> FrameEncoder:
    """`load_encoder` on weights already read with `read_weights` (``path`` names them in errors)."""
    if out_layer is not None and out_layer not in STAGES[1:]:
        raise ValueError(f"out_layer must be one of {STAGES[1:]}, got {out_layer!r}")
    path = Path(path)
    config = _encoder_config(weights, path)
    tensors = weights.tensors
    if out_layer is not None:
        config, tensors = _truncate(config, tensors, out_layer, path)
    encoder = FrameEncoder.from_config(config)
    _load_state(encoder, tensors, path)
    return encoder.to(device).eval()


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> LabAutoencoder:
    """Rebuild the UVC Lab auto-encoder from weights saved with `AUTOENCODER_CONFIG`."""
    return autoencoder_from_weights(read_weights(path), path, device)


def autoencoder_from_weights(
    weights: WeightsFile, path: str | Path, device: str | torch.device = "cpu"
) -> LabAutoencoder:
    """`load_autoencoder` on weights already read with `read_weights` (``path`` names them in errors)."""
    path = Path(path)
    if weights.config.get("model") != AUTOENCODER_CONFIG["model"]:
        raise WeightsError(path, f"not Lab auto-encoder weights (config {weights.config})")
    model = LabAutoencoder()
    _load_state(model, weights.tensors, path)
    return model.to(device).eval()
