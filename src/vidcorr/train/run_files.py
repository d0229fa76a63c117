"""What a training run writes and reads around its steps: the opening of its run dir (train.log,
run.json, the start line that says how it will run), its checkpoints, and the weights it starts
from (a recipe's ``init``) and exports. Used by `vidcorr.train.loop`, whose `_Run` they read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from vidcorr.models import load_weights_into, save_weights
from vidcorr.models.weights import export_dtype
from vidcorr.train import checkpoint as ckpt
from vidcorr.train import feed, recipe_files
from vidcorr.train.config import Recipe
from vidcorr.train.distributed import DistContext

if TYPE_CHECKING:
    from vidcorr.train.loop import TrainJob, _Run

# The trainer's lines keep the name they had in one module: train.log, docs/training.md and the
# tests' log captures read "vidcorr.train.loop".
log = logging.getLogger("vidcorr.train.loop")


def begin(run: _Run) -> None:
    """Open the run's train.log; rank 0 then clears killed saves, writes run.json and says how the run will go."""
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


def _past_max_steps(run: _Run) -> bool:
    """A resumed, unfinished run already beyond --max-steps: it stops at once, training nothing.
    At exactly --max-steps it is a deliberate no-op (how an auto-encoder run's weights are written
    from its checkpoint), so only beyond is remarked on."""
    return (run.job.max_steps is not None and run.progress.step > run.job.max_steps
            and run.progress.stage < len(run.job.recipe.stages))


def _exported(method: nn.Module) -> tuple[nn.Module, dict[str, Any] | None]:
    """The module a run exports as weights and its config (None: the module's own)."""
    return method.export() if hasattr(method, "export") else (method.encoder, None)


def initialise(method: nn.Module, weights: Path) -> None:
    """Start the exported module from ``weights`` (fine-tuning); the rest stays as built."""
    load_weights_into(_exported(method)[0], weights)
    if hasattr(method, "initialised"):
        method.initialised()
    log.info("initialised the %s encoder from %s", type(method).__name__, weights)


def save(run: _Run, stage_end: str | None = None) -> None:
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


def export(run: _Run) -> Path:
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
