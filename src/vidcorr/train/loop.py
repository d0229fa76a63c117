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
(batch to the device, rank-mean of the losses, the update) is `vidcorr.train.step`'s.
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
from vidcorr.models import load_weights_into, save_weights
from vidcorr.models.weights import export_dtype
from vidcorr.runtime import flush_cpu_denormals
from vidcorr.train import checkpoint as ckpt
from vidcorr.train import endings, feed, recipe_files, step
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
        _initialise(method, Path(recipe.init["weights"]))
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
        finished = _establish_and_run(run)
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
    exported = _export(run) if job.export and ctx.is_main else None
    if stop.signal is not None and ctx.is_main:  # a signal, yet no stop: it came after the last step had begun
        log.warning(endings.ended_anyway(run, finished, exported))
    return TrainResult(progress, finished, run_dir / ckpt.LATEST, exported)


def _establish_and_run(run: _Run) -> bool:
    """Open the run's train.log and run.json, say how it will run, then run its stages (`_run_stages`)."""
    job, ctx, recipe, progress, run_dir = run.job, run.ctx, run.job.recipe, run.progress, Path(run.job.run_dir)
    run.text.open(job.command, resumed=job.resume)  # after RunLog, which made the run dir (and may remove it)
    if ctx.is_main:
        ckpt.remove_killed_saves(run_dir)
        ckpt.write_run_info(run_dir, recipe, run.commands)
        if _past_max_steps(run):
            log.warning("%s is at step %d, already past --max-steps %d: nothing was trained (give a "
                        "larger --max-steps, or none, to continue the run)", run_dir / ckpt.LATEST,
                        progress.step, job.max_steps)
        log.info("%s: %s on %s (%d frames), %d process(es) on %s: %s; %s", recipe.identity,
                 recipe.method, _count(len(run.index), "video"), run.index.describe()["frames"], ctx.world_size,
                 ctx.device, _plan(recipe, len(run.index), ctx), _outputs(job))
        if ctx.device.type == "cpu" and (smaller := recipe_files.cpu_counterpart(recipe)):
            # before the first step: `cycletime`'s batch of 36 needs more than 23 GB of RAM there (killed mid-step)
            log.warning("recipe '%s' is the paper's, sized for GPUs (batches of %d): on a CPU a step takes "
                        "minutes and may need more memory than the machine has; --recipe %s is its CPU-sized "
                        "version (docs/training.md, the recipes table)", recipe.name,
                        recipe.data.batch_size, smaller)
        if (workers := feed.loader_workers(recipe.data.workers)) < recipe.data.workers:
            log.warning("[data] workers = %d (or --workers) asks for more loader processes than the CPUs this "
                        "process may use: starting %d (more only compete for the same cores)",
                        recipe.data.workers, workers)
    run.stop.training()
    return _run_stages(run)


def _plan(recipe: Recipe, videos: int, ctx: DistContext) -> str:
    """How long the run is, for its start line: "warmup 3 epochs = 12 steps, joint 1 step, 13 in all,
    batches of 2" (the tqdm bar gives each stage's time left; a log file has no bar)."""
    lengths = feed.stage_lengths(recipe, videos, ctx)
    parts = [f"{stage.name} {_count(stage.epochs, 'epoch') + ' = ' if stage.epochs is not None else ''}"
             f"{_count(steps, 'step')}" for stage, steps in zip(recipe.stages, lengths)]
    return f"{', '.join(parts)}, {sum(lengths)} in all, batches of {recipe.data.batch_size}"


