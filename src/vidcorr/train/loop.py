"""The training loop, generic over methods; read `_train`, `_run_stages`, then `_run_stage`, top to bottom.

A method is an ``nn.Module`` with
    ``forward(batch, stage, **switches) -> dict[str, Tensor]``  named scalar losses incl. "loss"
    ``batch_kind(stage) -> str``        "crop_pair" | "patch_frame" | "image" | "cycle_clip" (vidcorr.data)
    ``trainable_parameters()``          what the optimiser updates
and optionally ``visualise(batch) -> dict[str, Tensor (N, 3, H, W) in [0, 1]]`` (TensorBoard
images), ``export() -> (module, config)`` (what to save as weights; default ``.encoder``) and
``initialised()``, called after the recipe's ``init`` weights were loaded into that module (MoCo
copies them into its key encoder).
``TrainJob.switches(stage, epoch)`` gives per-epoch keyword switches such as UVC's concentration
and truncation schedule (METHODS.md §1.6).

Batches arrive from the workers as uint8 and become RGB float in [0, 1] on the device. Resume
is exact: samples are a pure function of (seed, stage, epoch, index), the learning rate of
(stage, step), and the checkpoint holds model, optimiser, progress and every rank's RNG states.
SIGINT / SIGTERM stop the run at a step boundary with a checkpoint (`vidcorr.train.interrupt`);
what a run that stops short says is worded in `vidcorr.train.endings`, and a step's arithmetic
(batch to the device, rank-mean of the losses, the update) is `vidcorr.train.step`'s, and what it
writes around the steps (the run dir's opening, checkpoints, weights) `vidcorr.train.run_files`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vidcorr.data import ShardedSampler, VideoIndex
from vidcorr.errors import InputError, VidcorrError
from vidcorr.io.atomic import check_output_path
from vidcorr.runtime import flush_cpu_denormals
from vidcorr.train import checkpoint as ckpt
from vidcorr.train import endings, feed, run_files, step
from vidcorr.train.config import Recipe
from vidcorr.train.distributed import DistContext, init_distributed, wrap_ddp
from vidcorr.train.interrupt import StopAtOnce, StopSignals, TrainingInterrupted, stopped_at_once
from vidcorr.train.runlog import RunLog, TextLog, visualise
from vidcorr.train.schedule import learning_rate, stage_steps

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and every loss term."""


@dataclass
class TrainJob:
    """One `train` call: the recipe, how to build its method, the videos it reads and where it writes."""

    recipe: Recipe
    build_method: Callable[[], nn.Module]  # called after seeding, so initialisation is seeded
    data: list[str | Path]
    run_dir: Path
    resume: bool = False
    export: Path | None = None  # weights file written when the run stops normally (not on a signal)
    max_steps: int | None = None  # stop (with a checkpoint) once the run has this many steps
    device: str | None = None  # None: CUDA if available, else CPU
    switches: Callable[[str, int], dict[str, Any]] | None = None
    cache_dir: Path | None = None  # video metadata cache (default ~/.cache/vidcorr)
    checkpoint: dict[str, Any] | None = None  # RUN_DIR/checkpoint.pt, read already: a resume restores it
    command: str = field(default_factory=lambda: " ".join(sys.argv))
    progress_bar: bool = True
    on_step: Callable[[ckpt.Progress, dict[str, float]], None] | None = None  # tests, hooks

    def __post_init__(self) -> None:
        # Checked here: save_weights refuses any other name too, but only at the export, after the whole run
        if self.export is not None and Path(self.export).suffix != ".safetensors":
            raise InputError(self.export, "weights must be written to a .safetensors file")
        # Checked before the videos are indexed: a run dir or cache under a file (or in a folder one
        # cannot write) would otherwise be a traceback once the index is built, an export there one
        # after the run.
        check_output_path(self.run_dir, folder=True)
        if self.cache_dir is not None:
            check_output_path(self.cache_dir, folder=True)
        if self.export is not None:
            check_output_path(self.export, folder=False)


@dataclass
class TrainResult:
    """How a `train` call ended: its progress, the checkpoint and the exported weights (if any)."""

    progress: ckpt.Progress
    finished: bool  # all stages done (False: stopped at max_steps)
    checkpoint: Path
    export: Path | None

    def summary(self) -> str:
        """How the run ended, in a line (`vidcorr train` prints it after the recipe's name)."""
        if not self.checkpoint.exists():  # --max-steps 0 on a fresh run writes no checkpoint to name
            return "stopped before the first step; no checkpoint written"
        state = "finished" if self.finished else f"stopped at step {self.progress.step} (--resume continues)"
        return f"{state}; checkpoint {self.checkpoint}"


@dataclass
class _Run:
    """Everything one training process holds."""

    job: TrainJob
    ctx: DistContext
    index: VideoIndex
    method: nn.Module  # the bare method: checkpoints, export, visualisation
    model: nn.Module  # what is called: the method, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    progress: ckpt.Progress
    runlog: RunLog
    stop: StopSignals
    text: TextLog  # RUN_DIR/train.log
    saved_step: int  # the step of the checkpoint on disk (this run's progress.step when current)
    commands: list[str] = field(default_factory=list)  # that started and resumed the run, this one last
    interrupted: bool = False  # the ranks agreed to stop on a signal (`feed.batches`)


