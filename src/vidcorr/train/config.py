"""Training recipes: small TOML files (``configs/train/*.toml``, read by `vidcorr.train.recipe_files`)
as frozen dataclasses.

A recipe names the method and, for UVC and CycleTime, a base recipe of the method's ``RECIPES``; its
``[model]`` table overrides that base field by field. ``extends = "other"`` starts from another
recipe file (a shipped name or a path relative to this file) and overrides it table by table, field
by field (stages by name), so a variant says only what differs. ``[data]`` sizes the samples, ``[optim]``
the optimiser, ``[stages.<name>]`` (in file order) the stages, ``[log]`` the intervals and
``[cuda]`` / ``[cpu]`` the device-only speed settings. See docs/training.md for every field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vidcorr.strict_dict import check_types, dataclass_from_dict, plain, refuse_non_finite

SCHEDULES = ("poly", "constant", "cosine")
METHODS = ("uvc", "autoencoder", "cycletime", "stt", "moco")


@dataclass(frozen=True)
class DataConfig:
    """Sample sizes and sampling. ``batch_size`` is global: each of N ranks gets batch_size / N."""

    crop: int = 256  # S: the crops (warm-up) and the frame-1 patch (joint), METHODS.md §1.3;
    #                  CycleTime: the square clip frames (its patch is crop / 3), §2.3
    frame: int = 640  # T: the joint stage's resized + padded target frame; CycleTime: the short
    #                   side frames are resized to before the crop
    gap: tuple[float, float] = (1, 50)  # inclusive frame gap of a pair; CycleTime: the clip's step is gap[0]
    clip_length: int = 4  # CycleTime: frames tracked through (L, official videoLen)
    gap_unit: str = "frames"  # "frames" (UVC on Kinetics) or "seconds" (mixed-fps data)
    folder_fps: float = 30.0  # frame rate assumed for frame folders when gap_unit = "seconds"
    samples_per_video: int = 1  # samples per video per epoch (an epoch = one pass over videos)
    batch_size: int = 40
    workers: int = 4  # DataLoader worker processes per rank

    def __post_init__(self) -> None:
        object.__setattr__(self, "gap", tuple(float(g) for g in self.gap))
        # Checked when the recipe is read: a zero or negative size, batch or worker count otherwise
        # ended in a torch traceback (or a division by zero) once the videos had been indexed. Each
        # bad field on its own, as [optim]'s: "workers must be >= 0 and folder_fps > 0" left one to
        # guess which. "not >": nan is refused too.
        sizes = ("crop", "frame", "clip_length", "samples_per_video", "batch_size")
        refuse_bad_fields("[data]", (
            *((k, getattr(self, k), getattr(self, k) >= 1, "at least 1") for k in sizes),
            ("workers", self.workers, self.workers >= 0, ">= 0 (0: load in the training process)"),
            ("folder_fps", self.folder_fps, self.folder_fps > 0, "> 0"),
            ("gap", list(self.gap), len(self.gap) == 2 and 0 < self.gap[0] <= self.gap[1],
             "[low, high] with 0 < low <= high")))
        refuse_non_finite(self, "[data]")


def refuse_bad_fields(label: str, checks: tuple[tuple[str, Any, bool, str], ...]) -> None:
    """ValueError naming every field of ``checks`` (name, value, ok, what it must be) that is not ok,
    each with its value: "[optim] eps = 0: must be > 0; momentum = 1: must be in [0, 1)"."""
    bad = [f"{name} = {value}: must be {allowed}" for name, value, ok, allowed in checks if not ok]
    if bad:
        raise ValueError(f"{label} {'; '.join(bad)}")


@dataclass(frozen=True)
class StageConfig:
    """One training stage. Exactly one of ``epochs`` / ``steps`` sets its length.

    schedule: "poly" ``lr (1 - t / decay_over) ** power``, "cosine" or "constant", restarted at
    the stage start as the official code does (METHODS.md §1.8). With ``epochs`` the schedule
    moves once per epoch (official), with ``steps`` every step. decay_over: the schedule's
    horizon in the stage's unit (default: the stage length; the official run decays over all
    30 epochs in both stages, ``lr (1 - e / nepoch) ** 0.9``). min_lr_ratio: the "cosine"
    schedule ends at ``min_lr_ratio * lr`` (STT: 0.001). warmup: the first ``warmup`` units scale
    the scheduled rate linearly from ``warmup_ratio`` up to 1 (mmcv's linear warm-up; STT: 20
    epochs from 0.001).
    """

    name: str
    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-4
    schedule: str = "poly"
    power: float = 0.9
    decay_over: int | None = None
    min_lr_ratio: float = 0.0
    warmup: int = 0
    warmup_ratio: float = 0.001

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"stage {self.name!r} needs exactly one of 'epochs' and 'steps'")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"stage {self.name!r}: schedule must be one of {SCHEDULES}")
        # Each offending field by name and value, as [optim]'s: "length and lr must be positive" left
        # one to guess which of steps = 0 and lr = 0 it was. "not (in range)": nan is refused too. A
        # negative power or horizon made "poly" grow the rate (0 ** -p: a ZeroDivisionError at the end).
        length = "epochs" if self.epochs is not None else "steps"
        refuse_bad_fields(f"stage {self.name!r}:", (
            (length, getattr(self, length), getattr(self, length) >= 1, "at least 1"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("power", self.power, self.power >= 0, ">= 0"),
            ("decay_over", self.decay_over, self.decay_over is None or self.decay_over >= 1,
             "at least 1 (left out: the stage's length)"),
            ("min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("warmup", self.warmup, self.warmup >= 0, ">= 0"),
            ("warmup_ratio", self.warmup_ratio, 0 <= self.warmup_ratio <= 1, "in [0, 1]")))
        refuse_non_finite(self, f"stage {self.name!r}:")


@dataclass(frozen=True)
class OptimConfig:
    """Adam (every video method) or SGD with momentum (MoCo's spatial stage). UVC's official code
    parses weight decay 0.005 but never passes it (METHODS.md §1.8)."""

    name: str = "adam"  # "adam" | "sgd"
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    eps: float = 1e-8  # Adam
    momentum: float = 0.9  # SGD
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global grad norm; None (left out) = no clipping

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.name not in ("adam", "sgd"):
            raise ValueError(f"[optim] name must be 'adam' or 'sgd', got {self.name!r}")
        # Checked when the recipe is read: torch refuses bad betas or weight decay only when the
        # optimiser is built (a traceback), and clip_grad_norm_ takes any max norm: 0 zeroes every
        # gradient, a negative one flips them so that every step climbs the loss. "not (in range)":
        # nan is refused too.
        refuse_bad_fields("[optim]", (
            ("betas", list(self.betas), len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             "two numbers in [0, 1)"),
            ("eps", self.eps, self.eps > 0, "> 0"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip, self.grad_clip is None or self.grad_clip > 0,
             "> 0 (left out: no clipping)")))
        refuse_non_finite(self, "[optim]")


@dataclass(frozen=True)
class LogConfig:
    every: int = 20  # scalar log line + TensorBoard scalars, in steps
    images_every: int = 500  # TensorBoard images
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if bad := [f"{k} = {v}" for k, v in dataclasses.asdict(self).items() if v < 1]:
            raise ValueError(f"[log] {', '.join(bad)}: intervals are in steps, at least 1")  # 0: a modulo by zero


@dataclass(frozen=True)
class CudaConfig:
    """Ignored on CPU."""

    bf16: bool = True  # autocast matmuls/convs to bfloat16 (no loss scaling needed)
    channels_last: bool = True


@dataclass(frozen=True)
class CpuConfig:
    """Ignored on CUDA. threads: torch intra-op threads (None: torch's default, one per core).
    bf16: autocast to bfloat16 as on CUDA; only worth it on CPUs with bf16 instructions
    (AVX512-BF16, AMX: 1.3x UVC's joint stage, 1.6x STT on the project's Zen 4; elsewhere slower).

    On a 2-core machine with a decoding worker, 1 thread trained UVC ~1.5x faster than 2.
    A resumed run is bit-exact only with the same thread count (reduction order changes); bf16
    autocast must stay as it was on the device trained on (`Recipe.autocast_bf16`, `checkpoint.resume`).
    """

    threads: int | None = None
    bf16: bool = False

    def __post_init__(self) -> None:
        refuse_bad_fields("[cpu]", (  # torch.set_num_threads(-1): a RuntimeError
            ("threads", self.threads, self.threads is None or self.threads >= 1,
             "at least 1 (left out: torch's default)"),))


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str = "uvc"
    base: str | None = None  # method recipe the [model] table overrides (uvc / cycletime RECIPES key)
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    stages: tuple[StageConfig, ...] = ()
    log: LogConfig = LogConfig()
    cuda: CudaConfig = CudaConfig()
    cpu: CpuConfig = CpuConfig()
    # {"weights": path, "sha256": hex}: the weights the method's exported module starts from
    # (`vidcorr train ... --init W`, set by the command line, not by recipe files).
    init: dict[str, str] | None = None
    # {"path": absolute path, "sha256": hex, "chain_sha256": hex}: the recipe file of one's own this was
    # read from (set by `recipe_files.load_recipe`, not by recipe files); sha256 is that file's,
    # chain_sha256 covers the files it `extends` too (`recipe_files.chain_digest`; not in records from
    # before 2026-12-07). Its name is the file's stem, which may be a shipped recipe's: my/uvc.toml is
    # named "uvc" too. None: a shipped recipe, which its name identifies, one built in code, or one
    # stored before 2026-12-06, when only the name was recorded.
    file: dict[str, str] | None = None

    @property
    def identity(self) -> str:
        """How records and log lines name the recipe: a shipped one by its name, a file of one's own
        by its path (so that my/uvc.toml never reads as the shipped `uvc`)."""
        return self.name if self.file is None else self.file["path"]

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (stored in checkpoints, loaded with ``weights_only=True``). A
        shipped recipe's has no ``file``: it is stored as it was before that was recorded."""
        d = plain(dataclasses.asdict(self))
        if d["file"] is None:
            del d["file"]
        return d

    def trajectory_dict(self) -> dict[str, Any]:
        """The fields a resumed run must share with the original to continue it (`--resume`).

        Threads and channels_last only reorder float arithmetic (the last bits), so [cpu] and [cuda]
        are left out, and so are the name and the file it was read from: the same fields under
        another name or in a moved or re-commented file train the same run (the fields themselves
        are compared; a run stored before files were recorded resumes from one). bf16 autocast
        computes in another precision, so a change of it would make the rest another run; but only
        the setting of the device a run trains on applies
        (`autocast_bf16`), and the checkpoint records that one (`checkpoint.resume` compares it).
        """
        d = self.to_dict()
        d["data"].pop("workers")
        for key in ("name", "log", "cpu", "cuda"):
            d.pop(key)
        d.pop("file", None)
        d["init"] = d["init"] and d["init"]["sha256"]  # the same weights under another path: the same run
        return d

    def autocast_bf16(self, device_type: str) -> bool:
        """Whether training on ``device_type`` ("cpu", "cuda") runs the forward under bf16 autocast."""
        return self.cuda.bf16 if device_type == "cuda" else self.cpu.bf16

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ValueError(f"[{where}] must be a table")
    return dataclass_from_dict(cls, table, f"[{where}]", typed=True)


def _build_top_level(fields: dict[str, Any]) -> Recipe:
    """`Recipe` from its top-level keys, named as such ("unknown top-level keys [...]", "top-level key
    seed = 1.0: expected an integer"): in a file they stand before any table, so no [recipe] exists."""
    recipe = dataclass_from_dict(Recipe, fields, "top-level")  # unknown keys first, as for the tables
    check_types(Recipe, fields, "top-level key")
    return recipe


def recipe_from_dict(data: dict[str, Any], name: str) -> Recipe:
    """Recipe from a parsed TOML (or `Recipe.to_dict`) dict; ValueError on a bad field."""
    data = dict(data)
    stages = data.pop("stages", None)
    if not stages:
        raise ValueError("a recipe needs at least one [stages.<name>] table")
    if isinstance(stages, dict):  # TOML form: [stages.warmup], [stages.joint] in file order
        for key, table in stages.items():
            if not isinstance(table, dict):
                raise ValueError(f"[stages.{key}] must be a table, got {table!r}")
        stages = [{"name": key, **table} for key, table in stages.items()]
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ValueError(f"stages must be [stages.<name>] tables, got {stages!r}")
    built = {
        "stages": tuple(_build(StageConfig, s, f"stages.{s.get('name')}") for s in stages),
        **{key: _build(cls, data.pop(key), key) for key, cls in
           (("data", DataConfig), ("optim", OptimConfig), ("log", LogConfig), ("cuda", CudaConfig),
            ("cpu", CpuConfig))
           if key in data},
    }
    recipe = _build_top_level({"name": name, **{k: v for k, v in data.items() if k != "name"}, **built})
    if recipe.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {recipe.method!r}")
    _check_model_types(recipe)
    if not 0 <= recipe.seed < 2**31:  # numpy's seeds are 0 .. 2**32 - 1, and each rank adds its rank
        raise ValueError(f"seed = {recipe.seed}: must be in [0, 2**31)")
    if recipe.data.gap_unit not in ("frames", "seconds"):
        raise ValueError(f"[data] gap_unit must be 'frames' or 'seconds', got {recipe.data.gap_unit!r}")
    return recipe


def _model_config_class(method: str) -> type | None:
    """The config dataclass whose fields a ``method``'s [model] table overrides (None: the
    auto-encoder has none). Imported here, not at the top: the methods import torch."""
    from vidcorr.methods import CycleTimeConfig, MoCoConfig, STTConfig, UVCConfig

    return {"uvc": UVCConfig, "cycletime": CycleTimeConfig, "stt": STTConfig, "moco": MoCoConfig}.get(method)


def _check_model_types(recipe: Recipe) -> None:
    """ValueError naming a [model] value its field does not allow ("[model] temperature = "1":
    expected a number"). The method's config is built from [model] only once `vidcorr train` runs,
    and there a wrong type failed in a comparison naming no field, or was taken as it came
    (localisation = "false" is truthy). Unknown keys are left to that build, which names them, and
    so are the weights records the command line adds (`autoencoder`, `teacher`; kept in
    checkpoints): they are not config fields, and `check_types` checks fields only."""
    config_class = _model_config_class(recipe.method)
    if config_class is not None:
        check_types(config_class, recipe.model, "[model]")
