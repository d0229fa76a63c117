"""What feeds the training steps: the video index (`index`), the recipe's samples per video
raised to fill a batch (`filling_a_batch`), each stage's loader (`loader`), its batches, which
stop at a step boundary on a signal (`batches`), and the end of its workers (`end_workers`). Used
by `vidcorr.train.loop`."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from vidcorr.data import GapRange, ShardedSampler, VideoIndex, build_dataset, build_index, frames_needed
from vidcorr.errors import VidcorrError
from vidcorr.train.config import Recipe
from vidcorr.train.distributed import DistContext, all_reduce_mean, barrier, environment_int
from vidcorr.train.interrupt import StopSignals, WaitAbandoned
from vidcorr.train.schedule import stage_steps
from vidcorr.train.workers import worker_init, worker_start_method

if TYPE_CHECKING:
    from vidcorr.train.loop import TrainJob, _Run

log = logging.getLogger(__name__)


def filling_a_batch(recipe: Recipe, videos: int, ctx: DistContext) -> Recipe:
    """The recipe, with ``samples_per_video`` raised where an epoch would not fill one batch.

    An epoch is ``samples_per_video`` samples of every video, and each process needs at least one
    batch of it. One's own single video under a shipped recipe (4 samples, batches of 8) failed at
    the first stage; it now takes ceil(batch / videos) samples of each video an epoch, said in the
    log. Deterministic in (recipe, number of videos), so a resume on the same videos derives the
    same recipe (and the checkpoint records the one that ran).
    """
    data = recipe.data
    samples = len(ShardedSampler(videos * data.samples_per_video, ctx.world_size, ctx.rank))  # padded shards
    per_rank = data.batch_size // ctx.world_size
    if samples >= per_rank:
        return recipe
    needed = -(-data.batch_size // videos)
    if ctx.is_main:
        log.warning("%d video(s) x samples_per_video %d give %d samples per process an epoch, fewer than one "
                    "batch of %d: taking %d samples of each video an epoch instead (set [data] "
                    "samples_per_video in the recipe to choose)", videos, data.samples_per_video, samples,
                    per_rank, needed)
    return recipe.replace(data=dataclasses.replace(data, samples_per_video=needed))


def loader_workers(asked: int) -> int:
    """The loader processes this rank starts for ``asked`` ([data] workers or --workers): at most the
    CPUs it may use, shared with the other ranks on its node (torchrun's ``LOCAL_WORLD_SIZE``). The
    paper's `cycletime` asks for 12: on a 2-core machine that was 12 processes each importing torch
    and decoding video (torch's own warning said they might "freeze"), none of them faster."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cpus // environment_int("LOCAL_WORLD_SIZE", 1, 1))
    return min(asked, share)


def stage_lengths(recipe: Recipe, videos: int, ctx: DistContext) -> list[int]:
    """Steps of each of the recipe's stages on ``videos`` videos (an epoch-based stage's depend on
    them): what `loader`'s sampler gives, one batch of ``batch_size / processes`` a step."""
    per_epoch = (len(ShardedSampler(videos * recipe.data.samples_per_video, ctx.world_size, ctx.rank))
                 // (recipe.data.batch_size // ctx.world_size))
    return [stage_steps(stage, per_epoch) for stage in recipe.stages]


def loader(recipe: Recipe, kind: str, index: VideoIndex, stage: int, ctx: DistContext,
           log_file: Path | None = None) -> tuple[DataLoader, ShardedSampler, int]:
    """This rank's loader for one stage; samples depend on (seed, stage, epoch, index) only.
    log_file: the run's train.log, where its workers append their warnings (an unreadable video)."""
    data = recipe.data
    if data.batch_size % ctx.world_size:
        raise VidcorrError(f"batch_size {data.batch_size} is not divisible by {ctx.world_size} "
                           "processes")
    per_rank = data.batch_size // ctx.world_size
    dataset = build_dataset(kind, index, crop=data.crop, frame=data.frame,
                            gap=GapRange(*data.gap, unit=data.gap_unit), folder_fps=data.folder_fps,
                            seed=(recipe.seed, stage), samples_per_video=data.samples_per_video,
                            clip_length=data.clip_length)
    sampler = ShardedSampler(len(dataset), ctx.world_size, ctx.rank, seed=(recipe.seed, stage))
    # Persistent workers: the sampler (and its epoch) lives in this process, so workers can
    # outlive an epoch; with ~100 videos an epoch is a dozen steps, and a restart costs a stall.
    workers = loader_workers(data.workers)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=workers,
                        drop_last=True, pin_memory=ctx.device.type == "cuda",
                        persistent_workers=workers > 0,
                        multiprocessing_context=worker_start_method() if workers > 0 else None,
                        worker_init_fn=worker_init(log_file) if workers > 0 else None,
                        # Its own generator: starting a loader iterator must not draw from the
                        # global torch RNG, or a resumed run would drift from the original.
                        generator=torch.Generator().manual_seed(recipe.seed))
    return loader, sampler, per_rank


def batches(loader: DataLoader, run: _Run) -> Iterator[dict[str, Tensor] | None]:
    """The loader's batches; None (and nothing after it) when the run is to stop before the step.

    After a signal no batch is waited for, and one being loaded or handed over is abandoned:
    nothing has changed yet, the sampler position is in `Progress`. Under DDP the ranks then
    agree (`_stop_agreed`), so that all of them stop at the same step. The loader workers are
    left running: the loop ends them after the checkpoint (`end_workers`).
    """
    iterator = None
    while True:
        batch = None
        try:
            if iterator is None:
                iterator = _iterate(loader, run.stop)
            with run.stop.abandoning():
                batch = next(iterator)
        except StopIteration:
            return  # the epoch's end: on every rank at once (equal shards)
        except WaitAbandoned:
            pass
        except RuntimeError:  # "DataLoader worker (pid(s) ...) exited unexpectedly"
            if not run.stop.requested:
                raise
            # SIGTERM to the whole process group (torchrun, Slurm) ended the workers too
        if _stop_agreed(run):
            yield None
            return
        yield batch


def _iterate(loader: DataLoader, stop: StopSignals) -> Iterator[dict[str, Tensor]]:
    """``iter(loader)``, at an epoch's start. The stage's first starts its workers (persistent),
    which no signal may break into: a second Ctrl-C in the middle of a worker's start made the
    forkserver print "EOFError: Ran out of input" from the half-started worker. A later one asks
    each worker to go on to the next epoch and waits for its answer (for ever from a hung
    worker), a wait a signal breaks off as any other."""
    if loader.num_workers > 0 and getattr(loader, "_iterator", ()) is None:  # torch's persistent iterator
        with stop.sheltered():
            return iter(loader)
    with stop.abandoning():
        return iter(loader)


def end_workers(loader: DataLoader) -> None:
    """End the loader's workers now, where a second signal's `StopAtOnce` reaches the caller
    (`vidcorr.train.loop`, which calls this after the stage's checkpoint). Left to the iterator's
    ``__del__`` (the loader going out of scope), a second Ctrl-C while it waited for the workers
    to exit was printed as "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__>"
    with a traceback, and dropped: the run went on. Each worker finishes the batch it is loading,
    or is sent SIGTERM after up to 5 s of waiting for it (torch's clean-up, worker after worker);
    a `StopAtOnce` in that wait sends the rest SIGTERM at once (the clean-up's ``finally``)."""
    shutdown = getattr(getattr(loader, "_iterator", None), "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _stop_agreed(run: _Run) -> bool:
    """Whether a signal came to this process or, under DDP, to any rank (one 1-element
    all-reduce before every step: ranks signalled a step apart must still stop together)."""
    stop = run.stop.requested
    if run.ctx.distributed:
        flag = torch.tensor([float(stop)], device=run.ctx.device)
        stop = bool(all_reduce_mean(flag, run.ctx).item() > 0)
    run.interrupted = stop
    return stop


def index(job: TrainJob, ctx: DistContext, method: torch.nn.Module) -> VideoIndex:
    """Rank 0 indexes first (filling the metadata cache); the others then read the cache. A video
    must hold the frames of ``method``'s samples at every stage of the recipe (`frames_needed`):
    one for MoCo and the auto-encoder, which "a pair needs 2" skipped."""
    need = frames_needed(method.batch_kind(stage.name) for stage in job.recipe.stages)
    if ctx.is_main:
        found = build_index(job.data, job.cache_dir, need=need)
    barrier(ctx)
    if not ctx.is_main:
        found = build_index(job.data, job.cache_dir, need=need)
    return found
