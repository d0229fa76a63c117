"""`vidcorr train uvc | cycletime | stt | moco | autoencoder` (docs/training.md); `vidcorr train
export` is `vidcorr.cli.train_export`.

All run the generic trainer (`vidcorr.train.loop`) on videos from ``--data`` (folder trees or
list files, repeatable) with a recipe (a shipped name or a TOML path), write checkpoints,
run.json, train.log and TensorBoard logs to ``--run-dir`` and export weights at the end. Under
``torchrun --nproc_per_node=N -m vidcorr train ...`` the same command trains with DDP.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidcorr.cli import train_export
from vidcorr.cli.common import device_name, non_negative_int
from vidcorr.errors import InputError

ABLATIONS = ("L", "O", "C", "all")

log = logging.getLogger(__name__)


def _common_arguments(parser: argparse.ArgumentParser, default_recipe: str) -> None:
    parser.add_argument("--data", action="append", required=True, metavar="DIR_OR_LIST",
                        help="folder of videos / frame folders (recursive), a list file or one video; repeatable")
    # No default here: with --resume, a recipe not given is the one the run's checkpoint stores.
    parser.add_argument("--recipe",
                        help=f"shipped recipe name or a .toml path (default: {default_recipe}, or with "
                             "--resume the recipe stored in the run's checkpoint; see configs/train/)")
    parser.set_defaults(default_recipe=default_recipe)
    parser.add_argument("--run-dir", type=Path,
                        help="the run's folder: checkpoints, run.json, train.log, TensorBoard logs "
                             "(default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last checkpoint")
    # Checked here: --workers -1 ended in a torch traceback after the videos were indexed.
    # --max-steps 0 exports the starting weights (e.g. --init's) without training.
    parser.add_argument("--max-steps", type=non_negative_int, metavar="N",
                        help="stop (with a checkpoint) once the run reaches N steps in total")
    # Checked here (`vidcorr.runtime.checked_device`): --device cuda without a GPU was a driver
    # traceback. Under torchrun "cuda" is each rank's own GPU, cuda:LOCAL_RANK.
    parser.add_argument("--device", type=device_name,
                        help="cpu, cuda, cuda:1 (default: cuda if available; under torchrun cuda is each rank's GPU)")
    parser.add_argument("--workers", type=non_negative_int,
                        help="data loader processes per rank (overrides the recipe; 0: load in the training process)")
    parser.add_argument("--cache-dir", type=Path,
                        help="video metadata cache (default: ~/.cache/vidcorr)")


def _encoder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", type=Path, metavar="W",
                        help="encoder weights to write (default: RUN_DIR/encoder.safetensors)")
    parser.add_argument("--init", type=Path, metavar="W",
                        help="start the encoder from these weights (fine-tune, e.g. the shipped ones on "
                             "your own video); same encoder config required; pass it again with --resume")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train UVC, CycleTime, STT (+ its MoCo teacher) or UVC's Lab auto-encoder on unlabelled video")
    methods = train.add_subparsers(dest="method", required=True, metavar="METHOD")

    uvc = methods.add_parser("uvc", help="train a UVC encoder (warm-up, then joint stage)",
                             description="Train UVC (METHODS.md §1) and export its encoder.")
    _common_arguments(uvc, "uvc")
    uvc.add_argument("--autoencoder", type=Path, metavar="W",
                     help="Lab auto-encoder weights from `vidcorr train autoencoder` (kept frozen); "
                          "required but with --resume, which takes the checkpoint's (checked by sha256)")
    _encoder_arguments(uvc)
    uvc.add_argument("--ablate", action="append", choices=ABLATIONS, default=[],
                     help="UVC Table 2 ablation: drop Localisation, Orthogonal terms, "
                          "Concentration, or all three; repeatable")
    uvc.set_defaults(func=_holding_lines(run_uvc))

    cycle = methods.add_parser("cycletime", help="train a CycleTime encoder (cycle consistency of time)",
                               description="Train CycleTime (METHODS.md §2) and export its encoder.")
    _common_arguments(cycle, "cycletime")
    _encoder_arguments(cycle)
    cycle.set_defaults(func=_holding_lines(run_cycletime))

    stt = methods.add_parser("stt", help="train an STT encoder (the temporal stage)",
                             description="Train STT's temporal stage (METHODS.md §4) and export its encoder.")
    _common_arguments(stt, "stt")
    stt.add_argument("--teacher", type=Path, metavar="W",
                     help="frozen teacher weights (a stride-32 ResNet, e.g. from the spatial stage); "
                          "without one the global distillation term is left out; with --resume "
                          "the checkpoint's (checked by sha256)")
    _encoder_arguments(stt)
    stt.set_defaults(func=_holding_lines(run_stt))

    moco = methods.add_parser("moco", help="train a MoCo v2 encoder (STT's spatial stage, its teacher)",
                              description="Train MoCo v2 on video frames (STT's spatial stage, METHODS.md §4.2) "
                                          "and export the encoder `train stt --teacher` takes.")
    _common_arguments(moco, "moco")
    _encoder_arguments(moco)
    moco.set_defaults(func=_holding_lines(run_moco))

    ae = methods.add_parser("autoencoder", help="train UVC's Lab auto-encoder",
                            description="Train the Lab colour auto-encoder UVC reconstructs through.")
    _common_arguments(ae, "autoencoder")
    ae.add_argument("--out", required=True, type=Path, metavar="W", help="weights to write (.safetensors)")
    ae.set_defaults(func=_holding_lines(run_autoencoder))

    train_export.register(methods)


def _holding_lines(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` with the package's log lines held from its start for the run's train.log
    (`vidcorr.train.runlog.held_lines`): this module's notes come before the run dir is known."""

    @functools.wraps(run)
    def holding(args: argparse.Namespace) -> int:
        from vidcorr.train.distributed import launched_rank
        from vidcorr.train.runlog import held_lines

        with held_lines(enabled=launched_rank() == 0):  # only rank 0 writes train.log
            return run(args)

    return holding


