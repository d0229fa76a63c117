"""Training: TOML recipes, the generic loop (stages, DDP, bf16, checkpoints, exact resume),
learning-rate schedules, and the UVC Lab auto-encoder's own training. See docs/training.md."""

from vidcorr.train.checkpoint import Progress, load_checkpoint, save_checkpoint
from vidcorr.train.config import (
    DataConfig,
    LogConfig,
    OptimConfig,
    Recipe,
    StageConfig,
    recipe_from_dict,
)
from vidcorr.train.interrupt import TrainingInterrupted
from vidcorr.train.loop import TrainingDiverged, TrainJob, TrainResult, train
from vidcorr.train.recipe_files import load_recipe
from vidcorr.train.schedule import learning_rate, stage_steps

__all__ = [
    "DataConfig",
    "LogConfig",
    "OptimConfig",
    "Progress",
    "Recipe",
    "StageConfig",
    "TrainJob",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "learning_rate",
    "load_checkpoint",
    "load_recipe",
    "recipe_from_dict",
    "save_checkpoint",
    "stage_steps",
    "train",
]
