"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a dict of tensors and plain containers only (loaded with ``weights_only=True``,
so opening one never runs pickled code):

    format      "vidcorr-checkpoint/1"
    model       the method's state dict (trainable encoder, frozen parts, buffers)
    optimizer   the optimiser's state dict (Adam moments, step counts)
    schedule    {"stage", "stage_step", "lr"}: the learning rate is a pure function of these
    progress    stage index, step counts, data epoch and batches done in it (the sampler
                position), samples seen, skipped-video count, accumulated wall time
    rng         one entry per rank: python, numpy, torch CPU and CUDA generator states
    recipe      the recipe as a dict; data: the video index summary

Written atomically (temp file in the same folder + ``os.replace``): a crash or a kill during a
save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidcorr.errors import InputError
from vidcorr.io.atomic import atomic_file
from vidcorr.train.config import Recipe, recipe_from_dict
from vidcorr.train.distributed import DistContext, all_gather_objects

log = logging.getLogger(__name__)

FORMAT = "vidcorr-checkpoint/1"
LATEST = "checkpoint.pt"


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
    skipped_videos: int = 0  # broken videos skipped by the data pipeline
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``; `InputError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no checkpoint to resume from")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, foreign pickle, ...
        raise InputError(path, f"unreadable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise InputError(path, f"not a vidcorr training checkpoint (expected format {FORMAT})")
    return checkpoint


def _check_same_autocast(path: Path, checkpoint: dict[str, Any], stored: Recipe, recipe: Recipe,
                         device_type: str) -> None:
    """bf16 autocast computes in another precision: a resume must keep what the run trained under.
    Checkpoints before 2026-12-06 did not record it: their recipe's [cpu] and [cuda] flags must match."""
    now = recipe.autocast_bf16(device_type)
    if "bf16" in checkpoint:
        if checkpoint["bf16"] != now:
            raise InputError(path, f"was trained {'with' if checkpoint['bf16'] else 'without'} bf16 autocast, but "
                                   f"[{device_type}] bf16 = {str(now).lower()} now; resume with the setting it "
                                   "was trained with (on a GPU: [cuda] bf16, on a CPU: [cpu] bf16)")
        return
    changed = [f"{device}.bf16" for device in ("cpu", "cuda")
               if getattr(stored, device).bf16 != getattr(recipe, device).bf16]
    if changed:
        raise InputError(path, f"was trained with a different recipe ({', '.join(changed)} differ); "
                               "resume with the recipe it was started with")


def _check_same_videos(path: Path, stored: dict[str, Any] | None, data: dict[str, Any] | None) -> None:
    """Samples are drawn by index into the video list (sample i comes from video i % N), so other
    videos are another run: a resume on another --data was accepted silently and went on with
    other samples. Counts, not paths, are compared: the same videos moved elsewhere still resume."""
    if not stored or not data:
        return
    keys = ("videos", "frames")
    if any(stored.get(k) != data.get(k) for k in keys):
        raise InputError(path, f"was trained on {stored.get('videos')} videos ({stored.get('frames')} frames) "
                               f"but --data now gives {data.get('videos')} ({data.get('frames')} frames); "
                               "resume with the data it was started with")


def payload(method: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
            recipe: Recipe, data: dict[str, Any], ctx: DistContext, *, lr: float,
            stage_name: str) -> dict[str, Any]:
    """The checkpoint dict. Collective under DDP: every rank must call it (RNG states)."""
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
    }


def restore(path: Path, recipe: Recipe, method: nn.Module, optimizer: torch.optim.Optimizer,
            ctx: DistContext, data: dict[str, Any] | None = None) -> Progress:
    """Load the checkpoint at ``path`` into ``method``, ``optimizer`` and this rank's RNGs.

    data: the `VideoIndex.describe` summary of the videos this session indexed.
    Raises `InputError` when the checkpoint was made with a recipe that trains differently
    (data, model, stages, optimiser, seed), without the bf16 autocast it trained under on its device
    (a CPU run resumed on a GPU whose [cuda] bf16 differs from [cpu] bf16 too), or on other videos:
    that would be a new run, not a resumed one.
    """
    checkpoint = load_checkpoint(path)
    stored = recipe_from_dict(checkpoint["recipe"], checkpoint["recipe"]["name"])
    old, new = stored.trajectory_dict(), recipe.trajectory_dict()
    if old != new:
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise InputError(path, f"was trained with a different recipe ({', '.join(changed)} "
                               "differ); resume with the recipe, --init and --teacher it was started with")
    _check_same_autocast(path, checkpoint, stored, recipe, ctx.device.type)
    _check_same_videos(path, checkpoint.get("data"), data)
    method.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    states = checkpoint["rng"]
    if len(states) != ctx.world_size and ctx.is_main:  # as the "resumed" line below: once, not per rank
        log.warning("%s was written by %d process(es), resuming on %d: the sampler position and "
                    "RNG states carry over only approximately", path, len(states), ctx.world_size)
    set_rng_state(states[ctx.rank % len(states)])
    progress = Progress(**checkpoint["progress"])
    if ctx.is_main:  # every rank restores; only rank 0 logs (docs/training.md, DDP)
        log.info("resumed %s at step %d (stage %d, epoch %d)", path, progress.step, progress.stage,
                 progress.epoch)
    return progress


def export_meta(run_dir: Path, recipe: Recipe, data: dict[str, Any] | None, progress: Progress) -> dict[str, Any]:
    """The weights sidecar's account of a run at ``progress``: what the trainer's export
    (`vidcorr.train.loop`) and ``vidcorr train export`` of a checkpoint both write. ``finished``:
    every stage of the recipe done, as at a run's end (or in its last stage's checkpoint)."""
    return {"name": Path(run_dir).name, "method": recipe.method, "recipe": recipe.name,
            "recipe_config": recipe.to_dict(), "data": data, "steps": progress.step, "samples": progress.samples,
            "finished": progress.stage == len(recipe.stages), "wall_time_s": round(progress.wall_time, 1)}