def _from_checkpoint(args: argparse.Namespace) -> bool:
    """Whether the recipe is the one stored in the run's checkpoint: --resume without --recipe (the
    method's paper recipe it fell back to was refused as another run, field by field)."""
    return args.resume and args.recipe is None


def _checkpoint_path(args: argparse.Namespace) -> Path:
    """RUN_DIR/checkpoint.pt of the run --resume continues; before `_recipe` settles RUN_DIR (which
    the recipe's name defaults), it defaults as without --recipe."""
    from vidcorr.train.checkpoint import LATEST

    return (args.run_dir or Path("runs") / args.default_recipe) / LATEST


def _stored(args: argparse.Namespace):
    """The recipe stored in the checkpoint --resume continues. The checkpoint is read once per
    command: it may be asked for the recipe and for the weights records, and the resume restores
    from what was read here (`_job_options`)."""
    from vidcorr.train.checkpoint import load_checkpoint, stored_recipe

    if getattr(args, "stored_recipe", None) is None:
        path = _checkpoint_path(args)
        if not path.is_file():
            raise InputError(path, "no checkpoint to resume from (give the run's --run-dir; --resume "
                                   "without --recipe trains on with the recipe its checkpoint stores)")
        args.loaded_checkpoint = load_checkpoint(path)
        args.stored_recipe = stored_recipe(path, args.loaded_checkpoint)
    return args.stored_recipe


def _recipe_source(args: argparse.Namespace) -> Path:
    """The file a recipe error names: the recipe file, or the checkpoint that stores the recipe."""
    from vidcorr.train.config import recipe_path

    return _checkpoint_path(args) if _from_checkpoint(args) else recipe_path(args.recipe or args.default_recipe)


