"""STT, Spatial-then-Temporal (Li & Liu, CVPR 2023; METHODS.md §4, docs/stt.md): the temporal stage.

A student ResNet sees two frames of a clip in Lab with one colour channel (a* or b*, the same
for both) dropped, and learns to

* reconstruct the dropped channel of the target frame from the reference frame through a local
  correlation (square window) at stride 4 (layer2) and at stride 8 (layer3): ``rec_s4``,
  ``rec_s8`` (smooth-L1 on values x 20);
* make its stride-8 correlation match its own stride-4 one pooled to stride 8, on the target
  positions whose local matching is most uncertain: ``local`` (MSE, target detached);
* keep the image-level structure of a frozen teacher, trained before by image-level contrastive
  learning (the *spatial* stage: `vidcorr train moco`): the student's stride-32 (layer4)
  correlation against the teacher's: ``global`` (MSE). Without a teacher this term is absent, as
  the release allows (``backbone_t=None``).

Total: ``rec_s4 + rec_s8 + 1000 local + 50 global`` (the release's weights).

The student is the ``"stt"`` encoder preset (strides (1, 2, 2, 1), no max-pool, layer3, normalised
Lab: what propagation uses and what is exported) plus a training-only layer4 at stride 4 (the
release trains strides (1, 2, 2, 4); only layer4's stride differs, so the weights are the same).
As released, the student starts from the teacher's weights when there is a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vidcorr.methods import stt_ops
from vidcorr.models import FrameEncoder, build_encoder
from vidcorr.models.resnet import ResNetBackbone
from vidcorr.strict_dict import (
    NON_NEGATIVE_NUMBER,
    POSITIVE_NUMBER,
    DictConfig,
    one_of,
    refuse_non_finite,
    refuse_out_of_range,
)

if TYPE_CHECKING:  # only for the annotation: the methods do not import the trainer
    from vidcorr.train.config import DataConfig

STAGES = ("temporal",)
LOSS_TERMS = ("rec_s4", "rec_s8", "local", "global")
TARGET_MASS = ("release", "normalised")


@dataclass(frozen=True)
class STTConfig(DictConfig):
    """Every knob of STT's temporal stage. Defaults are the release (``configs/train/train.py``).

    arch: student (and teacher) ResNet depth: the release's template uses ``resnet50``; its model
        zoo has R18 and R50. frame_size: side of the square training frames (256), a multiple of 32.
    radius: local correlation window radius in cells at stride 4 and stride 8 (12, 6: 48 px both).
    rec_scale: values are multiplied by this before the smooth-L1 (release ``weight=20``).
    local_weight / global_weight: the distillation terms' weights (1000 / 50); the two
        reconstruction terms have weight 1.
    uncertain_fraction: T, the share of target positions the local distillation keeps (0.7);
        None trains on every position. uncertain_threshold: "release" (the code's per-column
        threshold) or "global" (a percentile over the map), `stt_ops.uncertainty_weights`.
    uncertainty_radius: max displacement of the cost volume that measures uncertainty (6).
    target_mass: "release" keeps the pooled stride-4 target's rows summing to 1/4 (avg-pool);
        "normalised" rescales them to 1.
    teacher_temperature: the teacher correlation's temperature (0.07), on un-normalised features
        unless teacher_normalise.
    init_from_teacher: start the student from the teacher's weights (the release's config).
    """

    LABEL = "STT config"  # in errors: "unknown STT config keys"

    arch: str = "resnet50"
    frame_size: int = 256
    radius: tuple[int, int] = (12, 6)
    rec_scale: float = 20.0
    local_weight: float = 1000.0
    global_weight: float = 50.0
    uncertain_fraction: float | None = 0.7
    uncertain_threshold: str = "release"
    uncertainty_radius: int = 6
    target_mass: str = "release"
    teacher_temperature: float = 0.07
    teacher_normalise: bool = False
    init_from_teacher: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", tuple(int(r) for r in self.radius))
        refuse_non_finite(self)  # first: its message for a nan or inf value, not the range's
        refuse_out_of_range(self, {"arch": one_of(("resnet18", "resnet50")), "rec_scale": NON_NEGATIVE_NUMBER,
                                   "local_weight": NON_NEGATIVE_NUMBER, "global_weight": NON_NEGATIVE_NUMBER,
                                   # the teacher's correlation divides by it
                                   "teacher_temperature": POSITIVE_NUMBER})
        _check_frame_size(self.frame_size, "frame_size")
        if len(self.radius) != 2 or min(self.radius) < 1 or self.uncertainty_radius < 1:
            raise ValueError(f"radius must be two positive cell counts and uncertainty_radius positive, "
                             f"got {self.radius}, {self.uncertainty_radius}")
        if self.uncertain_fraction is not None and not 0 < self.uncertain_fraction <= 1:
            raise ValueError(f"uncertain_fraction must be in (0, 1] or None, got {self.uncertain_fraction}")
        if self.uncertain_threshold not in stt_ops.ENTROPY_THRESHOLDS:
            raise ValueError(f"uncertain_threshold must be one of {stt_ops.ENTROPY_THRESHOLDS}")
        if self.target_mass not in TARGET_MASS:
            raise ValueError(f"target_mass must be one of {TARGET_MASS}, got {self.target_mass!r}")


def _check_frame_size(size: int, name: str) -> None:
    """ValueError unless ``size`` can be a `STTConfig.frame_size`; ``name``: what the user set it as
    ("frame_size", or a training recipe's "[data] crop", which sets it)."""
    if size % 32 or size < 64:
        raise ValueError(f"{name} = {size}: STT needs a multiple of 32 and at least 64 (the stride-32 teacher grid)")


RECIPES: dict[str, dict[str, Any]] = {
    "stt": {},
    # Our 2-core CPU budget: ResNet-18 on 192 px frames.
    "stt-cpu": dict(arch="resnet18", frame_size=192),
}


def config_for_recipe(base: str | None, model: dict[str, Any], data: DataConfig) -> STTConfig:
    """The `STTConfig` of a training recipe: ``base`` (a `RECIPES` name, default "stt") with its
    ``[model]`` overrides and the frame size from ``[data] crop`` (they must agree). ValueError
    otherwise (`vidcorr train` checks the recipe's stage names)."""
    if "frame_size" in model and model["frame_size"] != data.crop:
        raise ValueError(f"[model] frame_size {model['frame_size']} disagrees with [data] crop {data.crop}")
    name = base or "stt"
    if name not in RECIPES:
        raise ValueError(f"unknown STT recipe {name!r}; choose one of {', '.join(RECIPES)}")
    _check_frame_size(data.crop, "[data] crop")  # as the recipe sets it, not as frame_size
    return STTConfig.from_dict({**RECIPES[name], **model, "frame_size": data.crop})


# The smallest frame with a teacher: 3 x 3 stride-32 cells. On 2 x 2 (64 px) each cell sees the whole
# frame and both correlations of the global term are the identity: 1e-28 with a MoCo teacher on two
# real frames (0.17 at 96 px), the term 0 and no gradient, where the release's 256 px gives 8 x 8.
MIN_TEACHER_SIZE = 96


def check_global_grid(cfg: STTConfig, name: str = "frame_size") -> None:
    """ValueError unless ``cfg.frame_size`` gives the global term (with a teacher) a grid it can
    learn from (`MIN_TEACHER_SIZE`); ``name``: what the user set it as ("[data] crop"). Checked by
    `STT` whenever it is given a teacher, and before that by `vidcorr train stt --teacher`, which
    names the recipe's setting before it indexes the videos."""
    if cfg.frame_size < MIN_TEACHER_SIZE:
        cells = cfg.frame_size // 32
        raise ValueError(f"{name} = {cfg.frame_size}: with a teacher, STT's global term correlates {cells}x{cells} "
                         "stride-32 cells, on which the student's and the teacher's correlations are both the "
                         f"identity (the term is 0 and trains nothing); at least {MIN_TEACHER_SIZE} "
                         f"({MIN_TEACHER_SIZE // 32}x{MIN_TEACHER_SIZE // 32} cells), or train without a teacher")


def check_teacher(teacher: nn.Module, cfg: STTConfig) -> None:
    """ValueError unless ``teacher`` is a ResNet `FrameEncoder` with stride-32 features (the
    student's layer4 grid) and, when the student starts from it, the student's depth."""
    config = getattr(teacher, "config", None)
    if not isinstance(teacher, FrameEncoder) or config is None:
        raise ValueError("the teacher must be a ResNet encoder (weights from `vidcorr train moco`)")
    if teacher.stride != 32:
        raise ValueError(f"the teacher's features must be at stride 32 (standard strides, layer4), "
                         f"not {teacher.stride}")
    if cfg.init_from_teacher and config.arch != cfg.arch:
        raise ValueError(f"the student ({cfg.arch}) starts from the teacher ({config.arch}): "
                         "use the same arch or set init_from_teacher = false")


class STT(nn.Module):
    """The STT temporal-stage training model: student (+ frozen teacher) -> named losses.

    Attributes: ``encoder`` — the exported `FrameEncoder` (``"stt"`` / ``"stt-r50"`` preset);
    ``layer4`` — the student's training-only stride-4 layer4; ``teacher`` — frozen, or None.
    """

    def __init__(self, cfg: STTConfig, teacher: FrameEncoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder("stt" if cfg.arch == "resnet18" else "stt-r50")
        self.layer4 = ResNetBackbone(cfg.arch, strides=(1, 2, 2, 4), maxpool=False, out_layer="layer4").layer4
        self.teacher = teacher
        self._register_state_dict_hook(STT._drop_teacher)
        if teacher is None:
            self.layer4.requires_grad_(False)  # only the global term trains it
        else:
            check_teacher(teacher, cfg)
            check_global_grid(cfg)  # the Python API too: a 64 px model's global term was 0 without a word
            teacher.eval().requires_grad_(False)
            if cfg.init_from_teacher:
                self._start_from(teacher)
        cells = cfg.frame_size // 4, cfg.frame_size // 8
        for level, (side, radius) in enumerate(zip(cells, cfg.radius, strict=True)):
            self.register_buffer(f"window{level}", stt_ops.window_mask(side, side, radius), persistent=False)

    def _start_from(self, teacher: FrameEncoder) -> None:
        """Copy the teacher's backbone into the student (the same tensors, other strides)."""
        state = teacher.backbone.state_dict()
        self.encoder.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("layer4.")})
        self.layer4.load_state_dict({k[len("layer4."):]: v for k, v in state.items() if k.startswith("layer4.")})

    def train(self, mode: bool = True) -> STT:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen, batch-norm statistics included
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in (*self.encoder.parameters(), *self.layer4.parameters()) if p.requires_grad]

    def batch_kind(self, stage: str) -> str:
        """``"resized_crop_pair"``: {"ref", "target"} (3, S, S) per sample
        (`vidcorr.data.augment.ResizedCropPairAugment`)."""
        if stage not in STAGES:
            raise ValueError(f"unknown STT stage {stage!r}; expected one of {STAGES}")
        return "resized_crop_pair"

    @staticmethod
    def _drop_teacher(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        """State-dict hook: checkpoints hold no teacher tensors; it is rebuilt from its own file."""
        for key in [k for k in state if k.startswith(prefix + "teacher.")]:
            del state[key]

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        teacher, self.teacher = self.teacher, None  # the teacher's tensors are not in a checkpoint
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        finally:
            self.teacher = teacher

    def _check(self, batch: dict[str, Tensor]) -> None:
        s = self.cfg.frame_size
        for name in ("ref", "target"):
            if name not in batch:
                raise ValueError(f"STT batch lacks {name!r}; it needs 'ref' and 'target'")
            if tuple(batch[name].shape[1:]) != (3, s, s):
                raise ValueError(f"STT batch[{name!r}] is {tuple(batch[name].shape)}; expected (B, 3, {s}, {s})")

    def drop_channel(self, lab: Tensor) -> tuple[Tensor, int]:
        """The release's ``dropout2d_lab``: zero a* or b* (drawn once for the whole batch, from
        the global RNG) and scale every channel by 3/2. lab: (N, 3, H, W) -> (copy, channel)."""
        channel = int(torch.randint(1, 3, ()))
        dropped = lab.clone()
        dropped[:, channel] = 0
        return dropped * 1.5, channel

    def forward(self, batch: dict[str, Tensor], stage: str = "temporal") -> dict[str, Tensor]:
        """Losses of one batch. batch: ``"ref"`` and ``"target"`` (B, 3, S, S) RGB in [0, 1], the
        earlier and the later frame. Returns scalars ``rec_s4``, ``rec_s8``, ``local``, ``global``
        (unweighted; ``global`` is 0 without a teacher) and ``loss`` (the weighted total)."""
        self.batch_kind(stage)
        self._check(batch)
        cfg, b = self.cfg, batch["ref"].shape[0]
        frames = torch.cat([batch["ref"], batch["target"]])  # (2B, 3, S, S)
        with torch.autocast(frames.device.type, enabled=False):  # the colours are also the targets
            lab = self.encoder.normalise(frames.float())
        dropped, channel = self.drop_channel(lab)
        stages = self.encoder.backbone.forward_stages(dropped)
        levels = [stages["layer2"], stages["layer3"]]
        student_s32, teacher_s32 = self._stride32_features(frames, stages["layer3"])
        with torch.autocast(frames.device.type, enabled=False):
            losses, corrs, raw_s8 = {}, [], None
            for level, (name, rate) in enumerate(zip(("rec_s4", "rec_s8"), (4, 8), strict=True)):
                features = levels[level].float()
                ref, target = features[:b], features[b:]
                raw = stt_ops.raw_correlation(target, ref)
                corr = stt_ops.local_correlation(raw, features.shape[1], getattr(self, f"window{level}"))
                grid = tuple(features.shape[-2:])
                losses[name] = stt_ops.reconstruction_loss(
                    corr, lab[:b, channel : channel + 1], lab[b:, channel : channel + 1], rate, grid, cfg.rec_scale)
                corrs.append(corr)
                raw_s8 = raw
            grid_s4, grid_s8 = tuple(levels[0].shape[-2:]), tuple(levels[1].shape[-2:])
            target_corr = stt_ops.pooled_correlation(corrs[0].detach(), grid_s4, cfg.target_mass == "normalised")
            if cfg.uncertain_fraction is None:
                weights = torch.ones(corrs[1].shape[:2], device=frames.device)
            else:
                with torch.no_grad():
                    weights = stt_ops.uncertainty_weights(raw_s8.detach(), grid_s8, cfg.uncertainty_radius,
                                                          cfg.uncertain_fraction, cfg.uncertain_threshold)
            losses["local"] = stt_ops.weighted_mse(corrs[1], target_corr, weights)
            losses["global"] = self._global_term(student_s32, teacher_s32, b)
            losses["loss"] = (losses["rec_s4"] + losses["rec_s8"] + cfg.local_weight * losses["local"]
                              + cfg.global_weight * losses["global"])
        return losses

    def _stride32_features(self, frames: Tensor, layer3: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Student layer4 and teacher features (2B, C, S/32, S/32), or (None, None) without a
        teacher. Outside the float32 block: under autocast they run in bf16 like the backbone."""
        if self.teacher is None:
            return None, None
        student = self.layer4(layer3)
        with torch.no_grad():
            teacher = self.teacher(frames)
        if teacher.shape[-2:] != student.shape[-2:]:
            raise ValueError(f"teacher grid {tuple(teacher.shape[-2:])} != student layer4 grid "
                             f"{tuple(student.shape[-2:])}")
        return student, teacher

    def _global_term(self, student: Tensor | None, teacher: Tensor | None, b: int) -> Tensor:
        """MSE between the student's stride-32 correlation and the teacher's (0 without one)."""
        if student is None or teacher is None:
            return torch.zeros((), device=self.window0.device)
        student, teacher = student.float(), teacher.float()
        predicted = stt_ops.global_correlation(student[b:], student[:b])
        wanted = stt_ops.global_correlation(teacher[b:], teacher[:b], self.cfg.teacher_temperature,
                                            self.cfg.teacher_normalise)
        return torch.nn.functional.mse_loss(predicted, wanted)

    @torch.no_grad()
    def visualise(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Reference, target, and the target's colours carried from the reference by the stride-4
        local correlation (all Lab channels), side by side."""
        from vidcorr.models.colour import lab_to_rgb, rgb_to_lab

        b = batch["ref"].shape[0]
        frames = torch.cat([batch["ref"], batch["target"]]).float()
        features = self.encoder.backbone.forward_stages(self.encoder.normalise(frames))["layer2"].float()
        corr = stt_ops.local_correlation(stt_ops.raw_correlation(features[b:], features[:b]),
                                         features.shape[1], self.window0)
        grid = tuple(features.shape[-2:])
        ref_lab = torch.nn.functional.interpolate(rgb_to_lab(batch["ref"].float()), size=grid, mode="area")
        carried = stt_ops.transport(corr, ref_lab).view(b, 3, *grid)
        carried = torch.nn.functional.interpolate(lab_to_rgb(carried), size=frames.shape[-2:], mode="nearest")
        return {"ref_target_carried": torch.cat([batch["ref"].float(), batch["target"].float(), carried], dim=-1)}

    def export(self) -> tuple[nn.Module, None]:
        return self.encoder, None
