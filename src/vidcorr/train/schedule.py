"""Learning-rate schedules: pure functions of (stage, step within the stage).

No scheduler object carries state: the learning rate of any step is recomputed from the stage
config and the step, so a resumed run gets the same rates by construction.
"""

from __future__ import annotations

import math

from vidcorr.train.config import StageConfig


def stage_steps(stage: StageConfig, steps_per_epoch: int) -> int:
    """Optimiser steps in the stage (an epoch is ``steps_per_epoch`` steps per rank)."""
    return stage.steps if stage.steps is not None else stage.epochs * steps_per_epoch


def learning_rate(stage: StageConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at optimiser step ``step`` (0-based, within the stage).

    Epoch-based stages move the schedule once per epoch, as UVC's ``adjust_learning_rate``
    (``lr (1 - epoch / nepoch) ** 0.9``, METHODS.md §1.8); step-based stages move it every step.
    """
    if stage.epochs is not None:
        position, length = step // steps_per_epoch, stage.epochs
    else:
        position, length = step, stage.steps
    fraction = min(1.0, position / (stage.decay_over or length))
    if stage.schedule == "constant":
        rate = stage.lr
    elif stage.schedule == "poly":
        rate = stage.lr * (1.0 - fraction) ** stage.power
    else:  # cosine, down to min_lr_ratio * lr
        low = stage.lr * stage.min_lr_ratio
        rate = low + (stage.lr - low) * 0.5 * (1.0 + math.cos(math.pi * fraction))
    if position < stage.warmup:  # mmcv's linear warm-up, applied to the scheduled rate
        rate *= 1.0 - (1.0 - position / stage.warmup) * (1.0 - stage.warmup_ratio)
    return rate
