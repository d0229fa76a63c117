"""`vidcorr train export` (docs/training.md): the encoder held in a UVC, CycleTime, STT or MoCo
training checkpoint, written as released-style weights (.safetensors + JSON sidecar), e.g. of
RUN_DIR/checkpoint-warmup.pt or of a run still in progress. An auto-encoder checkpoint is refused
with the resume that writes its weights instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vidcorr.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from vidcorr.train.checkpoint import Progress
    from vidcorr.train.config import Recipe


def register(methods: argparse._SubParsersAction) -> None:
    """Add ``export`` to `vidcorr train`'s sub-commands."""
    export = methods.add_parser("export", help="export the encoder of a UVC, CycleTime, STT or MoCo training checkpoint",
                                description="Write the encoder held in a UVC, CycleTime, STT or MoCo training checkpoint (e.g. "
                                            "RUN_DIR/checkpoint-warmup.pt, or a run still in progress) as "
                                            "released-style weights (.safetensors + .json).")
    export.add_argument("--checkpoint", required=True, type=Path,
                        help="a checkpoint written by `train uvc`, `cycletime`, `stt` or `moco`")
    export.add_argument("--out", required=True, type=Path, metavar="W", help="weights to write (.safetensors)")
    export.set_defaults(func=run_export)


def _autoencoder_export_hint(path: Path, progress) -> str:
    """How to get an auto-encoder checkpoint's weights: its run writes them (to --out) whenever it
    stops normally, and a resume stopped by --max-steps at the step it is at trains nothing more."""
    return (f"is a checkpoint of `vidcorr train autoencoder` (step {progress.step}); `train export` writes the "
            "encoders of UVC, CycleTime, STT and MoCo runs. An auto-encoder run writes its weights to its --out "
            "itself, at its end and whenever --max-steps stops it; to write them from this checkpoint: "
            f"vidcorr train autoencoder --data <its videos> --run-dir {path.parent} --resume "
            f"--max-steps {progress.step} --out W.safetensors")


def _model_for(path: Path, recipe: Recipe, progress: Progress) -> nn.Module:
    """The UVC, CycleTime, STT or MoCo model (untrained) that the checkpoint at ``path`` holds the
    weights of, built from its recipe's [model]; `InputError` naming ``path`` if it cannot be."""
    from vidcorr.methods import cycletime, moco, stt, uvc
    from vidcorr.models import LabAutoencoder
    from vidcorr.train.checkpoint import MODEL_RECORDS

    configs = {"uvc": uvc.UVCConfig, "cycletime": cycletime.CycleTimeConfig, "stt": stt.STTConfig,
               "moco": moco.MoCoConfig}
    if recipe.method == "autoencoder":
        raise InputError(path, _autoencoder_export_hint(path, progress))
    if recipe.method not in configs:
        raise InputError(path, f"not a UVC, CycleTime, STT or MoCo checkpoint (method {recipe.method!r})")
    # The recipe in a checkpoint holds the method's full config (see `vidcorr.cli.train_cmd`).
    config = {k: v for k, v in recipe.model.items() if k not in MODEL_RECORDS}
    try:  # a damaged [model] (a NaN temperature, a string for a number) ended in a traceback here
        cfg = configs[recipe.method].from_dict(config)
    except (ValueError, TypeError) as error:
        raise InputError(path, f"holds a [model] config that cannot be built: {error}") from None
    if recipe.method == "uvc":  # the auto-encoder's tensors are in the state dict: a fresh one is a container
        return uvc.UVC(cfg, LabAutoencoder())
    if recipe.method == "cycletime":
        return cycletime.CycleTime(cfg)
    if recipe.method == "stt":  # the encoder alone: the teacher is not in the checkpoint
        return stt.STT(cfg, None)
    return moco.MoCo(cfg)


def run_export(args: argparse.Namespace) -> int:
    from vidcorr.models import save_weights
    from vidcorr.models.weights import export_dtype
    from vidcorr.train.checkpoint import (
        Progress,
        export_meta,
        load_checkpoint,
        stored_commands,
        stored_recipe,
    )

    if args.out.suffix != ".safetensors":
        raise InputError(args.out, "weights must be written to a .safetensors file")
    checkpoint = load_checkpoint(args.checkpoint)
    recipe = stored_recipe(args.checkpoint, checkpoint)
    progress = Progress(**checkpoint["progress"])
    model = _model_for(args.checkpoint, recipe, progress)
    model.load_state_dict(checkpoint["model"])
    # The trainer's own sidecar fields, as far as the checkpoint holds them (not the hardware; the
    # command lines that trained it as `commands`, but no `command`: that is the trainer's own).
    meta = {**export_meta(args.checkpoint.parent, recipe, checkpoint.get("data"), progress,
                          stored_commands(args.checkpoint, checkpoint)),
            "exported_from": str(args.checkpoint)}
    path = save_weights(model.encoder, args.out, None, meta, dtype=export_dtype(model.encoder))
    when = "the run's end" if meta["finished"] else "before the recipe's end: marked unfinished"
    print(f"exported the encoder at step {progress.step} ({when}) of {args.checkpoint} to {path}")
    return 0
