"""CycleTime: learning correspondence from the cycle consistency of time (Wang, Jabri & Efros,
CVPR 2019; METHODS.md §2, docs/training.md).

A patch cut from a future *target* frame at a known rigid transform ``theta`` (batch kind
``"cycle_clip"``, `vidcorr.data.augment.CycleClipAugment`) is tracked backward through the last
c frames of a clip and forward again into the target frame, for every cycle length c = 1..L. Each
tracking step is differentiable: the affinity between the current patch's features and a frame's
(`cycletime_ops.patch_affinity`) goes through a small CNN that regresses the patch's rigid
transform in that frame, and the frame's features are resampled there to give the next patch.
Where the cycle ends should be where it started (``theta``). Three terms, as the official
``model_simple.py`` computes them:

* ``cycle``  — grid loss between the end of each cycle and ``theta``, averaged over the L cycles;
* ``skip``   — patch -> each clip frame directly -> back into the target frame, vs ``theta``;
* ``inlier`` — the soft inlier count of the direct patch -> frame affinities under the predicted
  transforms (higher is better; the loss adds ``-inlier``).

Total: ``cycle_weight * cycle + skip_weight * skip - inlier_weight * inlier`` (official:
0.2 * lambda, lambda, 1 with lambda = 0.1).

Deliberate difference: every affinity here lists the frame's cells row-major (y * W + x) and the
patch's cells as (y, x). The official code transposes the frame for the direct affinities (for the
inlier counter's mask layout) and the patch instead for the skip's return affinity, so one shared
regressor sees x and y swapped in one of its two uses; here it sees one layout throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.methods.cycletime_ops import (
    OFFICIAL_TRANSLATION_SCALE,
    grid_loss,
    patch_affinity,
    soft_inlier_score,
)
from vidcorr.models import build_encoder
from vidcorr.patches import rigid_theta, sample_patch
from vidcorr.strict_dict import (
    NON_NEGATIVE_NUMBER,
    POSITIVE_INTEGER,
    POSITIVE_NUMBER,
    DictConfig,
    or_none,
    refuse_non_finite,
    refuse_out_of_range,
)

if TYPE_CHECKING:  # only for the annotation: the methods do not import the trainer
    from vidcorr.train.config import DataConfig

STAGES = ("cycle",)
LOSS_TERMS = ("cycle", "skip", "inlier")


@dataclass(frozen=True)
class CycleTimeConfig(DictConfig):
    """Every knob of CycleTime training. Defaults are the official run (recipe ``"cycletime"``).

    arch: the ResNet of the ``"cycletime"`` encoder preset (R50 res4 at output stride 8 as in the
        paper; ``"resnet18"`` for the CPU recipe). head_channels: the 1x1 conv + ReLU after it
        (``afterconv1``, 1024 -> 512).
    frame_size: side of the square clip and target frames (official 240); the patch is a third of
        it (80). Both must be multiples of 8 and the patch at least 7 feature cells (the regressor's
        two 4x4 convolutions need them): a multiple of 24, at least 168.
    clip_length: L, the frames tracked through (official ``videoLen`` 4).
    temperature: affinity temperature; None = ``head_channels ** -0.5`` (official T = 512^-0.5).
    cycle_weight / skip_weight / inlier_weight: see the module docstring.
    translation_scale: the official feature-space warps scale translations by 227/210
        (`cycletime_ops.OFFICIAL_TRANSLATION_SCALE`); 1.0 uses the same transform as the pixels.
    grid_points: the grid loss's points per side (20).
    detach_encoder: the official ``detach_network``: no gradient into the backbone from the clip
        and patch features (the target frame's still trains it, as in the official code). Users
        report that training from scratch converges only after a first phase with it on.
    """

    LABEL = "CycleTime config"  # in errors: "unknown CycleTime config keys"

    arch: str = "resnet50"
    head_channels: int = 512
    frame_size: int = 240
    clip_length: int = 4
    temperature: float | None = None
    cycle_weight: float = 0.02
    skip_weight: float = 0.1
    inlier_weight: float = 1.0
    translation_scale: float = OFFICIAL_TRANSLATION_SCALE
    grid_points: int = 20
    detach_encoder: bool = False

    def __post_init__(self) -> None:
        _check_frame_size(self.frame_size, "frame_size")
        if self.clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {self.clip_length}")
        refuse_non_finite(self)  # first: its message for a nan or inf value, not the range's
        # each bad field by name and value: "head_channels and temperature must be positive" and
        # "loss weights must be >= 0" left one to guess which
        refuse_out_of_range(self, {"head_channels": POSITIVE_INTEGER, "temperature": or_none(POSITIVE_NUMBER),
                                   "cycle_weight": NON_NEGATIVE_NUMBER, "skip_weight": NON_NEGATIVE_NUMBER,
                                   "inlier_weight": NON_NEGATIVE_NUMBER})

    @property
    def patch_size(self) -> int:
        return self.frame_size // 3

    @property
    def tau(self) -> float:
        return self.temperature if self.temperature is not None else self.head_channels ** -0.5


def _check_frame_size(size: int, name: str) -> None:
    """ValueError unless ``size`` can be a `CycleTimeConfig.frame_size`; ``name``: what the user set
    it as ("frame_size", or a training recipe's "[data] crop")."""
    if size % 24 or size < 168:
        raise ValueError(f"{name} must be a multiple of 24 and at least 168 (CycleTime's patch is a third "
                         f"of the frame, at least 7 feature cells of 8 pixels), got {size}")


RECIPES: dict[str, dict[str, Any]] = {
    "cycletime": {},
    # Our 2-core CPU budget: ResNet-18 (layer3, 256 -> 512 head) on 192 px frames (64 px patches).
    "cycletime-cpu": dict(arch="resnet18", frame_size=192),
}


def recipe(name: str, **overrides: Any) -> CycleTimeConfig:
    """``CycleTimeConfig`` of a named recipe, with optional field overrides."""
    if name not in RECIPES:
        raise ValueError(f"unknown CycleTime recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return CycleTimeConfig.from_dict({**RECIPES[name], **overrides})


def config_for_recipe(base: str | None, model: dict[str, Any], data: DataConfig) -> CycleTimeConfig:
    """The `CycleTimeConfig` of a training recipe: ``base`` (a `RECIPES` name, default
    "cycletime") with its ``[model]`` overrides, and frame size and clip length from its ``[data]``
    (``crop``, ``clip_length``): the regressor is sized by them, so the two must agree. ValueError
    on any disagreement (`vidcorr train` checks the recipe's stage names)."""
    sizes = {"frame_size": data.crop, "clip_length": data.clip_length}
    clash = {k: v for k, v in sizes.items() if k in model and model[k] != v}
    if clash:
        raise ValueError(f"[model] {clash} disagrees with [data] crop / clip_length {sizes}")
    _check_frame_size(data.crop, "[data] crop")  # named as the recipe sets it, not as frame_size
    if data.frame < data.crop:  # here, before training: the clip augmentation refuses it at the first batch
        raise ValueError(f"[data] frame = {data.frame} is smaller than crop = {data.crop}: CycleTime resizes "
                         "the short side to frame, then cuts crop x crop clips out of it")
    return recipe(base or "cycletime", **{**model, **sizes})


class TransformRegressor(nn.Module):
    """Patch -> frame affinity (N, H*W, h, w) -> rigid transform theta (N, 2, 3).

    Official ``afterconv3_trans`` / ``afterconv4_trans`` / ``linear2``: two 4x4 convolutions
    (no padding, no bias) with LeakyReLU(0.1), then a linear layer to (tx, ty, angle).
    """

    def __init__(self, frame_cells: int, patch_cells: int):
        super().__init__()
        self.conv1 = nn.Conv2d(frame_cells, 128, kernel_size=4, bias=False)
        self.conv2 = nn.Conv2d(128, 64, kernel_size=4, bias=False)
        self.linear = nn.Linear(64 * (patch_cells - 6) ** 2, 3)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.linear.weight, 0.0, 0.01)  # starts near the centred, unrotated patch
        nn.init.zeros_(self.linear.bias)

    def forward(self, affinity: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1(affinity), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        return rigid_theta(self.linear(x.flatten(1)))


class CycleTime(nn.Module):
    """The CycleTime training model: encoder + transform regressor -> named losses.

    Attributes: ``encoder`` — the `FrameEncoder` (``"cycletime"`` preset: ResNet at output stride
    8 + 1x1 head) exported as weights; ``regressor``; ``cfg``.
    """

    def __init__(self, cfg: CycleTimeConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder("cycletime", arch=cfg.arch, head_channels=cfg.head_channels)
        frame_cells, patch_cells = cfg.frame_size // 8, cfg.patch_size // 8
        self.regressor = TransformRegressor(frame_cells**2, patch_cells)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the encoder's and the regressor's parameters."""
        return [p for p in self.parameters() if p.requires_grad]

    def batch_kind(self, stage: str) -> str:
        """``"cycle_clip"``: {"clip" (L, 3, S, S), "target" (3, S, S), "patch" (3, S/3, S/3),
        "theta" (2, 3)} per sample (`vidcorr.data.augment.CycleClipAugment`)."""
        if stage not in STAGES:
            raise ValueError(f"unknown CycleTime stage {stage!r}; expected one of {STAGES}")
        return "cycle_clip"

    def _embed(self, rgb: Tensor, detach_backbone: bool) -> Tensor:
        """rgb (N, 3, H, W) in [0, 1] -> head features (N, C, H/8, W/8), float32, not normalised."""
        features = self.encoder.backbone(self.encoder.normalise(rgb))
        if detach_backbone:
            features = features.detach()
        return self.encoder.head(features).float()

    def _check(self, batch: dict[str, Tensor]) -> None:
        s, p, length = self.cfg.frame_size, self.cfg.patch_size, self.cfg.clip_length
        expected = {"clip": (length, 3, s, s), "target": (3, s, s), "patch": (3, p, p), "theta": (2, 3)}
        for name, shape in expected.items():
            if name not in batch:
                raise ValueError(f"CycleTime batch lacks {name!r}; it needs {sorted(expected)}")
            if tuple(batch[name].shape[1:]) != shape:
                raise ValueError(f"CycleTime batch[{name!r}] is {tuple(batch[name].shape)}; expected "
                                 f"(B, {', '.join(map(str, shape))}) for frame_size {s}")

    def _track(self, query: Tensor, frame: Tensor, frame_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One tracking step. query: (N, C, h, w) L2-normalised patch features; frame: (N, C, H, W)
        L2-normalised, frame_features: the same not normalised (what is cropped, as officially).
        -> (affinity (N, H*W, h, w), theta (N, 2, 3), L2-normalised crop (N, C, h, w))."""
        affinity = patch_affinity(query, frame, self.cfg.tau)
        theta = self.regressor(affinity)
        crop = sample_patch(frame_features, theta, tuple(query.shape[-2:]), self.cfg.translation_scale)
        return affinity, theta, F.normalize(crop, dim=1)

    def forward(self, batch: dict[str, Tensor], stage: str = "cycle") -> dict[str, Tensor]:
        """Losses of one batch.

        batch: ``"clip"`` (B, L, 3, S, S), ``"target"`` (B, 3, S, S), ``"patch"`` (B, 3, S/3, S/3)
        RGB in [0, 1]; ``"theta"`` (B, 2, 3) where the patch was cut from the target.
        Returns scalar tensors: ``"cycle"``, ``"skip"``, ``"inlier"`` (unweighted; inlier is a score
        in [0, 1]), ``"loss"`` (the weighted total) and the detached diagnostic
        ``"cycle_longest"`` (the grid loss of the L-frame cycle alone).
        """
        self.batch_kind(stage)
        self._check(batch)
        cfg = self.cfg
        clip, theta_gt = batch["clip"], batch["theta"].float()
        b, length = clip.shape[:2]
        f_clip = self._embed(clip.flatten(0, 1), cfg.detach_encoder)  # (B*L, C, H, W)
        f_patch = self._embed(batch["patch"], cfg.detach_encoder)
        f_target = self._embed(batch["target"], detach_backbone=False)
        with torch.autocast(clip.device.type, enabled=False):
            n_clip, n_patch, n_target = (F.normalize(f, dim=1) for f in (f_clip, f_patch, f_target))
            frame_hw = tuple(f_clip.shape[-2:])
            per_frame = f_clip.view(b, length, *f_clip.shape[1:])
            per_frame_n = n_clip.view(b, length, *n_clip.shape[1:])

            # Skip: the patch straight into every frame, and from there back into the target.
            def repeat(x: Tensor) -> Tensor:  # (B, ...) -> (B*L, ...), each sample once per frame
                return x.repeat_interleave(length, dim=0)

            affinity, theta_skip, crops = self._track(repeat(n_patch), n_clip, f_clip)
            _, theta_back, _ = self._track(crops, repeat(n_target), repeat(f_target))
            skip = grid_loss(theta_back, repeat(theta_gt), cfg.grid_points).mean()
            inlier = soft_inlier_score(affinity, theta_skip, frame_hw, cfg.translation_scale).mean()

            ends = self._cycle_ends(per_frame, per_frame_n, n_patch, f_target, n_target)
            cycle_losses = [grid_loss(theta, theta_gt, cfg.grid_points).mean() for theta in ends]
            cycle = torch.stack(cycle_losses).mean()
            total = cfg.cycle_weight * cycle + cfg.skip_weight * skip - cfg.inlier_weight * inlier
        return {"cycle": cycle, "skip": skip, "inlier": inlier, "loss": total,
                "cycle_longest": cycle_losses[-1].detach()}

    def _cycle_ends(self, frames: Tensor, frames_n: Tensor, patch_n: Tensor, target: Tensor,
                    target_n: Tensor) -> list[Tensor]:
        """Where each cycle c = 1..L ends in the target: back through frames L-1 .. L-c, forward
        through L-c+1 .. L-1, into the target. -> L transforms (B, 2, 3).

        frames: (B, L, C, H, W) features, frames_n the same L2-normalised; patch_n: (B, C, h, w)
        normalised; target / target_n: (B, C, H, W). Cycle c's backward half is the first c steps
        of cycle L's, so it is tracked once (the release tracks every cycle from the patch)."""
        length = frames.shape[1]
        backward = [patch_n]
        for t in range(length - 1, -1, -1):
            backward.append(self._track(backward[-1], frames_n[:, t], frames[:, t])[2])
        ends = []
        for c in range(1, length + 1):
            query = backward[c]
            for t in range(length - c + 1, length):
                query = self._track(query, frames_n[:, t], frames[:, t])[2]
            ends.append(self._track(query, target_n, target)[1])
        return ends

    @torch.no_grad()
    def visualise(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The target's patch at the true transform beside where the longest cycle ends:
        ``{"patch_true_vs_cycle_end": (B, 3, S/3, 2 S/3)}`` RGB in [0, 1] (batch as `forward`'s)."""
        clip = batch["clip"]
        f_clip = self._embed(clip.flatten(0, 1), False)
        frames = f_clip.view(*clip.shape[:2], *f_clip.shape[1:])
        f_target = self._embed(batch["target"], False)
        patch_n = F.normalize(self._embed(batch["patch"], False), dim=1)
        theta_end = self._cycle_ends(frames, F.normalize(frames, dim=2), patch_n, f_target,
                                     F.normalize(f_target, dim=1))[-1]
        size = tuple(batch["patch"].shape[-2:])
        found = sample_patch(batch["target"].float(), theta_end, size)
        return {"patch_true_vs_cycle_end": torch.cat([batch["patch"].float(), found], dim=-1)}
