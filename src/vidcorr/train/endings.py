"""What a training run that stops short of a plain finish says: where it stopped and which
checkpoint it kept. A loss that turned non-finite (`divergence_message`), a signal honoured at a
step boundary (`interrupted`), and one that came after the run's last step had begun
(`ended_anyway`). Each names the checkpoint only where one was written. Used by
`vidcorr.train.loop`, whose `_Run` they read."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

from vidcorr.train import checkpoint as ckpt
from vidcorr.train.interrupt import TrainingInterrupted

if TYPE_CHECKING:
    from vidcorr.train.loop import _Run


def divergence_message(run: _Run, stage: str, terms: dict[str, float]) -> str:
    """`TrainingDiverged`'s message: the step about to be taken, every loss term, and the last good checkpoint."""
    listed = ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if k != "skipped_videos")
    latest = Path(run.job.run_dir) / ckpt.LATEST
    kept = (f"the last good checkpoint is {latest} (resume with --resume, perhaps with a lower lr)"
            if latest.exists() else "no checkpoint was written yet")
    return (f"non-finite loss at step {run.progress.step + 1} (stage {stage!r}, epoch "
            f"{run.progress.epoch}): {listed}; training stopped before the update, {kept}")


def interrupted(run: _Run) -> TrainingInterrupted:
    """What a signal stopped, after its boundary's checkpoint; with every DDP rank if they agreed on it."""
    progress, stages = run.progress, run.job.recipe.stages
    signum = run.stop.signal or signal.SIGTERM  # None: under DDP, another rank's signal
    by = signal.Signals(signum).name if run.stop.signal else "a signal to another rank"
    if progress.step == 0:
        return TrainingInterrupted(f"interrupted by {by} before the first step; no checkpoint was written",
                                   signum, at_boundary=run.interrupted)
    if progress.stage_step == 0:  # the stage-end checkpoint
        where = f"step {progress.step}, the end of stage {stages[progress.stage - 1].name!r}"
    else:
        where = f"step {progress.step} of stage {stages[progress.stage].name!r}"
    latest = Path(run.job.run_dir) / ckpt.LATEST
    return TrainingInterrupted(f"interrupted by {by} at {where}; checkpoint written to {latest}; "
                               "resume with --resume", signum, at_boundary=run.interrupted)


def ended_anyway(run: _Run, finished: bool, exported: Path | None) -> str:
    """A signal after the last step had begun: its stop at the next boundary, with a checkpoint, is
    the run's normal end (with the export), on every rank whether or not it got the signal."""
    name = signal.Signals(run.stop.signal).name
    latest = Path(run.job.run_dir) / ckpt.LATEST
    ended = ("the run is complete" if finished else
             f"it stopped there at max_steps ({run.job.max_steps}) as asked (--resume continues)")
    saved = f"checkpoint written to {latest}" if latest.exists() else "no checkpoint written (no step was run)"
    return (f"{name} came after the run's last step had begun: {ended}; {saved}"
            + (f"; exported {exported}" if exported else ""))
