"""One optimisation step's arithmetic, from a loader's batch to the update: the optimiser the recipe
names, the batch on the device, the loss terms averaged over the ranks, and the update itself.
`vidcorr.train.loop` calls these in that order; what a step logs, checkpoints or stops on is the
loop's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidcorr.train.config import Recipe
from vidcorr.train.distributed import DistContext, all_reduce_mean


def build_optimizer(parameters: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's [optim]: Adam, or SGD with momentum; the rate is set every step (`update`)."""
    optim, lr = recipe.optim, recipe.stages[0].lr
    if optim.name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    return torch.optim.Adam(parameters, lr=lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay)


def to_device(batch: dict[str, Tensor], ctx: DistContext, channels_last: bool) -> tuple[dict[str, Tensor], Tensor]:
    """uint8 images (B, 3, H, W) or clips (B, L, 3, H, W) -> float in [0, 1] on the device (4-d
    ones channels_last if asked: a [cuda] flag, off on the CPU); float entries (CycleTime's theta)
    move as they are. Also returns how many of this batch's draws hit an unreadable video
    (unreadable draws): ``batch["skipped"]`` (B,) summed, a 0-d tensor."""
    inputs = {}
    for name, value in batch.items():
        if name == "skipped":
            continue
        is_image = value.dtype == torch.uint8
        value = value.to(ctx.device, non_blocking=True)
        if is_image:
            value = value.float().div_(255)
        if is_image and channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        inputs[name] = value
    return inputs, batch["skipped"].sum()


def reduce_terms(losses: dict[str, Tensor], skipped: Tensor, ctx: DistContext) -> dict[str, float]:
    """Rank-mean of every loss term (0-d tensors) and the total of unreadable draws (draws that hit
    an unreadable video; named "skipped_videos" as `Progress`'s field, a checkpoint key), in one
    all-reduce: the same numbers on every rank."""
    names = sorted(losses)
    values = torch.stack([losses[n].detach().float() for n in names] + [skipped.float().to(ctx.device)])
    values = all_reduce_mean(values, ctx).tolist()
    terms = dict(zip(names, values[:-1]))
    terms["skipped_videos"] = values[-1] * ctx.world_size
    return terms


def update(loss: Tensor, optimizer: torch.optim.Optimizer, lr: float, clip: float | None) -> dict[str, float]:
    """One optimiser step on the 0-d ``loss`` at ``lr``, the gradients' global norm clipped to
    ``clip`` ([optim] grad_clip; None: no clipping); returns that norm ("grad_norm") when clipping."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    out = {}
    if clip is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        out["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
    optimizer.step()
    return out