def _recipe(args: argparse.Namespace, method: str):
    from vidcorr.train.checkpoint import MODEL_RECORDS, check_method
    from vidcorr.train.config import DataConfig, load_recipe

    if _from_checkpoint(args):
        recipe = _stored(args)
        path = _checkpoint_path(args)
        check_method(path, recipe, method)
        # The stored [model] holds the weights records too; they are taken from the command line (or
        # the checkpoint, `_recorded_weights`) again, and are no fields of the method's config.
        recipe = recipe.replace(model={k: v for k, v in recipe.model.items() if k not in MODEL_RECORDS})
        args.run_dir = path.parent  # not runs/<stored name>: the run dir it was found in
        _info("--resume without --recipe: continuing with the recipe %r stored in %s", recipe.identity, path)
    else:
        recipe = load_recipe(args.recipe or args.default_recipe)
        # settled now: the checkpoint a resume reads for its weights records (`_checkpoint_path`) is
        # the one it continues, runs/<this recipe's name>, not runs/<the method's paper recipe>
        args.run_dir = args.run_dir or Path("runs") / recipe.name
    if recipe.method != method:
        raise InputError(_recipe_source(args), f"is a {recipe.method!r} recipe, not {method!r}")
    if args.workers is not None:
        data = DataConfig(**{**recipe.to_dict()["data"], "workers": args.workers})
        recipe = recipe.replace(data=data)
    return recipe


def _job_options(args: argparse.Namespace) -> dict:
    """`TrainJob` fields from the command line; the checkpoint `_stored` read moves to the job."""
    loaded, args.loaded_checkpoint = getattr(args, "loaded_checkpoint", None), None
    return {"data": args.data, "run_dir": args.run_dir,
            "resume": args.resume, "max_steps": args.max_steps, "device": args.device,
            "cache_dir": args.cache_dir, "checkpoint": loaded}


def _method_config(args: argparse.Namespace, recipe, label: str, stages: tuple[str, ...], build: Callable[[], Any]):
    """``build()``: the method's config from the recipe. A stage the method does not have, or a
    ValueError / TypeError from ``build``, exits 2 naming the recipe file ("invalid <label> recipe")."""
    try:
        for stage in recipe.stages:
            if stage.name not in stages:
                raise ValueError(f"stage {stage.name!r} is not one of the {label} stages {stages}")
        return build()
    except (ValueError, TypeError) as error:
        raise InputError(_recipe_source(args), f"invalid {label} recipe: {error}") from None


def _input_weights(path: Path):
    """The `WeightsFile` of --init, --teacher or --autoencoder, read now (a corrupt file fails before
    the videos are indexed), with a warning (once under DDP) if they are an unfinished run's."""
    from vidcorr.models import read_weights
    from vidcorr.models.weights import warn_if_unfinished
    from vidcorr.train.distributed import launched_rank

    weights = read_weights(path)
    if launched_rank() == 0:
        warn_if_unfinished(weights, path)
    return weights


def _recorded_weights(args: argparse.Namespace, key: str) -> tuple[Path | None, Any]:
    """Path and `WeightsFile` of the ``key`` weights ("autoencoder", "teacher") the checkpoint that
    --resume continues records, for a resume that does not give --KEY: (None, None) where it
    trained without. `InputError` if the checkpoint records only a path (older ones), or the file
    is gone or holds other bytes now (its sha256 differs): the run cannot go on with those."""
    checkpoint = _checkpoint_path(args)
    record = _stored(args).model.get(key)
    if record is None:
        return None, None
    if not (isinstance(record, dict) and "weights" in record and "sha256" in record):
        raise InputError(checkpoint, f"does not record the sha256 of its {key} (an older checkpoint); "
                                     f"resume with --{key} given")
    path, recorded = Path(record["weights"]), record["sha256"]
    if not path.is_file():
        raise InputError(path, f"is missing: {checkpoint} was trained with it as its {key} (sha256 "
                               f"{recorded[:12]}); give --{key} with the file it was trained with")
    weights = _input_weights(path)
    if weights.sha256 != recorded:
        raise InputError(path, f"has changed since {checkpoint} was trained with it as its {key} (sha256 "
                               f"{weights.sha256[:12]} now, {recorded[:12]} then); give --{key} with the "
                               "file it was trained with")
    _info("--resume without --%s: using the %s %s recorded in %s (same sha256)", key, key, path, checkpoint)
    return path, weights


