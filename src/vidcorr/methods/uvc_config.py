"""UVC's configuration: the `UVCConfig` fields, the named recipes, the Table 2 ablations, the checks a
training recipe's sizes must pass, and the official per-epoch schedule of the loss switches
(METHODS.md §1.6). The model that reads them is `vidcorr.methods.uvc`, which re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vidcorr.strict_dict import NON_NEGATIVE_NUMBER, DictConfig, refuse_non_finite, refuse_out_of_range

if TYPE_CHECKING:  # only for the annotation: the methods do not import the trainer
    from vidcorr.train.config import DataConfig

Stage = Literal["warmup", "joint"]
STAGES = ("warmup", "joint")


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


def check_sizes(cfg: UVCConfig, data: DataConfig, stages: Sequence[str], processes: int = 1) -> None:
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
