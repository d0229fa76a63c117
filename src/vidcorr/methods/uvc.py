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
colour-loss truncation; the trainer passes it to ``forward``. It, `UVCConfig`, the recipes and the
ablations are defined in `vidcorr.methods.uvc_config` and importable from here too.
"""

from __future__ import annotations

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
from vidcorr.methods.uvc_config import (  # noqa: F401  (all importable from here, as before the split)
    RECIPES,
    STAGES,
    Stage,
    UVCConfig,
    ablate,
    check_sizes,
    recipe,
    stage_switches,
)
from vidcorr.models import build_encoder, lab_to_uvc_normalised, rgb_to_lab

LOSS_TERMS = ("colour", "orthogonal", "orthogonal_coords", "concentration_local",
              "concentration_global")


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