def _record(path: Path, weights) -> dict[str, str]:
    """What a recipe records of weights given on the command line; a resume compares the sha256
    (`vidcorr.train.checkpoint.recipe_differences`)."""
    return {"weights": str(path), "sha256": weights.sha256}


def _warn(message: str, *args: Any) -> None:
    """A warning logged once (by rank 0 under torchrun)."""
    from vidcorr.train.distributed import launched_rank

    if launched_rank() == 0:
        log.warning(message, *args)


def _info(message: str, *args: Any) -> None:
    """An info line logged once (by rank 0 under torchrun)."""
    from vidcorr.train.distributed import launched_rank

    if launched_rank() == 0:
        log.info(message, *args)


def _train_encoder(args: argparse.Namespace, recipe, build_method: Callable[[], Any], **job: Any) -> int:
    """Run a `TrainJob` with the command's options; the encoder starts from ``--init`` if given
    and goes to ``--export`` (default RUN_DIR/encoder.safetensors). ``job``: further `TrainJob`
    fields (UVC's switches)."""
    from vidcorr.train.loop import TrainJob

    if args.init is not None:
        recipe = recipe.replace(init=_record(args.init, _input_weights(args.init)))
    elif "finetune" in recipe.name and not args.resume:  # the shipped fine-tuning recipes' names say so
        _warn("%s is a fine-tuning recipe but no --init was given: the encoder starts from random weights",
              recipe.identity)
    options = _job_options(args)
    export = args.export or Path(options["run_dir"]) / "encoder.safetensors"
    return _run(TrainJob(recipe, build_method, export=export, **job, **options))


def _autoencoder(args: argparse.Namespace) -> tuple[Path, Any]:
    """--autoencoder's path and weights; a resume without it takes the checkpoint's."""
    if args.autoencoder is not None:
        return args.autoencoder, _input_weights(args.autoencoder)
    if not args.resume:
        raise InputError(None, "train uvc: --autoencoder is required (Lab auto-encoder weights from "
                               "`vidcorr train autoencoder`); only --resume may leave it out")
    path, weights = _recorded_weights(args, "autoencoder")
    if path is None:  # every UVC checkpoint records one since it was recorded at all (by sha256)
        raise InputError(_checkpoint_path(args), "records no auto-encoder; resume with --autoencoder given")
    return path, weights


def run_uvc(args: argparse.Namespace) -> int:
    from vidcorr.methods import uvc
    from vidcorr.models.weights import autoencoder_from_weights

    def build():  # base recipe + [model] overrides, then the ablations
        cfg = uvc.recipe(recipe.base or "uvc", **recipe.model)
        for which in args.ablate:
            cfg = uvc.ablate(cfg, which)
        uvc.check_sizes(cfg, recipe.data, [stage.name for stage in recipe.stages])
        return cfg

    recipe = _recipe(args, "uvc")
    cfg = _method_config(args, recipe, "UVC", uvc.STAGES, build)
    path, autoencoder = _autoencoder(args)
    autoencoder_from_weights(autoencoder, path)  # fail now, not after indexing the videos
    # The full config goes into the recipe, with the auto-encoder: checkpoints and the weights sidecar
    # record exactly what was trained, and a resume with other ablations or another auto-encoder
    # (whose tensors the checkpoint holds, and would load over those given) is refused.
    recipe = recipe.replace(model={**cfg.to_dict(), "autoencoder": _record(path, autoencoder)})

    def build_method():  # the auto-encoder too is built after seeding, before the encoder, as it always was
        return uvc.UVC(cfg, autoencoder_from_weights(autoencoder, path))

    return _train_encoder(args, recipe, build_method, switches=uvc.stage_switches)


