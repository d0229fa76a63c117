"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a dict of tensors and plain containers only (loaded with ``weights_only=True``,
so opening one never runs pickled code):

    format      "vidcorr-checkpoint/1"
    model       the method's state dict (trainable encoder, frozen parts, buffers)
    optimizer   the optimiser's state dict (Adam moments, step counts)
    schedule    {"stage", "stage_step", "lr"}: the learning rate is a pure function of these
    progress    stage index, step counts, data epoch and batches done in it (the sampler
                position), samples seen, unreadable draws, accumulated wall time
    rng         one entry per rank: python, numpy, torch CPU and CUDA generator states
    recipe      the recipe as a dict; data: the video index summary
    commands    the command lines that started and resumed the run, in order (absent from
                checkpoints written before 2026-12-06)

Written atomically (temp file in the same folder + ``os.replace``): a crash or a kill during a
save leaves the previous checkpoint intact.

What a resume accepts (method, recipe, autocast, videos) is checked by `vidcorr.train.resume_checks`.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidcorr import __version__
from vidcorr.errors import InputError
from vidcorr.io.atomic import atomic_file, remove_atomic_leftovers, write_json_atomic
from vidcorr.train.config import Recipe, recipe_from_dict
from vidcorr.train.distributed import DistContext, all_gather_objects
from vidcorr.train.resume_checks import (
    check_method,
    check_same_autocast,
    check_same_videos,
    recipe_differences,
    with_legacy_records,
)

log = logging.getLogger(__name__)

FORMAT = "vidcorr-checkpoint/1"
LATEST = "checkpoint.pt"
RUN_INFO = "run.json"  # what identifies a run dir: recipe, version, every command that ran it
RUN_INFO_FORMAT = "vidcorr-run/1"


@dataclass
class Progress:
    """Where a run is. ``epoch`` / ``batch_in_epoch``: the data epoch within the current stage
    and the batches of it already trained on, i.e. the sampler position."""

    stage: int = 0  # index into the recipe's stages
    stage_step: int = 0  # optimiser steps done in this stage
    step: int = 0  # optimiser steps done in the run
    epoch: int = 0
    batch_in_epoch: int = 0
    samples: int = 0  # samples trained on, all ranks together
    skipped_videos: int = 0  # unreadable draws: draws that hit an unreadable video (one drawn 19 times: 19)
    wall_time: float = 0.0  # seconds, summed over every resumed session


def rng_state() -> dict[str, Any]:
    """This process's generator states, as tensors and plain containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` (tensors and plain containers) to ``path`` atomically."""
    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save({"format": FORMAT, **checkpoint}, tmp)
    return path


