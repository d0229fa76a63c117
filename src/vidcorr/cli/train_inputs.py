"""What a `vidcorr train` command starts from (`vidcorr.cli.train_cmd`): its recipe, a file or the
one the run's checkpoint stores (--resume without --recipe), and its weights inputs, --init,
--teacher and --autoencoder, or on a resume those its checkpoint records (checked by sha256). The
checkpoint a resume continues is read once, here, and handed to the trainer (`job_options`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidcorr.errors import InputError

log = logging.getLogger(__name__)


def once(emit: Callable[..., None], message: str, *args: Any) -> None:
    """``emit(message, *args)``, a logger's method, once: by rank 0 under torchrun."""
    from vidcorr.train.distributed import launched_rank

    if launched_rank() == 0:
        emit(message, *args)


def _from_checkpoint(args: argparse.Namespace) -> bool:
    """Whether the recipe is the one stored in the run's checkpoint: --resume without --recipe (the
    method's paper recipe it fell back to was refused as another run, field by field)."""
    return args.resume and args.recipe is None


def checkpoint_path(args: argparse.Namespace) -> Path:
    """RUN_DIR/checkpoint.pt of the run --resume continues; before `command_recipe` settles RUN_DIR
    (which the recipe's name defaults), it defaults as without --recipe."""
    from vidcorr.train.checkpoint import LATEST

    return (args.run_dir or Path("runs") / args.default_recipe) / LATEST


def _stored(args: argparse.Namespace):
    """The recipe stored in the checkpoint --resume continues. The checkpoint is read once per
    command: it may be asked for the recipe and for the weights records, and the resume restores
    from what was read here (`job_options`)."""
    from vidcorr.train.checkpoint import load_checkpoint, stored_recipe

    if getattr(args, "stored_recipe", None) is None:
        path = checkpoint_path(args)
        if not path.is_file():
            raise InputError(path, "no checkpoint to resume from (give the run's --run-dir; --resume "
                                   "without --recipe trains on with the recipe its checkpoint stores)")
        args.loaded_checkpoint = load_checkpoint(path)
        args.stored_recipe = stored_recipe(path, args.loaded_checkpoint)
    return args.stored_recipe


def _recipe_source(args: argparse.Namespace) -> Path:
    """The file a recipe error names: the recipe file, or the checkpoint that stores the recipe."""
    from vidcorr.train.recipe_files import recipe_path

    return checkpoint_path(args) if _from_checkpoint(args) else recipe_path(args.recipe or args.default_recipe)


def command_recipe(args: argparse.Namespace, method: str):
    """The `Recipe` the command trains ``method`` with: --recipe (default: the method's paper recipe),
    or on --resume without it the one stored in the run's checkpoint, less its weights records;
    --workers overrides its [data] workers. Settles ``args.run_dir``."""
    from vidcorr.train.resume_checks import MODEL_RECORDS, check_method
    from vidcorr.train.config import DataConfig
    from vidcorr.train.recipe_files import load_recipe

    if _from_checkpoint(args):
        recipe = _stored(args)
        path = checkpoint_path(args)
        check_method(path, recipe, method)
        # The stored [model] holds the weights records too; they are taken from the command line (or
        # the checkpoint, `recorded_weights`) again, and are no fields of the method's config.
        recipe = recipe.replace(model={k: v for k, v in recipe.model.items() if k not in MODEL_RECORDS})
        args.run_dir = path.parent  # not runs/<stored name>: the run dir it was found in
        once(log.info, "--resume without --recipe: continuing with the recipe %r stored in %s",
             recipe.identity, path)
    else:
        recipe = load_recipe(args.recipe or args.default_recipe)
        # settled now: the checkpoint a resume reads for its weights records (`checkpoint_path`) is
        # the one it continues, runs/<this recipe's name>, not runs/<the method's paper recipe>
        args.run_dir = args.run_dir or Path("runs") / recipe.name
    if recipe.method != method:
        raise InputError(_recipe_source(args), f"is a {recipe.method!r} recipe, not {method!r}")
    if args.resume and checkpoint_path(args).is_file():
        # now, before the command's notes on its weights: `train stt --recipe R --resume` on a UVC run
        # warned "no --teacher" and only then refused the checkpoint (when the trainer restored it)
        check_method(checkpoint_path(args), _stored(args), method)
    if args.workers is not None:
        data = DataConfig(**{**recipe.to_dict()["data"], "workers": args.workers})
        recipe = recipe.replace(data=data)
    return recipe


