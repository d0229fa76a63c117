"""`vidcorr train uvc | cycletime | stt | moco | autoencoder` (docs/training.md); `vidcorr train
export` is `vidcorr.cli.train_export`, the recipe and weights a command starts from
`vidcorr.cli.train_inputs`.

All run the generic trainer (`vidcorr.train.loop`) on videos from ``--data`` (folder trees or
list files, repeatable) with a recipe (a shipped name or a TOML path), write checkpoints,
run.json, train.log and TensorBoard logs to ``--run-dir`` and export weights at the end. Under
``torchrun --nproc_per_node=N -m vidcorr train ...`` the same command trains with DDP.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidcorr.cli import train_export
from vidcorr.cli.common import device_name, non_negative_int
from vidcorr.cli.train_inputs import (
    checkpoint_path,
    command_recipe,
    input_weights,
    job_options,
    method_config,
    once,
    recorded_init,
    recorded_weights,
    weights_record,
)
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
    # Checked before the run starts (`vidcorr.cli.common.check_device`): --device cuda without a GPU
    # was a driver traceback. Under torchrun "cuda" is each rank's own GPU, cuda:LOCAL_RANK.
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
                             "your own video); same encoder config required; --resume without it keeps "
                             "the checkpoint's, given again it must hold the same weights (checked by sha256)")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train UVC, CycleTime, STT (+ its MoCo teacher) or UVC's Lab "
                                                "auto-encoder on unlabelled video")
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
    uvc.set_defaults(func=_command(prepare_uvc))

    cycle = methods.add_parser("cycletime", help="train a CycleTime encoder (cycle consistency of time)",
                               description="Train CycleTime (METHODS.md §2) and export its encoder.")
    _common_arguments(cycle, "cycletime")
    _encoder_arguments(cycle)
    cycle.set_defaults(func=_command(prepare_cycletime))

    stt = methods.add_parser("stt", help="train an STT encoder (the temporal stage)",
                             description="Train STT's temporal stage (METHODS.md §4) and export its encoder.")
    _common_arguments(stt, "stt")
    stt.add_argument("--teacher", type=Path, metavar="W",
                     help="frozen teacher weights (a stride-32 ResNet, e.g. from the spatial stage); "
                          "without one the global distillation term is left out; with --resume "
                          "the checkpoint's (checked by sha256)")
    _encoder_arguments(stt)
    stt.set_defaults(func=_command(prepare_stt))

    moco = methods.add_parser("moco", help="train a MoCo v2 encoder (STT's spatial stage, its teacher)",
                              description="Train MoCo v2 on video frames (STT's spatial stage, METHODS.md §4.2) "
                                          "and export the encoder `train stt --teacher` takes.")
    _common_arguments(moco, "moco")
    _encoder_arguments(moco)
    moco.set_defaults(func=_command(prepare_moco))

    ae = methods.add_parser("autoencoder", help="train UVC's Lab auto-encoder",
                            description="Train the Lab colour auto-encoder UVC reconstructs through.")
    _common_arguments(ae, "autoencoder")
    ae.add_argument("--out", required=True, type=Path, metavar="W", help="weights to write (.safetensors)")
    ae.set_defaults(func=_command(prepare_autoencoder))

    train_export.register(methods)


def _command(prepare: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    """A `vidcorr train METHOD` command: ``prepare(args)`` reads its recipe and inputs into a
    `TrainJob`, which `_run` trains. The package's log lines are held from the start for the run's
    train.log (`vidcorr.train.runlog.held_lines`): this module's notes come before the run dir is
    known. A signal before the trainer's own handlers take over stops it at once
    (`vidcorr.train.interrupt.preparing`); bad input found while preparing is said once under
    torchrun (`_refused_once`)."""

    @functools.wraps(prepare)
    def command(args: argparse.Namespace) -> int:
        from vidcorr.errors import VidcorrError
        from vidcorr.train.distributed import launched_rank
        from vidcorr.train.interrupt import BEFORE_FIRST_STEP, StopAtOnce, preparing
        from vidcorr.train.runlog import held_lines

        rank = launched_rank()  # a malformed RANK: one line, exit 2, on every rank (which one it is is unknown)
        try:
            with preparing(), held_lines(enabled=rank == 0):  # only rank 0 writes train.log
                try:
                    job = prepare(args)
                except VidcorrError as error:
                    return _refused_once(error, rank)
                return _run(job)
        except StopAtOnce as stopped:  # before the trainer's handlers took over: nothing was written
            if rank == 0:
                print(f"vidcorr: interrupted by {signal.Signals(stopped.signal).name} {BEFORE_FIRST_STEP}; "
                      "nothing was written", file=sys.stderr)
            return 128 + stopped.signal

    # `vidcorr.cli` holds its start-up SIGTERM handler until `preparing` replaces it: no gap between the two
    command.takes_over_sigterm = True
    return command


# How long a rank > 0 waits before it exits on bad input, for rank 0 to say it (`_refused_once`).
REFUSAL_GRACE_S = 5.0


def _refused_once(error: Exception, rank: int) -> int:
    """Exit status 2 for bad input found while preparing the run (a recipe error, a missing weights
    file): every torchrun rank reads the same, and each printed it (N copies of one line). Rank 0
    says it; another rank waits `REFUSAL_GRACE_S` first, deaf to SIGTERM and SIGINT, then exits 2
    too: torchrun ends the other ranks as soon as one exits, and rank 0 ended before its line said
    nothing, or that it was interrupted."""
    if rank == 0:
        print(f"vidcorr: error: {error}", file=sys.stderr)
    else:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        time.sleep(REFUSAL_GRACE_S)
    return 2


def _encoder_job(args: argparse.Namespace, recipe, build_method: Callable[[], Any], **job: Any):
    """The `TrainJob` of the command's options; the encoder starts from ``--init`` if given (a
    resume without it keeps the checkpoint's record) and goes to ``--export`` (default
    RUN_DIR/encoder.safetensors). ``job``: further `TrainJob` fields (UVC's switches)."""
    from vidcorr.train.loop import TrainJob

    if args.init is not None:
        recipe = recipe.replace(init=weights_record(args.init, input_weights(args.init)))
    elif args.resume:  # the run goes on from the weights it started from, as without --recipe
        recipe = recipe.replace(init=recorded_init(args))
    elif "finetune" in recipe.name:  # the shipped fine-tuning recipes' names say so
        once(log.warning, "%s is a fine-tuning recipe but no --init was given: the encoder starts from "
             "random weights", recipe.identity)
    options = job_options(args)
    export = args.export or Path(options["run_dir"]) / "encoder.safetensors"
    _refuse_overwriting_inputs(export, recipe)
    return TrainJob(recipe, build_method, export=export, **job, **options)


def _refuse_overwriting_inputs(export: Path, recipe) -> None:
    """`InputError` if ``export`` is the file of the weights the run starts from (--init, UVC's
    --autoencoder, STT's --teacher, as given or as its checkpoint records them): `--init W --export W`
    replaced the shipped weights with the fine-tuned ones at the run's end."""
    inputs = {"--init": recipe.init, **{f"--{key}": recipe.model.get(key) for key in ("autoencoder", "teacher")}}
    for option, record in inputs.items():
        if isinstance(record, dict) and _same_file(export, Path(record["weights"])):
            raise InputError(export, f"is the {option} weights this run starts from ({record['weights']}); "
                                     "the export would replace them: give --export another file")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _autoencoder(args: argparse.Namespace) -> tuple[Path, Any]:
    """--autoencoder's path and weights; a resume without it takes the checkpoint's."""
    if args.autoencoder is not None:
        return args.autoencoder, input_weights(args.autoencoder)
    if not args.resume:
        raise InputError(None, "train uvc: --autoencoder is required (Lab auto-encoder weights from "
                               "`vidcorr train autoencoder`); only --resume may leave it out")
    path, weights = recorded_weights(args, "autoencoder")
    if path is None:  # every UVC checkpoint records one since it was recorded at all (by sha256)
        raise InputError(checkpoint_path(args), "records no auto-encoder; resume with --autoencoder given")
    return path, weights


def prepare_uvc(args: argparse.Namespace):
    from vidcorr.methods import uvc
    from vidcorr.train.distributed import launched_world_size
    from vidcorr.models.weights import autoencoder_from_weights

    def build():  # base recipe + [model] overrides, then the ablations
        cfg = uvc.recipe(recipe.base or "uvc", **recipe.model)
        for which in args.ablate:
            cfg = uvc.ablate(cfg, which)
        uvc.check_sizes(cfg, recipe.data, [stage.name for stage in recipe.stages], launched_world_size())
        return cfg

    recipe = command_recipe(args, "uvc")
    cfg = method_config(args, recipe, "UVC", uvc.STAGES, build)
    path, autoencoder = _autoencoder(args)
    autoencoder_from_weights(autoencoder, path)  # fail now, not after indexing the videos
    # The full config goes into the recipe, with the auto-encoder: checkpoints and the weights sidecar
    # record exactly what was trained, and a resume with other ablations or another auto-encoder
    # (whose tensors the checkpoint holds, and would load over those given) is refused.
    recipe = recipe.replace(model={**cfg.to_dict(), "autoencoder": weights_record(path, autoencoder)})

    def build_method():  # the auto-encoder too is built after seeding, before the encoder, as it always was
        return uvc.UVC(cfg, autoencoder_from_weights(autoencoder, path))

    return _encoder_job(args, recipe, build_method, switches=uvc.stage_switches)


def prepare_cycletime(args: argparse.Namespace):
    from vidcorr.methods import cycletime

    recipe = command_recipe(args, "cycletime")
    cfg = method_config(args, recipe, "CycleTime", cycletime.STAGES,
                        lambda: cycletime.config_for_recipe(recipe.base, recipe.model, recipe.data))
    recipe = recipe.replace(model=cfg.to_dict())  # the checkpoint records the full config
    return _encoder_job(args, recipe, lambda: cycletime.CycleTime(cfg))


def prepare_stt(args: argparse.Namespace):
    from vidcorr.methods import stt
    from vidcorr.models.weights import encoder_from_weights

    recipe = command_recipe(args, "stt")
    cfg = method_config(args, recipe, "STT", stt.STAGES,
                        lambda: stt.config_for_recipe(recipe.base, recipe.model, recipe.data))
    teacher, teacher_record = None, None
    path, weights = args.teacher, None
    if path is None and args.resume:  # the checkpoint's teacher, if it had one
        path, weights = recorded_weights(args, "teacher")
    if path is not None:  # checked now, not after indexing the videos
        weights = weights or input_weights(path)
        teacher, teacher_record = encoder_from_weights(weights, path), weights_record(path, weights)
        try:
            stt.check_teacher(teacher, cfg)
        except ValueError as error:
            raise InputError(path, f"cannot be the STT teacher: {error}") from None
        # the recipe's fault, not the teacher's: named as the recipe sets it
        method_config(args, recipe, "STT", stt.STAGES, lambda: stt.check_global_grid(cfg, "[data] crop"))
    else:
        once(log.warning, "no --teacher: STT trains without its global distillation term (the teacher's "
             "correlations)")
    # The checkpoint records the full config and which teacher trained it.
    recipe = recipe.replace(model={**cfg.to_dict(), "teacher": teacher_record})
    return _encoder_job(args, recipe, lambda: stt.STT(cfg, teacher))


def prepare_moco(args: argparse.Namespace):
    from vidcorr.methods import moco
    from vidcorr.train.distributed import launched_world_size

    def build():
        cfg = moco.config_for_recipe(recipe.base, recipe.model)
        if recipe.data.batch_size > cfg.queue_size:
            raise ValueError(f"queue_size {cfg.queue_size} is smaller than a batch ({recipe.data.batch_size})")
        moco.check_sizes(cfg, recipe.data.crop, max(1, recipe.data.batch_size // launched_world_size()))
        return cfg

    recipe = command_recipe(args, "moco")
    cfg = method_config(args, recipe, "MoCo", moco.STAGES, build)
    recipe = recipe.replace(model=cfg.to_dict())
    return _encoder_job(args, recipe, lambda: moco.MoCo(cfg))


def prepare_autoencoder(args: argparse.Namespace):
    from vidcorr.train.autoencoder import STAGE, AutoencoderTraining
    from vidcorr.train.loop import TrainJob

    recipe = command_recipe(args, "autoencoder")
    # no config to build, but its stage names are checked as the others': a recipe extending
    # `autoencoder` with [stages.main] ran the 1500-step stage, then a stage "main" of its own
    method_config(args, recipe, "auto-encoder", (STAGE,), lambda: None)
    return TrainJob(recipe, AutoencoderTraining, export=args.out, **job_options(args))


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