def remove_killed_saves(run_dir: Path) -> list[Path]:
    """Delete the temporary files `atomic_file` names (`is_atomic_leftover`) in ``run_dir``, which a
    run killed while saving (SIGKILL, the OOM killer: no clean-up runs) leaves, up to a checkpoint's
    size; they stayed for ever beside the resumed run. Logged; returns them. Only rank 0 calls it,
    once the run is established (its run dir has no other writer)."""
    removed = remove_atomic_leftovers([run_dir])
    if removed:
        log.info("removed %d temporary file(s) left by a killed run in %s: %s", len(removed), run_dir,
                 ", ".join(p.name for p in removed))
    return removed


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``; `InputError` if unusable."""
    path = Path(path)
    if path.is_dir():  # `train export --checkpoint RUN_DIR`
        inside = path / LATEST
        raise InputError(path, f"is a folder, not a checkpoint: give the checkpoint file in it ({inside}"
                               + (")" if inside.is_file() else ", which does not exist)"))
    if not path.is_file():
        raise InputError(path, "no checkpoint at this path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, foreign pickle, ...
        raise InputError(path, f"unreadable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise InputError(path, f"not a vidcorr training checkpoint (expected format {FORMAT})")
    return checkpoint


def stored_recipe(path: Path, checkpoint: dict[str, Any]) -> Recipe:
    """The recipe the checkpoint loaded from ``path`` was trained with, as it records it (the
    method's full config in [model], with the weights records of --autoencoder / --teacher): what
    `resume` compares, `--resume` without --recipe trains on and `train export` builds the model
    from. `InputError` naming ``path`` if unusable. Every vidcorr checkpoint names its recipe; one
    that does not is named "checkpoint" (a name is shown, never compared on resume)."""
    try:
        recorded = checkpoint["recipe"]
        _check_init_record(path, recorded.get("init"))
        return recipe_from_dict(recorded, recorded.get("name", "checkpoint"))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(path, f"holds no readable recipe ({type(error).__name__}: {error})") from None


def _check_init_record(path: Path, init: Any) -> None:
    """`InputError` naming ``path`` unless its recipe's --init record is absent or a weights record
    (``{"weights": path, "sha256": hex}``, as every checkpoint since --init came has held it; no
    older form exists). Anything else failed later in a KeyError: a resume compares the sha256, or
    without --init keeps the record (`vidcorr.cli.train_inputs.recorded_init`)."""
    if init is None or (isinstance(init, dict) and all(isinstance(init.get(k), str) for k in ("weights", "sha256"))):
        return
    raise InputError(path, f"records its --init as {json.dumps(init, default=str)}, not as the weights' path "
                           "and sha256 that vidcorr writes (a damaged checkpoint)")


def payload(method: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
            recipe: Recipe, data: dict[str, Any], ctx: DistContext, *, lr: float,
            stage_name: str, commands: list[str] | None = None) -> dict[str, Any]:
    """The checkpoint dict. Collective under DDP: every rank must call it (RNG states).
    ``commands``: the command lines that started and resumed the run so far."""
    return {
        "model": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"stage": progress.stage, "stage_name": stage_name,
                     "stage_step": progress.stage_step, "lr": lr},
        "progress": asdict(progress),
        "world_size": ctx.world_size,
        "rng": all_gather_objects(rng_state(), ctx),
        "recipe": recipe.to_dict(),
        "bf16": recipe.autocast_bf16(ctx.device.type),  # what the steps so far ran under
        "data": data,
        "commands": list(commands or []),
    }


def stored_commands(path: Path, checkpoint: dict[str, Any]) -> list[str]:
    """The command lines a checkpoint records; [] for one from before they were recorded. A
    malformed entry is not worth refusing a resume or an export over: warned about, then read as
    absent (a resume records its own command alone, an export's sidecar leaves ``commands`` out)."""
    commands = checkpoint.get("commands", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        log.warning("%s: its 'commands' entry is not a list of command lines; ignored", path)
        return []
    return commands


def resume(path: Path, recipe: Recipe, method: nn.Module, optimizer: torch.optim.Optimizer,
           ctx: DistContext, data: dict[str, Any] | None = None,
           loaded: dict[str, Any] | None = None) -> tuple[Progress, list[str]]:
    """Load the checkpoint at ``path`` into ``method``, ``optimizer`` and this rank's RNGs.

    data: the `VideoIndex.describe` summary of the videos this session indexed.
    loaded: the checkpoint at ``path`` as `load_checkpoint` already read it, if it did (not read again).
    Raises `InputError` when the checkpoint was made by another method, with a recipe that trains
    differently (data, model, stages, optimiser, seed, and the weights of --init, --teacher and
    --autoencoder by sha256; the message names each differing field and both values), without the
    bf16 autocast it trained under on its device (a CPU run resumed on a GPU whose [cuda] bf16
    differs from [cpu] bf16 too), or on other videos: that would be a new run, not a resumed one.
    """
    if loaded is None and not Path(path).exists():
        raise InputError(path, "no checkpoint to resume from")
    checkpoint = loaded if loaded is not None else load_checkpoint(path)
    stored = stored_recipe(path, checkpoint)
    check_method(path, stored, recipe.method)  # every other field differs too: they would bury this
    stored = with_legacy_records(path, checkpoint, stored, recipe, method)
    differences = recipe_differences(stored, recipe)
    if differences:
        # The command that started the run shows what a resume forgot, which the fields alone do not
        # say: `[model] localisation false vs true` was a `--ablate L` left out. (Checkpoints from
        # before commands were recorded list resumes alone: no start to show.)
        started = [c for c in stored_commands(path, checkpoint)[:1] if "--resume" not in c.split()]
        raise InputError(path, f"was trained with a different recipe: {'; '.join(differences)}; resume "
                               "with the recipe, options and weights (--init, --teacher, --autoencoder) it was "
                               "started with" + "".join(f" (`{command}`)" for command in started))
    check_same_autocast(path, checkpoint, stored, recipe, ctx.device.type)
    check_same_videos(path, checkpoint.get("data"), data)
    method.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    states = checkpoint["rng"]
    if len(states) != ctx.world_size and ctx.is_main:  # as the "resumed" line below: once, not per rank
        log.warning("%s was written by %d process(es), resuming on %d: the sampler position and "
                    "RNG states carry over only approximately", path, len(states), ctx.world_size)
    set_rng_state(states[ctx.rank % len(states)])
    progress = Progress(**checkpoint["progress"])
    if ctx.is_main:  # every rank restores; only rank 0 logs (docs/training.md, DDP)
        # the stage by name, as every other line of the log (the index counted from 0 read as "stage 1"
        # of a one-stage recipe); past the last stage the run has finished and only its export is left
        where = (f"stage {recipe.stages[progress.stage].name!r}, epoch {progress.epoch}"
                 if progress.stage < len(recipe.stages) else "finished")
        log.info("resumed %s at step %d (%s)", path, progress.step, where)
    return progress, stored_commands(path, checkpoint)


def export_meta(run_dir: Path, recipe: Recipe, data: dict[str, Any] | None, progress: Progress,
                commands: list[str] | None = None) -> dict[str, Any]:
    """The weights sidecar's account of a run at ``progress``: what the trainer's export
    (`vidcorr.train.loop`) and ``vidcorr train export`` of a checkpoint both write. ``finished``:
    every stage of the recipe done, as at a run's end (or in its last stage's checkpoint).
    ``commands``: the command lines that started and resumed the run (left out when unknown: a
    checkpoint from before they were recorded). ``recipe``: a shipped recipe's name, or the path of a
    file of one's own, with its sha256 as ``recipe_sha256`` and that of its ``extends`` chain as
    ``recipe_chain_sha256`` (`Recipe.identity`, `Recipe.file`; a record from before the chain's
    digest was kept has none)."""
    meta = {"name": Path(run_dir).name, "method": recipe.method, "recipe": recipe.identity,
            "recipe_config": recipe.to_dict(), "data": data, "steps": progress.step, "samples": progress.samples,
            "finished": progress.stage == len(recipe.stages), "wall_time_s": round(progress.wall_time, 1)}
    if recipe.file is not None:
        meta["recipe_sha256"] = recipe.file["sha256"]
        if "chain_sha256" in recipe.file:
            meta["recipe_chain_sha256"] = recipe.file["chain_sha256"]
    if commands:
        meta["commands"] = list(commands)
    return meta


def write_run_info(run_dir: Path, recipe: Recipe, commands: list[str]) -> Path:
    """(Over)write RUN_DIR/run.json, atomically: the run dir says by itself what it holds (the
    checkpoints and TensorBoard events do not say it without loading them), and keeps the command
    that started the run after a resume (the sidecar's ``command`` is only the last one)."""
    path = Path(run_dir) / RUN_INFO
    info = {"format": RUN_INFO_FORMAT, "name": Path(run_dir).name, "method": recipe.method,
            "vidcorr_version": __version__, "recipe": recipe.to_dict(), "commands": list(commands)}
    write_json_atomic(info, path)  # NaN refused (recipe files refuse it first): it is no JSON
    return path
