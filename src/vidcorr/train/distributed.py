"""Process-group setup in the DINO style: one code path for torchrun and a single process.

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the
environment) each process joins the group: NCCL when it trains on CUDA, gloo on the CPU. A
plain ``python``/``vidcorr`` call is rank 0 of 1 and touches no process group at all.
Multi-node is the same code with torchrun's ``--nnodes``/``--rdzv-endpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vidcorr.errors import VidcorrError
from vidcorr.runtime import RankRole, checked_device


@dataclass(frozen=True)
class DistContext(RankRole):
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def launched_rank() -> int:
    """This process's rank as torchrun set it (``RANK``); 0 for a plain call. Also known before
    `init_distributed` and after `shutdown`, where the command line prints its summary once."""
    return environment_int("RANK", 0, 0)


def launched_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``); 1 for a plain call. Known before
    `init_distributed`: a recipe's per-process batch is checked before the videos are indexed."""
    return environment_int("WORLD_SIZE", 1, 1)


def environment_int(name: str, default: int, minimum: int) -> int:
    """The whole number in environment variable ``name`` (torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE), ``default`` where it is unset; `VidcorrError` naming the variable and its value
    if it is no whole number >= ``minimum``: int()'s "invalid literal for int() with base 10: 'x'"
    was a traceback for RANK, and for WORLD_SIZE read as an error of the recipe. The eval commands'
    ranks (`vidcorr.evaluate.ranks.join`) read theirs here too."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise VidcorrError(f"environment variable {name}={value!r}: expected a whole number >= {minimum} "
                           "(torchrun sets it; unset it to run in one process)")
    return number


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """``None``: CUDA when available, else CPU. ``"cuda"`` under torchrun: this rank's GPU.

    A device this machine lacks (`vidcorr.runtime.checked_device`; e.g. ``cuda:LOCAL_RANK`` beyond
    its GPUs) raises `VidcorrError` before anything is made: ``torch.cuda.set_device`` failed
    with a raw driver error."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = _checked(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = _checked(torch.device("cuda", local_rank), f" (LOCAL_RANK {local_rank}: more processes "
                                                               "per node than GPUs?)")
    return resolved


def _checked(device: str | torch.device, why: str = "") -> torch.device:
    """`checked_device`, its refusal (with ``why`` added) as a `VidcorrError`: the command line's
    one-line exit 2, as for the trainer's other input errors."""
    try:
        return checked_device(device)
    except ValueError as error:
        raise VidcorrError(f"{error}{why}") from None


def init_distributed(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the torchrun process group if launched by torchrun; else a single process.

    backend: default NCCL on CUDA, gloo on the CPU; the eval commands ask for gloo on either (they
    exchange no tensors, and gloo lets several ranks share one GPU)."""
    rank = launched_rank()
    world_size = launched_world_size()
    local_rank = environment_int("LOCAL_RANK", 0, 0)
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if resolved.type == "cuda" else "gloo")
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, resolved)


def shutdown(synchronise: bool = False) -> None:
    """Leave the process group, if this process joined one.

    synchronise: wait for every rank first (a run that ended normally). Without it a rank could
    tear down while another was still exporting; under torch 2.4.1 the gloo group's destructor
    then sometimes waited forever on a peer that had already exited (seen in tests/test_train_ddp.py).
    After an error the other ranks may never arrive, so no barrier then.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP wrapper when distributed, the module itself otherwise.

    Frozen parts (UVC's auto-encoder) have ``requires_grad=False`` and are ignored by DDP.
    """
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the input is left alone)."""
    values = values.detach().clone()
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= ctx.world_size
    return values


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
