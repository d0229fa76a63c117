"""Training: TOML recipes, the generic loop (stages, DDP, bf16, checkpoints, exact resume),
learning-rate schedules, and the UVC Lab auto-encoder's own training. See docs/training.md.

The names below are loaded on first use (as `vidcorr`'s own API is), so that importing one
submodule does not import them all: the eval ranks join their process group through
`vidcorr.train.distributed`, and reading weights looks up `vidcorr.train.checkpoint.LATEST`;
neither needs the loop, its data pipeline or the models it trains.
"""

import importlib
from typing import Any

# Each public name -> the submodule that defines it.
_HOMES = {
    "Progress": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "DataConfig": "config",
    "LogConfig": "config",
    "OptimConfig": "config",
    "Recipe": "config",
    "StageConfig": "config",
    "recipe_from_dict": "config",
    "TrainingInterrupted": "interrupt",
    "TrainingDiverged": "loop",
    "TrainJob": "loop",
    "TrainResult": "loop",
    "train": "loop",
    "load_recipe": "recipe_files",
    "learning_rate": "schedule",
    "stage_steps": "schedule",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value  # the next look-up finds it without this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