def run_cycletime(args: argparse.Namespace) -> int:
    from vidcorr.methods import cycletime

    recipe = _recipe(args, "cycletime")
    cfg = _method_config(args, recipe, "CycleTime", cycletime.STAGES,
                         lambda: cycletime.config_for_recipe(recipe.base, recipe.model, recipe.data))
    recipe = recipe.replace(model=cfg.to_dict())  # the checkpoint records the full config
    return _train_encoder(args, recipe, lambda: cycletime.CycleTime(cfg))


def run_stt(args: argparse.Namespace) -> int:
    from vidcorr.methods import stt
    from vidcorr.models.weights import encoder_from_weights

    recipe = _recipe(args, "stt")
    cfg = _method_config(args, recipe, "STT", stt.STAGES,
                         lambda: stt.config_for_recipe(recipe.base, recipe.model, recipe.data))
    teacher, record = None, None
    path, weights = args.teacher, None
    if path is None and args.resume:  # the checkpoint's teacher, if it had one
        path, weights = _recorded_weights(args, "teacher")
    if path is not None:  # checked now, not after indexing the videos
        weights = weights or _input_weights(path)
        teacher, record = encoder_from_weights(weights, path), _record(path, weights)
        try:
            stt.check_teacher(teacher, cfg)
        except ValueError as error:
            raise InputError(path, f"cannot be the STT teacher: {error}") from None
    else:
        _warn("no --teacher: STT trains without its global distillation term (the teacher's correlations)")
    # The checkpoint records the full config and which teacher trained it.
    recipe = recipe.replace(model={**cfg.to_dict(), "teacher": record})
    return _train_encoder(args, recipe, lambda: stt.STT(cfg, teacher))


def run_moco(args: argparse.Namespace) -> int:
    from vidcorr.methods import moco

    def build():
        cfg = moco.config_for_recipe(recipe.base, recipe.model)
        if recipe.data.batch_size > cfg.queue_size:
            raise ValueError(f"queue_size {cfg.queue_size} is smaller than a batch ({recipe.data.batch_size})")
        return cfg

    recipe = _recipe(args, "moco")
    cfg = _method_config(args, recipe, "MoCo", moco.STAGES, build)
    recipe = recipe.replace(model=cfg.to_dict())
    return _train_encoder(args, recipe, lambda: moco.MoCo(cfg))


def run_autoencoder(args: argparse.Namespace) -> int:
    from vidcorr.train.autoencoder import AutoencoderTraining
    from vidcorr.train.loop import TrainJob

    if args.out.suffix != ".safetensors":
        raise InputError(args.out, "weights must be written to a .safetensors file")
    recipe = _recipe(args, "autoencoder")
    return _run(TrainJob(recipe, AutoencoderTraining, export=args.out, **_job_options(args)))


def _run(job) -> int:
    """Train; exit 0, 1 when the loss diverged, 128 + the signal number on SIGINT / SIGTERM."""
    from vidcorr.train.distributed import launched_rank, shutdown
    from vidcorr.train.loop import TrainingDiverged, TrainingInterrupted, train

    completed = False  # every rank got here together: leave the process group together
    try:
        result = train(job)
        completed = True
    except TrainingDiverged as error:  # the losses are reduced: every rank diverges at once
        if launched_rank() == 0:
            print(f"vidcorr: training diverged: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as interrupted:
        completed = interrupted.at_boundary
        if launched_rank() == 0 or not completed:  # a stop the ranks agreed on is told once
            print(f"vidcorr: {interrupted}", file=sys.stderr)
        return interrupted.exit_code
    finally:
        shutdown(synchronise=completed)
    if launched_rank() != 0:  # under DDP only rank 0 reports, as it alone logs and exports
        return 0
    print(f"{job.recipe.identity}: {result.summary()}")
    if result.export is not None:
        print(f"weights: {result.export}")
    return 0
