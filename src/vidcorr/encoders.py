"""Which encoder a preset propagates with, and what was loaded: trained weights (the shipped
default, or a file) cut at the preset's feature layer, or an untrained floor. The scripting API
(`vidcorr.encoder_for`, the propagate functions' default encoder) and the command line (``--weights``,
``--features``; `vidcorr.cli.common.load_model`) load their models here, so both load them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vidcorr.defaults import BEST_FLOOR, DEFAULT_WEIGHTS, FLOOR_NAMES
from vidcorr.errors import VidcorrError, WeightsError
from vidcorr.models.external import names_a_file, split_spec
from vidcorr.presets import PropagationPreset


def resolve_encoder(
    preset: PropagationPreset,
    weights: str | Path | None = None,
    features: str | None = None,
    *,
    fallback_to_floor: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """-> (encoder, what was loaded) for an untrained floor (features), weights, or the default weights.

    Trained weights are cut at the preset's feature layer (CRW and STT propagate with layer3 even
    when the network was trained through layer4). fallback_to_floor: with no weights given and
    none shipped, use `BEST_FLOOR` (the demo) instead of raising `VidcorrError`.
    """
    from vidcorr.models import build_encoder, read_weights
    from vidcorr.models.weights import encoder_from_weights, warn_if_unfinished

    if features is not None and weights is not None:
        raise ValueError("give weights or features (an untrained floor), not both")
    if features is not None:
        if features not in FLOOR_NAMES:
            raise ValueError(f"unknown floor {features!r}; choose one of {', '.join(FLOOR_NAMES)}")
        return build_encoder(features), {"features": features, "trained": False}
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is None and not path.exists():
        if fallback_to_floor:
            return build_encoder(BEST_FLOOR), {"features": BEST_FLOOR, "trained": False,
                                               "note": f"untrained floor: no trained weights at {path}"}
        raise VidcorrError(f"no trained weights at {path}; give weights (--weights PATH) or an untrained floor "
                           f"(--features {'|'.join(FLOOR_NAMES)})")
    if not path.exists() and _is_factory_spec(str(weights)):
        raise WeightsError(path, "no such weights file; MODULE:FACTORY names a network of one's own, which "
                                 "--encoder takes (from Python: encoder=vidcorr.models.external."
                                 "load_external_encoder(spec)[0])")
    loaded = read_weights(path)
    out_layer = _layer_for(loaded.config.get("out_layer"), preset.feature_layer)
    encoder = encoder_from_weights(loaded, path, out_layer=out_layer)
    info = {"weights": str(path), "sha256": loaded.sha256, "trained": True,
            "out_layer": getattr(getattr(encoder, "config", None), "out_layer", None)}
    info.update({k: loaded.meta[k] for k in ("name", "steps", "recipe", "recipe_sha256", "recipe_chain_sha256")
                 if k in loaded.meta})
    if warn_if_unfinished(loaded, path):  # exported by --max-steps or from a stopped run's checkpoint
        info["finished"] = False
    return encoder, info


def _is_factory_spec(text: str) -> bool:
    """Whether ``text``, a weights path that does not exist, reads as a spec `load_external_encoder`
    takes (given as weights, it was "weights file does not exist", with no word on where it goes):
    ``path/file.py:factory``, or ``package.module:factory`` whose top package is importable from
    the environment or the current folder (as `load_external_encoder` imports it). A weights name
    with a ':' of its own is not one: ``run:final`` (no module ``run``), ``C:\\w\\crw.safetensors``,
    ``C:/runs/crw:v2`` (a path, but not a ``.py`` file)."""
    parts = split_spec(text)
    if parts is None:
        return False
    target = parts[0]
    if names_a_file(target):  # a file, as load_external_encoder reads it
        return target.endswith(".py") or Path(target).is_file()
    names = target.split(".")
    return all(name.isidentifier() for name in names) and _importable(names[0])


def _importable(top: str) -> bool:
    """Whether the top-level module ``top`` can be found (not imported: finding a top-level module
    runs none of its code) in the environment or the current folder."""
    import importlib.machinery
    import importlib.util
    import sys

    try:
        return (importlib.util.find_spec(top) is not None
                or importlib.machinery.PathFinder.find_spec(top, [str(Path.cwd())]) is not None)
    except (ImportError, ValueError):  # ValueError: a loaded module without __spec__ (__main__)
        return top in sys.modules


def _layer_for(trained: str | None, wanted: str | None) -> str | None:
    """The preset's layer, unless the weights end earlier (then use what they have)."""
    from vidcorr.models.resnet import STAGES

    if wanted is None or trained not in STAGES or STAGES.index(trained) <= STAGES.index(wanted):
        return None
    return wanted