def train(job: TrainJob) -> TrainResult:
    """Run (or resume) the recipe's stages in order; see the module docstring.

    Raises `TrainingInterrupted` on SIGINT / SIGTERM (in the main thread): after a checkpoint
    at the next step boundary, or at once on a second signal or before training began. One after
    the last step had begun leaves nothing to stop: the run ends as usual, saying so in the log.
    Rank 0 keeps the run's log lines, and the one it ends with, in RUN_DIR/train.log (`TextLog`).
    """
    recipe = job.recipe
    ctx = init_distributed(job.device)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and recipe.cpu.threads:
        torch.set_num_threads(recipe.cpu.threads)
    try:
        with TextLog(Path(job.run_dir), ctx.is_main) as text:
            try:
                result = _stoppable(job, ctx, text)
            except BaseException as error:  # the file ends with what the command line prints for it
                text.note(logging.WARNING if isinstance(error, KeyboardInterrupt) else logging.ERROR,
                          _ending(error))
                raise
            text.note(logging.INFO, f"{recipe.identity}: {result.summary()}")
            return result
    finally:
        torch.set_num_threads(threads)


def _stoppable(job: TrainJob, ctx: DistContext, text: TextLog) -> TrainResult:
    """`_train` under the stop signals' handlers: a signal that stops at once says so."""
    try:
        # flushing subnormals: UVC at temperature 1 trains 19-29 % faster on the CPU
        with flush_cpu_denormals(ctx.device.type == "cpu"), StopSignals(announce=ctx.is_main) as stop:
            return _train(job, ctx, stop, text)
    except StopAtOnce as stopped:
        raise stopped_at_once(stopped.signal, Path(job.run_dir) / ckpt.LATEST, stopped.before_training) from None


def _ending(error: BaseException) -> str:
    """train.log's last line for a run that raised ``error``: what `vidcorr train` prints for it."""
    if isinstance(error, TrainingDiverged):
        return f"training diverged: {error}"
    if isinstance(error, (TrainingInterrupted, VidcorrError)):
        return str(error)
    return f"stopped by {type(error).__name__}: {error}"


def _train(job: TrainJob, ctx: DistContext, stop: StopSignals, text: TextLog) -> TrainResult:
    """Build the method, index the videos, restore, run the stages, export."""
    run_dir = Path(job.run_dir)
    loaded, job.checkpoint = job.checkpoint, None  # the caller's job too: not held through training
    _seed_everything(job.recipe.seed)  # the same initial weights on every rank
    method = job.build_method()
    index = feed.index(job, ctx, method)  # after the method: its batch kinds say what a video needs
    job = dataclasses.replace(job, recipe=feed.filling_a_batch(job.recipe, len(index), ctx))
    recipe = job.recipe
    if recipe.init and not job.resume:  # a resumed run's weights come from its checkpoint
        run_files.initialise(method, Path(recipe.init["weights"]))
    method = method.to(ctx.device)
    _seed_everything(recipe.seed + ctx.rank)  # then independent streams, if a method draws any
    if _cuda_flag(recipe.cuda.channels_last, ctx):
        method = method.to(memory_format=torch.channels_last)
    optimizer = step.build_optimizer(method.trainable_parameters(), recipe)
    if job.resume:
        progress, commands = ckpt.resume(run_dir / ckpt.LATEST, recipe, method, optimizer, ctx,
                                         index.describe(), loaded=loaded)
        loaded = None  # the method and the optimiser hold copies of its state now
    elif (run_dir / ckpt.LATEST).exists():
        raise InputError(run_dir, "already holds a training checkpoint: pass --resume to continue "
                                  "that run, or choose a new run dir")
    else:
        progress, commands = ckpt.Progress(), []
    run = _Run(job, ctx, index, method, wrap_ddp(method, ctx), optimizer, progress,
               RunLog(run_dir, ctx, progress, recipe.log.every, job.progress_bar), stop, text,
               saved_step=progress.step, commands=[*commands, job.command])
    try:  # from the run dir's making on: a fresh run ended before its first checkpoint takes back what it wrote
        run_files.begin(run)
        run.stop.training()
        finished = _run_stages(run)
        progress.wall_time = run.runlog.wall_time()
    except BaseException:
        if not job.resume and not (run_dir / ckpt.LATEST).exists():
            if ctx.is_main:  # first: the run dir it was written to is removed if left empty
                (run_dir / ckpt.RUN_INFO).unlink(missing_ok=True)
            text.discard()
            run.runlog.discard()  # a fresh run that ended before its first checkpoint leaves nothing
        raise
    finally:
        run.runlog.close()
    exported = run_files.export(run) if job.export and ctx.is_main else None
    if stop.signal is not None and ctx.is_main:  # a signal, yet no stop: it came after the last step had begun
        log.warning(endings.ended_anyway(run, finished, exported))
    return TrainResult(progress, finished, run_dir / ckpt.LATEST, exported)


