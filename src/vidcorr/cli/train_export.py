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
    export = methods.add_parser("export",
                                help="export the encoder of a UVC, CycleTime, STT or MoCo training checkpoint",
                                description="Write the encoder held in a UVC, CycleTime, STT or MoCo training "
                                            "checkpoint (e.g. RUN_DIR/checkpoint-warmup.pt, or a run still in "
                                            "progress) as released-style weights (.safetensors + .json).")
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
    from vidcorr.train.resume_checks import MODEL_RECORDS

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


# Names of each kind of mismatch shown in `state_dict_mismatch` (a different arch differs in hundreds).
SHOWN_KEYS = 3


def state_dict_mismatch(model: nn.Module, state: dict) -> str | None:
    """What keeps ``state`` from loading into ``model`` (``load_state_dict``, strict), in one line with
    at most `SHOWN_KEYS` names of each kind: "2 missing (a, b), 1 of another shape (c: (64, 3) in the
    checkpoint, (32, 3) in the model)"; None if it loads."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k}: {tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} in the model"
                for k, v in expected.items() if k in state and hasattr(state[k], "shape")
                and tuple(state[k].shape) != tuple(v.shape)]
    parts = [_some(names, kind, sep) for names, kind, sep in
             ((missing, "missing", ", "), (unexpected, "unexpected", ", "), (reshaped, "of another shape", "; "))
             if names]
    return ", ".join(parts) or None


def _some(names: list[str], kind: str, sep: str) -> str:
    """"2 missing (a, b)"; past `SHOWN_KEYS` names, "... and N more"."""
    more = f"{sep}... and {len(names) - SHOWN_KEYS} more" if len(names) > SHOWN_KEYS else ""
    return f"{len(names)} {kind} ({sep.join(names[:SHOWN_KEYS])}{more})"


def _load_model_weights(path: Path, model: nn.Module, checkpoint: dict, method: str) -> None:
    """The checkpoint's "model" tensors into ``model``; `InputError` naming ``path`` and what does not
    match (a checkpoint of another arch or another version of the code; `load_state_dict`'s error
    was a traceback of hundreds of lines)."""
    state = checkpoint.get("model")
    if not isinstance(state, dict):
        raise InputError(path, "holds no model weights (no \"model\" state dict)")
    problem = state_dict_mismatch(model, state)
    if problem:
        raise InputError(path, f"its model weights do not match the {method} model its recipe's [model] "
                               f"builds: {problem}")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # what the key and shape comparison above does not see
        last_line = str(error).strip().splitlines()[-1].strip()
        raise InputError(path, f"its model weights cannot be loaded: {last_line}") from None


def run_export(args: argparse.Namespace) -> int:
    from vidcorr.io.atomic import check_output_path
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
    check_output_path(args.out, folder=False)  # FILE/w.safetensors was a traceback after the model was built
    checkpoint = load_checkpoint(args.checkpoint)
    recipe = stored_recipe(args.checkpoint, checkpoint)
    progress = Progress(**checkpoint["progress"])
    model = _model_for(args.checkpoint, recipe, progress)
    _load_model_weights(args.checkpoint, model, checkpoint, recipe.method)
    # The trainer's own sidecar fields, as far as the checkpoint holds them (not the hardware; the
    # command lines that trained it as `commands`, but no `command`: that is the trainer's own).
    meta = {**export_meta(args.checkpoint.parent, recipe, checkpoint.get("data"), progress,
                          stored_commands(args.checkpoint, checkpoint)),
            "exported_from": str(args.checkpoint)}
    path = save_weights(model.encoder, args.out, None, meta, dtype=export_dtype(model.encoder))
    when = "the run's end" if meta["finished"] else "before the recipe's end: marked unfinished"
    print(f"exported the encoder at step {progress.step} ({when}) of {args.checkpoint} to {path}")
    return 0
