"""UVC: joint region-level localisation and pixel-level matching through one affinity
(Li et al., NeurIPS 2019; METHODS.md §1, docs/uvc.md).

A grey-scale ResNet (``"gray-l"`` input, output stride 8) embeds two frames; one affinity
(`vidcorr.affinity`) both *localises* a reference patch in the target frame (UVC §3.2) and
*transports* the reference's colour features onto the localised region, where the frozen Lab
auto-encoder decodes them and the true colours supervise (§3.3). Two stages:

* ``"warmup"`` — a pair of independent crops, matching only (``batch_kind`` = ``"crop_pair"``).
* ``"joint"``  — a patch of frame 1 against the whole frame 2 (``"patch_frame"``): localise,
  crop differentiably, match inside the box. With ``localisation=False`` (the −L ablation) the
  joint stage is trained like the warm-up.

`stage_switches` gives the official per-epoch schedule of the concentration term and of the
colour-loss truncation; the trainer passes it to ``forward``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from vidcorr.affinity import affinity_logits, locate_in_target, region_from_coordinates
from vidcorr.methods.crop import crop_boxes, region_box
from vidcorr.methods.uvc_losses import (
    coordinate_cycle,
    decode_transported,
    global_concentration,
    kept_after_truncation,
    local_concentration,
    to_unit,
    unit_scale,
    weighted_l1,
)
from vidcorr.models import build_encoder, lab_to_uvc_normalised, rgb_to_lab
from vidcorr.strict_dict import NON_NEGATIVE_NUMBER, DictConfig, refuse_non_finite, refuse_out_of_range

Stage = Literal["warmup", "joint"]
STAGES = ("warmup", "joint")
LOSS_TERMS = ("colour", "orthogonal", "orthogonal_coords", "concentration_local",
              "concentration_global")


@dataclass(frozen=True)
class UVCConfig(DictConfig):
    """Every knob of UVC training. Defaults are the paper's method (recipe ``"uvc"``).

    arch: ResNet of the grey encoder (``"resnet18"`` as in the paper, or ``"resnet50"``).
    out_layer: stage whose output is matched; layer3 and layer4 run at stride 1, so any of
        layer2..layer4 is at output stride 8 (METHODS.md §1.2: UVC trains and tests layer4).
    temperature: tau in ``softmax(f1^T f2 / tau)``; UVC uses 1 on raw (not L2-normalised) features.
    box: region size in the joint stage. ``"mad"``: UVC Eq. 4, half-size = 2 x mean absolute
        deviation of the transported patch coordinates (detached; ``libs/model.py::coords2bbox``).
        ``"fixed"``: the released ``center2bbox``, a patch-sized box at the localised centre.
    localisation: False = the −L ablation: the joint stage matches independent crops like the
        warm-up, with no region localisation (and hence no global concentration term).
    orthogonal: the −O switch for the colour "switch" cycle term ``D(E(I2) A^T)`` vs I1 (Eq. 8);
        False also drops the coordinate cycle term.
    orthogonal_coords: coordinate cycle term ``l11 -> l12 -> l11`` (Eq. 7), L1 in unit coordinates.
        Disabled (and broken) in the official code (METHODS.md §1.6).
    orthogonal_weight: weight of both cycle terms (the official code hard-codes 0.1).
    concentration: the −C switch; False disables both concentration terms.
    concentration_global: truncated Eq. 6 on the patch -> target coordinates, bounded by the
        Eq. 4 box half-size (joint stage with localisation only). Absent from the official code.
    concentration_local: Eq. 6 without truncation in non-overlapping 8 x 8 grids, both
        directions (``ConcentrationSwitchLoss``), in both stages.
    concentration_weight: weight of the concentration terms (released run: ``--lc 0.3``).
    colour_truncation: per-sample colour losses above this count as 0 (outlier pairs); None = off.
    lab_weights: weights of |dL|, |da|, |db| in the colour L1 (UVC: 1, 10, 10).
    """

    LABEL = "UVC config"  # in errors: "unknown UVC config keys"

    arch: str = "resnet18"
    out_layer: str = "layer4"
    temperature: float = 1.0
    box: Literal["mad", "fixed"] = "mad"
    localisation: bool = True
    orthogonal: bool = True
    orthogonal_coords: bool = True
    orthogonal_weight: float = 0.1
    concentration: bool = True
    concentration_global: bool = True
    concentration_local: bool = True
    concentration_weight: float = 0.3
    colour_truncation: float | None = 2.5
    lab_weights: tuple[float, float, float] = (1.0, 10.0, 10.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lab_weights", tuple(float(w) for w in self.lab_weights))
        if self.box not in ("mad", "fixed"):
            raise ValueError(f"UVC box must be 'mad' or 'fixed', got {self.box!r}")
        if len(self.lab_weights) != 3:
            raise ValueError(f"lab_weights needs 3 values (L, a, b), got {self.lab_weights}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.colour_truncation is not None and self.colour_truncation <= 0:
            raise ValueError(f"colour_truncation must be > 0 or None, got {self.colour_truncation}")
        refuse_non_finite(self)  # first: its message for a nan or inf weight, not the range's
        # each bad weight by name and value: "loss weights must be >= 0" left one to guess which
        refuse_out_of_range(self, {"orthogonal_weight": NON_NEGATIVE_NUMBER,
                                   "concentration_weight": NON_NEGATIVE_NUMBER})

    @property
    def uses_local_concentration(self) -> bool:
        return self.concentration and self.concentration_local

    @property
    def uses_global_concentration(self) -> bool:
        return self.concentration and self.concentration_global and self.localisation

    @property
    def uses_coordinate_cycle(self) -> bool:
        return self.orthogonal and self.orthogonal_coords


_PAPER = dict(box="mad", localisation=True, orthogonal=True, orthogonal_coords=True,
              concentration=True, concentration_global=True, concentration_local=True)

RECIPES: dict[str, dict[str, Any]] = {
    # The paper (§3): Eq. 4 box, global (Eq. 6) + local concentration, cycle on colour and coords.
    "uvc": dict(_PAPER),
    # The released code (METHODS.md §1.5-1.8): center2bbox fixed box, local concentration only,
    # no coordinate cycle term (--coord_switch 0), colour switch weight 0.1, --lc 0.3.
    "uvc-official": dict(_PAPER, box="fixed", concentration_global=False, orthogonal_coords=False),
    # Our 2-core CPU budget: match layer3 (256-d) instead of layer4 — layer4 is 512 channels of
    # 3x3 convs at stride 8, about 3/4 of the R18's FLOPs, and layer3 is what the default `crw`
    # propagation preset evaluates, so the trained weights are scored where they were trained.
    "uvc-cpu": dict(_PAPER, out_layer="layer3"),
}


def recipe(name: str, **overrides: Any) -> UVCConfig:
    """``UVCConfig`` of a named recipe, with optional field overrides."""
    if name not in RECIPES:
        raise ValueError(f"unknown UVC recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return UVCConfig.from_dict({**RECIPES[name], **overrides})


def check_sizes(cfg: UVCConfig, data: Any, stages: Sequence[str], processes: int = 1) -> None:
    """ValueError naming the ``[data]`` field (``crop``, ``frame``) a training recipe sets that UVC
    cannot train on. Checked when `vidcorr train uvc` builds its config, before any training: the
    model itself refuses them only at the first batch of the stage using them (after a whole warm-up,
    for ``frame``), exiting 1 as a diverged run does. ``frame`` is used only by a joint stage that
    localises (`UVC.batch_kind`).
    ``processes``: torchrun's, each taking ``batch_size / processes`` pairs."""
    why = "the colour decoder reconstructs 8x its stride-8 feature grid"
    if data.crop % 8:
        raise ValueError(f"[data] crop = {data.crop}: UVC needs a multiple of 8 ({why})")
    batch = max(1, data.batch_size // processes)
    if (data.crop // 8) ** 2 * batch < 2:  # crop 8: layer2 on is 1x1, one value a channel for one image
        raise ValueError(f"[data] crop = {data.crop} with batch_size {data.batch_size} ({batch} per process): "
                         "the encoder's batch norm sees one value per channel on its 1x1 stride-8 grid; use "
                         "a crop of 16 or more, or 2 pairs per process")
    if "joint" not in stages or not cfg.localisation:
        return
    if data.frame % 8:
        raise ValueError(f"[data] frame = {data.frame}: UVC needs a multiple of 8 ({why})")
    # The joint stage crops the crop x crop patch out of the frame x frame target-sized frame 1
    # (`PatchFramePairAugment`); a larger patch is reflect-padded out of it, and localising a patch
    # bigger than the frame it is looked for in means nothing.
    if data.crop > data.frame:
        raise ValueError(f"[data] crop = {data.crop} is larger than frame = {data.frame}: UVC's joint stage "
                         "localises a crop x crop patch of frame 1 in the frame x frame frame 2, so the "
                         "patch must fit in the frame")


def ablate(cfg: UVCConfig, which: str) -> UVCConfig:
    """UVC Table 2 ablations: ``"L"`` (no localisation), ``"O"`` (no orthogonal terms), ``"C"`` (no
    concentration), combinations such as ``"O&C"``, and ``"all"`` (= L, O and C)."""
    letters = "LOC" if which == "all" else which.replace("&", "")
    if not letters or set(letters) - set("LOC"):
        raise ValueError(f"unknown ablation {which!r}; use L, O, C, a combination like 'O&C', or 'all'")
    changes = {"L": dict(localisation=False), "O": dict(orthogonal=False, orthogonal_coords=False),
               "C": dict(concentration=False)}
    for letter in letters:
        cfg = dataclasses.replace(cfg, **changes[letter])
    return cfg


def stage_switches(stage: Stage, epoch: int) -> dict[str, bool]:
    """The official per-epoch schedule (METHODS.md §1.6), as ``forward`` keyword arguments.

    epoch: 0-based epoch *within* the stage. Concentration: off in warm-up epoch 0 (the affinity is
    still random, pulling it together would only collapse it), on from warm-up epoch 1 and in every
    joint epoch. Truncation: off in warm-up epoch 0 and in the first two joint epochs, when the
    loss of every pair is still high (or jumps, after localisation switches on).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown UVC stage {stage!r}; expected one of {STAGES}")
    if stage == "warmup":
        return {"use_concentration": epoch >= 1, "use_truncation": epoch >= 1}
    return {"use_concentration": True, "use_truncation": epoch >= 2}


def _fp32(x: Tensor) -> torch.autocast:
    """Context in which affinities, softmaxes and losses run in float32 under any autocast."""
    return torch.autocast(x.device.type, enabled=False)


def _check_images(x: Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"UVC batch[{name!r}] must be RGB (B, 3, H, W), got {tuple(x.shape)}")
    if x.shape[-1] % 8 or x.shape[-2] % 8:
        raise ValueError(f"UVC batch[{name!r}] is {x.shape[-1]}x{x.shape[-2]}; sides must be "
                         "multiples of 8 (the colour decoder reconstructs 8x its feature grid)")


def _uvc_lab(rgb: Tensor) -> Tensor:
    """RGB in [0, 1] -> UVC's [-1, 1] Lab, the colour target and the auto-encoder's input (§1.2)."""
    with _fp32(rgb):
        return lab_to_uvc_normalised(rgb_to_lab(rgb.float()))


def _outline(images: Tensor, boxes: Tensor) -> Tensor:
    """``images`` (B, 3, H, W) RGB in [0, 1] with each box (B, 4) ``(x1, y1, x2, y2)`` (pixel edges)
    outlined in red, as UVC-track draws its box (`vidcorr.track.draw_box`)."""
    from vidcorr.track import draw_box

    frames = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    drawn = [draw_box(frame, (x1, y1, x2 - x1, y2 - y1), thickness=max(1, frame.shape[0] // 64))
             for frame, (x1, y1, x2, y2) in zip(frames, boxes.tolist())]
    return torch.from_numpy(np.stack(drawn)).to(images.device).permute(0, 3, 1, 2).float() / 255


class UVC(nn.Module):
    """The UVC training model: grey encoder + frozen Lab auto-encoder -> named losses.

    cfg: `UVCConfig`. autoencoder: the pre-trained Lab auto-encoder
    (`vidcorr.models.LabAutoencoder`, or anything with ``encode``: (B, 3, H, W) -> (B, D, H/8, W/8)
    and ``decode``: (B, D, h, w) -> (B, 3, 8h, 8w) on UVC-normalised Lab). It is frozen here: no
    gradients, always in eval mode, not in `trainable_parameters`.

    Attributes: ``encoder`` — the `FrameEncoder` ("gray-l" ResNet at output stride 8) to export as
    weights; ``autoencoder``; ``cfg``.
    """

    def __init__(self, cfg: UVCConfig, autoencoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder("uvc", arch=cfg.arch, out_layer=cfg.out_layer)
        if self.encoder.stride != 8:
            raise ValueError(f"UVC needs output stride 8; out_layer={cfg.out_layer!r} gives "
                             f"{self.encoder.stride}")
        self.autoencoder = autoencoder.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> UVC:
        super().train(mode)
        self.autoencoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the grey encoder's parameters (never the auto-encoder's)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def batch_kind(self, stage: Stage) -> str:
        """What the data pipeline must sample for ``stage``.

        ``"crop_pair"``: ``{"ref", "target"}`` two independent S x S crops of two frames (warm-up,
        and the joint stage of the −L ablation). ``"patch_frame"``: ``"ref"`` an S x S patch of
        frame 1, ``"target"`` the whole frame 2 resized + padded to T x T (joint stage).
        """
        if stage not in STAGES:
            raise ValueError(f"unknown UVC stage {stage!r}; expected one of {STAGES}")
        return "patch_frame" if stage == "joint" and self.cfg.localisation else "crop_pair"

    def forward(
        self,
        batch: dict[str, Tensor],
        stage: Stage = "warmup",
        *,
        use_concentration: bool = True,
        use_truncation: bool = True,
    ) -> dict[str, Tensor]:
        """Losses of one batch.

        batch: ``"ref"`` (B, 3, S, S) and ``"target"`` (B, 3, S, S) for ``"crop_pair"`` or
        (B, 3, T, T) for ``"patch_frame"`` (see `batch_kind`); RGB float in [0, 1], sides
        multiples of 8. use_concentration / use_truncation: the per-epoch switches of
        `stage_switches` (the config decides which terms exist at all).

        Returns scalar tensors: the active terms of `LOSS_TERMS` (unweighted), ``"loss"`` (the
        weighted total to back-propagate) and detached diagnostics: ``"truncated"`` (fraction of
        samples whose colour loss was zeroed) and, when localising, ``"box_size"`` (mean box side
        in target feature cells).
        """
        kind = self.batch_kind(stage)
        ref, target = batch["ref"], batch["target"]
        _check_images(ref, "ref")
        _check_images(target, "target")
        if kind == "crop_pair" and ref.shape != target.shape:
            raise ValueError(f"crop_pair batches need equal crops, got {tuple(ref.shape)} and "
                             f"{tuple(target.shape)}")
        f_ref, f_tgt = self.encoder(ref), self.encoder(target)
        lab_ref, lab_tgt = _uvc_lab(ref), _uvc_lab(target)
        with torch.no_grad():
            e_ref, e_tgt = self.autoencoder.encode(lab_ref), self.autoencoder.encode(lab_tgt)
        losses: dict[str, Tensor] = {}
        diagnostics: dict[str, Tensor] = {}
        with _fp32(ref):
            f_ref, f_tgt, e_ref, e_tgt = f_ref.float(), f_tgt.float(), e_ref.float(), e_tgt.float()
            if kind == "patch_frame":
                f_tgt, e_tgt, lab_tgt = self._localise(
                    f_ref, f_tgt, e_tgt, lab_tgt, lab_ref.shape[-2:], losses, diagnostics,
                    use_concentration=use_concentration)
            scores = affinity_logits(f_ref.flatten(2), f_tgt.flatten(2), self.cfg.temperature)
            self._matching_terms(scores, (e_ref, e_tgt), (lab_ref, lab_tgt), losses, diagnostics,
                                 use_truncation=use_truncation)
            if use_concentration and self.cfg.uses_local_concentration:
                hw_ref, hw_tgt = f_ref.shape[-2:], f_tgt.shape[-2:]
                losses["concentration_local"] = local_concentration(scores, hw_ref, hw_tgt).mean()
            total = self._total(losses)
        ordered = {name: losses[name] for name in LOSS_TERMS if name in losses}
        return {**ordered, "loss": total, **{k: v.detach() for k, v in diagnostics.items()}}

    def _localise(
        self, f_ref: Tensor, f_frame: Tensor, e_frame: Tensor, lab_frame: Tensor,
        lab_out_hw: tuple[int, int], losses: dict[str, Tensor], diagnostics: dict[str, Tensor],
        *, use_concentration: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Region-level localisation (UVC §3.2, METHODS.md §1.5) and the differentiable crop.

        f_ref: (B, C, h, w) patch features; f_frame: (B, C, H, W), e_frame: (B, D, H, W),
        lab_frame: (B, 3, 8H, 8W) of the whole target frame. -> the three cropped to the patch
        size: (B, C, h, w), (B, D, h, w), (B, 3, *lab_out_hw).
        """
        hw_ref, hw_frame = tuple(f_ref.shape[-2:]), tuple(f_frame.shape[-2:])
        coords, centre, mad_half, box = self._region(f_ref, f_frame)
        img_scale = box.new_tensor([lab_frame.shape[-1] / hw_frame[1], lab_frame.shape[-2] / hw_frame[0]])
        # METHODS.md §1.5 item 7: one box crops the grey features, the colour features and the Lab
        # ground truth; none is detached, so the colour loss also moves the box.
        f_crop = crop_boxes(f_frame, box, hw_ref)
        e_crop = crop_boxes(e_frame, box, hw_ref)
        lab_crop = crop_boxes(lab_frame, box * img_scale.repeat(2), tuple(lab_out_hw))
        if use_concentration and self.cfg.uses_global_concentration:
            scale = unit_scale(hw_frame, coords).view(1, 2)
            unit_centre = to_unit(centre.unsqueeze(2), hw_frame).squeeze(2)
            losses["concentration_global"] = global_concentration(
                to_unit(coords, hw_frame), unit_centre, mad_half * scale).mean()
        diagnostics["box_size"] = (box[:, 2:] - box[:, :2]).mean()
        return f_crop, e_crop, lab_crop

    def _region(self, f_ref: Tensor, f_frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Where the patch ``f_ref`` (B, C, h, w) lands in the frame ``f_frame`` (B, C, H, W): every
        patch cell's position (B, 2, h*w), their centre (B, 2), 2 x their mean absolute deviation
        (B, 2, detached) and the box (B, 4) ``(x1, y1, x2, y2)`` in the frame's feature cells."""
        hw_ref, hw_frame = tuple(f_ref.shape[-2:]), tuple(f_frame.shape[-2:])
        scores = affinity_logits(f_ref.flatten(2), f_frame.flatten(2), self.cfg.temperature)
        coords = locate_in_target(scores, hw_frame)  # (B, 2, N1): where each patch pixel lands
        centre, mad_half = region_from_coordinates(coords)  # Eq. 3 (differentiable), Eq. 4
        mad_half = mad_half.detach()  # the size is a statistic, not a target (coords2bbox)
        if self.cfg.box == "mad":
            half = mad_half
        else:  # center2bbox: a patch-sized box in feature units
            half = centre.new_tensor([hw_ref[1] / 2, hw_ref[0] / 2]).expand_as(centre)
        return coords, centre, mad_half, region_box(centre, half, hw_frame)

    def visualise(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """TensorBoard's image of a batch (`vidcorr.train.runlog.visualise`), RGB in [0, 1].

        What the colour loss sees: the target reconstructed from the reference's colours through
        the affinity (decoded by the auto-encoder), beside the two frames. A warm-up pair (crops of
        equal size, ``"crop_pair"``) gives ``{"ref_target_reconstructed": (B, 3, S, 3S)}``. A joint
        batch (``"patch_frame"``) gives ``{"patch_frame_box_reconstructed": (B, 3, T, 3T)}``: the
        patch (scaled to T), the target frame with the box it is localised to outlined in red, and
        that box reconstructed from the patch (scaled to T). A joint batch whose patch is as large as
        its frame reads as a pair.
        """
        from vidcorr.models.colour import lab_to_rgb, uvc_normalised_to_lab

        ref, target = batch["ref"].float(), batch["target"].float()
        f_ref, f_tgt = self.encoder(ref).float(), self.encoder(target).float()
        e_ref = self.autoencoder.encode(_uvc_lab(ref)).float()
        localised = ref.shape != target.shape
        if localised:  # as `_localise`: the reference is matched inside the box only
            cells = self._region(f_ref, f_tgt)[3]  # in the frame's feature cells
            box = cells * (target.shape[-1] / f_tgt.shape[-1])  # in pixels (8 a cell)
            f_tgt = crop_boxes(f_tgt, cells, tuple(f_ref.shape[-2:]))
        aff = affinity_logits(f_ref.flatten(2), f_tgt.flatten(2), self.cfg.temperature).softmax(dim=1)
        lab_n = decode_transported(e_ref, aff, f_tgt.shape[-2:], self.autoencoder.decode)
        reconstructed = lab_to_rgb(uvc_normalised_to_lab(lab_n)).clamp(0, 1)
        if not localised:
            return {"ref_target_reconstructed": torch.cat([ref, target, reconstructed], dim=-1)}
        side = tuple(target.shape[-2:])
        scaled = [torch.nn.functional.interpolate(x, size=side, mode="bilinear", align_corners=False)
                  for x in (ref, reconstructed)]
        return {"patch_frame_box_reconstructed": torch.cat([scaled[0], _outline(target, box), scaled[1]], dim=-1)}

    def _matching_terms(
        self, scores: Tensor, colour_feats: tuple[Tensor, Tensor], labs: tuple[Tensor, Tensor],
        losses: dict[str, Tensor], diagnostics: dict[str, Tensor], *, use_truncation: bool,
    ) -> None:
        """Fine-grained matching (UVC §3.3): colour reconstruction, the colour switch and the
        coordinate cycle on the (sub-)affinity. scores: (B, N1, N2) between the reference and the
        (cropped) target; colour_feats: auto-encoder features (B, D, h, w) of both; labs: their
        UVC Lab images (B, 3, 8h, 8w)."""
        cfg = self.cfg
        (e_ref, e_tgt), (lab_ref, lab_tgt) = colour_feats, labs
        hw_ref, hw_tgt = e_ref.shape[-2:], e_tgt.shape[-2:]
        aff = scores.softmax(dim=1)  # Eq. 2
        decode = self.autoencoder.decode
        recon = weighted_l1(decode_transported(e_ref, aff, hw_tgt, decode), lab_tgt, cfg.lab_weights)
        per_sample = recon
        # Eq. 8 with A^T for A_{2->1}, not renormalised, and the colour term's weighted L1 where the
        # paper says MSE: both as the official code (METHODS.md §1.6)
        if cfg.orthogonal:
            back = decode_transported(e_tgt, aff.transpose(1, 2), hw_ref, decode)
            switch = weighted_l1(back, lab_ref, cfg.lab_weights)
            per_sample = recon + cfg.orthogonal_weight * switch
        # `L1_loss`: truncate the *combined* per-sample loss, then average over the whole batch
        keep = kept_after_truncation(per_sample.detach(), cfg.colour_truncation if use_truncation else None)
        losses["colour"] = (recon * keep).mean()
        if cfg.orthogonal:
            losses["orthogonal"] = (switch * keep).mean()
        if cfg.uses_coordinate_cycle:
            losses["orthogonal_coords"] = coordinate_cycle(scores, hw_ref, hw_tgt).mean()
        diagnostics["truncated"] = 1.0 - keep.mean()

    def _total(self, losses: dict[str, Tensor]) -> Tensor:
        """colour + w_O (orthogonal + orthogonal_coords) + w_C (local + global concentration)."""
        weights = {"colour": 1.0, "orthogonal": self.cfg.orthogonal_weight,
                   "orthogonal_coords": self.cfg.orthogonal_weight,
                   "concentration_local": self.cfg.concentration_weight,
                   "concentration_global": self.cfg.concentration_weight}
        return sum(weights[name] * value for name, value in losses.items())