def job_options(args: argparse.Namespace) -> dict:
    """`TrainJob` fields from the command line; the checkpoint `_stored` read moves to the job."""
    loaded, args.loaded_checkpoint = getattr(args, "loaded_checkpoint", None), None
    return {"data": args.data, "run_dir": args.run_dir,
            "resume": args.resume, "max_steps": args.max_steps, "device": args.device,
            "cache_dir": args.cache_dir, "checkpoint": loaded}


def method_config(args: argparse.Namespace, recipe, label: str, stages: tuple[str, ...], build: Callable[[], Any]):
    """``build()``: the method's config from the recipe. A stage the method does not have, a batch
    torchrun's processes cannot share, or a ValueError / TypeError from ``build``, exits 2 naming the
    recipe file ("invalid <label> recipe")."""
    from vidcorr.train.distributed import launched_world_size

    try:
        for stage in recipe.stages:
            if stage.name not in stages:
                raise ValueError(f"stage {stage.name!r} is not one of the {label} stages {stages}")
        # Before the videos are indexed: the loader refused it only after the run's start line
        processes = launched_world_size()
        if recipe.data.batch_size % processes:
            raise ValueError(f"[data] batch_size = {recipe.data.batch_size}: not divisible by the {processes} "
                             "processes torchrun started (each takes batch_size / processes)")
        return build()
    except (ValueError, TypeError) as error:
        raise InputError(_recipe_source(args), f"invalid {label} recipe: {error}") from None


def input_weights(path: Path):
    """The `WeightsFile` of --init, --teacher or --autoencoder, read now (a corrupt file fails before
    the videos are indexed), with a warning (once under DDP) if they are an unfinished run's."""
    from vidcorr.models import read_weights
    from vidcorr.models.weights import warn_if_unfinished
    from vidcorr.train.distributed import launched_rank

    weights = read_weights(path)
    if launched_rank() == 0:
        warn_if_unfinished(weights, path)
    return weights


def recorded_weights(args: argparse.Namespace, key: str) -> tuple[Path | None, Any]:
    """Path and `WeightsFile` of the ``key`` weights ("autoencoder", "teacher") the checkpoint that
    --resume continues records, for a resume that does not give --KEY: (None, None) where it
    trained without. `InputError` if the checkpoint records only a path (older ones), or the file
    is gone or holds other bytes now (its sha256 differs): the run cannot go on with those."""
    checkpoint = checkpoint_path(args)
    entry = _stored(args).model.get(key)
    if entry is None:
        return None, None
    if not (isinstance(entry, dict) and "weights" in entry and "sha256" in entry):
        raise InputError(checkpoint, f"does not record the sha256 of its {key} (an older checkpoint); "
                                     f"resume with --{key} given")
    path, recorded = Path(entry["weights"]), entry["sha256"]
    if not path.is_file():
        raise InputError(path, f"is missing: {checkpoint} was trained with it as its {key} (sha256 "
                               f"{recorded[:12]}); give --{key} with the file it was trained with")
    weights = input_weights(path)
    if weights.sha256 != recorded:
        raise InputError(path, f"has changed since {checkpoint} was trained with it as its {key} (sha256 "
                               f"{weights.sha256[:12]} now, {recorded[:12]} then); give --{key} with the "
                               "file it was trained with")
    once(log.info, "--resume without --%s: using the %s %s recorded in %s (same sha256)", key, key, path,
         checkpoint)
    return path, weights


def recorded_init(args: argparse.Namespace) -> dict[str, str] | None:
    """The --init record (path, sha256) of the checkpoint --resume continues, for a resume that does
    not give --init, with or without --recipe: None where the run started without. Its file is not
    read: a resumed encoder comes from the checkpoint, and the record is only compared and kept. A
    record of another shape is refused naming the checkpoint when its recipe is read
    (`vidcorr.train.checkpoint.stored_recipe`): unlike --autoencoder and --teacher, whose older
    checkpoints hold a bare path (`recorded_weights`), --init has always been recorded in full."""
    init = _stored(args).init
    if init is not None:
        once(log.info, "--resume without --init: keeping the --init %s recorded in %s", init["weights"],
             checkpoint_path(args))
    return init


def weights_record(path: Path, weights) -> dict[str, str]:
    """What a recipe records of weights given on the command line (--init, --autoencoder,
    --teacher): ``{"weights": path, "sha256": hex}``; a resume compares the sha256
    (`vidcorr.train.resume_checks.recipe_differences`)."""
    return {"weights": str(path), "sha256": weights.sha256}