def _outputs(job: TrainJob) -> str:
    """Where the run writes, for its start line: "run dir D (checkpoint every N steps), weights W"."""
    every = job.recipe.log.checkpoint_every
    written = f"run dir {job.run_dir} (checkpoint every {_count(every, 'step')})"
    return written + (f", weights {job.export}" if job.export is not None else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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
            _save(run, stage_end=stage.name)
        elif run.saved_step != progress.step:  # stopped at max_steps or on a signal between checkpoints
            _save(run)
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


def _exported(method: nn.Module) -> tuple[nn.Module, dict[str, Any] | None]:
    """The module a run exports as weights and its config (None: the module's own)."""
    return method.export() if hasattr(method, "export") else (method.encoder, None)


def _initialise(method: nn.Module, weights: Path) -> None:
    """Start the exported module from ``weights`` (fine-tuning); the rest stays as built."""
    load_weights_into(_exported(method)[0], weights)
    if hasattr(method, "initialised"):
        method.initialised()
    log.info("initialised the %s encoder from %s", type(method).__name__, weights)


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
            images, skipped = step.to_device(batch, ctx, channels_last)
            with autocast:
                losses = run.model(images, stage.name, **switches)
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
                run.runlog.images(progress.step, visualise(run.method, images))
            if job.on_step is not None:
                job.on_step(progress, terms)
            if progress.stage_step >= total:
                break
            if _at_max_steps(run):
                return False
            if progress.step % recipe.log.checkpoint_every == 0:
                _save(run)
        else:  # the epoch ran out before the stage did
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
    return True


def _run_end(run: _Run) -> int:
    """The step the run ends at: its stages' steps in all, or --max-steps if sooner (the time left)."""
    end = sum(feed.stage_lengths(run.job.recipe, len(run.index), run.ctx))
    return end if run.job.max_steps is None else min(end, run.job.max_steps)


def _at_max_steps(run: _Run) -> bool:
    return run.job.max_steps is not None and run.progress.step >= run.job.max_steps


def _past_max_steps(run: _Run) -> bool:
    """A resumed, unfinished run already beyond --max-steps: it stops at once, training nothing.
    At exactly --max-steps it is a deliberate no-op (how an auto-encoder run's weights are written
    from its checkpoint), so only beyond is remarked on."""
    return (run.job.max_steps is not None and run.progress.step > run.job.max_steps
            and run.progress.stage < len(run.job.recipe.stages))


def _save(run: _Run, stage_end: str | None = None) -> None:
    """Checkpoint on rank 0 (every rank joins: their RNG states are gathered)."""
    run.progress.wall_time = run.runlog.wall_time()
    stage = run.job.recipe.stages[min(run.progress.stage, len(run.job.recipe.stages) - 1)]
    payload = ckpt.payload(run.method, run.optimizer, run.progress, run.job.recipe,
                           run.index.describe(), run.ctx, lr=run.optimizer.param_groups[0]["lr"],
                           stage_name=stage.name, commands=run.commands)
    if run.ctx.is_main:
        path = ckpt.save_checkpoint(Path(run.job.run_dir) / ckpt.LATEST, payload)
        if stage_end is not None:  # kept: e.g. to evaluate the warm-up encoder alone
            ckpt.save_checkpoint(path.with_name(f"checkpoint-{stage_end}.pt"), payload)
        log.info("step %d: saved %s", run.progress.step, path)
    run.saved_step = run.progress.step


def _export(run: _Run) -> Path:
    """Weights (fp16 safetensors + JSON sidecar) of the method's exported module; float32 where a
    parameter exceeds fp16's range."""
    module, config = _exported(run.method)
    # `command`: the last command line (what the key has always held); `commands`: all, the first one included
    meta = {**ckpt.export_meta(Path(run.job.run_dir), run.job.recipe, run.index.describe(), run.progress,
                               run.commands),
            "hardware": run.runlog.hardware(), "command": run.commands[-1]}
    path = save_weights(module, run.job.export, config, meta, dtype=export_dtype(module))
    log.info("exported %s", path)
    return path


def _seed_everything(seed: int) -> None:
    """Model-side randomness (initialisation, any random op in a method); data have their own."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cuda_flag(flag: bool, ctx: DistContext) -> bool:
    """A [cuda] speed flag (channels_last): off on the CPU whatever the recipe says."""
    return flag and ctx.device.type == "cuda"