def _run_stages(run: _Run) -> bool:
    """Run the remaining stages; True once all are done. A stop at max_steps or on a signal
    writes a checkpoint first; a signal then raises `TrainingInterrupted`. Each stage's loader
    lives here, so that its workers are ended after the stage's last checkpoint (`_end_workers`)."""
    recipe, progress, ran = run.job.recipe, run.progress, True
    while ran and progress.stage < len(recipe.stages) and not _at_max_steps(run):
        stage = recipe.stages[progress.stage]
        loader, sampler, per_rank = feed.loader(recipe, run.method.batch_kind(stage.name), run.index,
                                                progress.stage, run.ctx, log_file=run.text.writing_to)
        ran = _run_stage(run, loader, sampler, per_rank)
        if ran:
            progress.stage, progress.stage_step, progress.epoch, progress.batch_in_epoch = (
                progress.stage + 1, 0, 0, 0)
            run_files.save(run, stage_end=stage.name)
        elif run.saved_step != progress.step:  # stopped at max_steps or on a signal between checkpoints
            run_files.save(run)
        _end_workers(run, loader)
    if run.interrupted:
        raise endings.interrupted(run)
    return progress.stage == len(recipe.stages)


def _end_workers(run: _Run, loader: DataLoader) -> None:
    """After the stage's checkpoint: torch waits up to 5 s for each busy or hung worker, and a second
    signal then stops at once, losing nothing. Ended before it, a second Ctrl-C in that wait would
    lose the steps since the last periodic checkpoint."""
    try:
        feed.end_workers(loader)
    except StopAtOnce:
        raise endings.interrupted(run) from None


def _run_stage(run: _Run, loader: DataLoader, sampler: ShardedSampler, per_rank: int) -> bool:
    """Train the current stage to its end (True), or until ``max_steps`` or a signal (False)."""
    job, recipe, progress, ctx = run.job, run.job.recipe, run.progress, run.ctx
    stage = recipe.stages[progress.stage]
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch < 1:  # `feed.filling_a_batch` prevents it; without it every epoch is empty, forever
        raise RuntimeError(f"stage {stage.name!r}: {len(sampler)} samples per process an epoch, fewer than "
                           f"one batch of {per_rank}; the loop would never take a step")
    total = stage_steps(stage, steps_per_epoch)
    run.runlog.stage_started(stage.name, total, progress.stage_step, progress.step, _run_end(run))
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=recipe.autocast_bf16(ctx.device.type))
    channels_last = _cuda_flag(recipe.cuda.channels_last, ctx)
    while progress.stage_step < total:
        sampler.set_epoch(progress.epoch, start=progress.batch_in_epoch * per_rank)
        switches = job.switches(stage.name, progress.epoch) if job.switches else {}
        for batch in feed.batches(loader, run):
            if batch is None:  # a signal: stop before this step
                return False
            run.runlog.batch_arrived()
            lr = learning_rate(stage, progress.stage_step, steps_per_epoch)
            inputs, skipped = step.to_device(batch, ctx, channels_last)  # images, clips, CycleTime's theta
            with autocast:
                losses = run.model(inputs, stage.name, **switches)
            terms = step.reduce_terms(losses, skipped, ctx)  # the same numbers on every rank
            if not math.isfinite(terms["loss"]):
                raise TrainingDiverged(endings.divergence_message(run, stage.name, terms))
            terms.update(step.update(losses["loss"], run.optimizer, lr, recipe.optim.grad_clip))
            progress.stage_step, progress.step = progress.stage_step + 1, progress.step + 1
            progress.batch_in_epoch += 1
            progress.samples += per_rank * ctx.world_size
            progress.skipped_videos += round(terms["skipped_videos"])
            run.runlog.step(progress, terms, lr, stage.name, per_rank * ctx.world_size)
            if ctx.is_main and progress.step % recipe.log.images_every == 0:
                run.runlog.images(progress.step, visualise(run.method, inputs))
            if job.on_step is not None:
                job.on_step(progress, terms)
            if progress.stage_step >= total:
                break
            if _at_max_steps(run):
                return False
            if progress.step % recipe.log.checkpoint_every == 0:
                run_files.save(run)
        else:  # the epoch ran out before the stage did
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
    return True


def _run_end(run: _Run) -> int:
    """The step the run ends at: its stages' steps in all, or --max-steps if sooner (the time left)."""
    end = sum(feed.stage_lengths(run.job.recipe, len(run.index), run.ctx))
    return end if run.job.max_steps is None else min(end, run.job.max_steps)


def _at_max_steps(run: _Run) -> bool:
    return run.job.max_steps is not None and run.progress.step >= run.job.max_steps


def _seed_everything(seed: int) -> None:
    """Model-side randomness (initialisation, any random op in a method); data have their own."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cuda_flag(flag: bool, ctx: DistContext) -> bool:
    """A [cuda] speed flag (channels_last): off on the CPU whatever the recipe says."""
    return flag and ctx.device.type == "cuda"
