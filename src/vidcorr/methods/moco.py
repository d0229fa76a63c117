"""MoCo v2 (He et al. 2020; Chen et al. 2020): image-level contrastive learning, STT's spatial stage
(METHODS.md §4.2, §10.5; docs/stt.md).

STT's temporal stage needs a frozen teacher trained by image-level contrastive learning; the
release points to the official MoCo code and ImageNet. With no ImageNet here, we train it on the
frames of our unlabelled videos (batch kind ``"two_views"``: two augmentations of one frame).

A query encoder (ResNet with standard strides, layer4, global average pool, a 2-layer MLP head to
``dim``) and a key encoder that follows it by momentum; the keys of past batches wait in a queue of
``queue_size`` negatives. Loss: cross-entropy of picking the positive key among
``1 + queue_size`` at temperature ``temperature`` (InfoNCE). Exported: the query encoder up to
layer4 (stride 32, RGB), the teacher ``vidcorr train stt --teacher`` takes.

Single-process stand-in for shuffling BN across GPUs: the keys are encoded in ``key_splits``
groups of a random permutation of the batch, so a query and its key never share batch statistics
(the official code shuffles across GPUs; one GPU per group here). Under DDP every process
enqueues the keys of all processes, in rank order, as the release does (``concat_all_gather``), so
the queues stay identical and advance by the global batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.models import build_encoder
from vidcorr.strict_dict import (
    BELOW_ONE_FROM_ZERO,
    POSITIVE_INTEGER,
    POSITIVE_NUMBER,
    DictConfig,
    one_of,
    refuse_non_finite,
    refuse_out_of_range,
)

STAGES = ("contrastive",)


@dataclass(frozen=True)
class MoCoConfig(DictConfig):
    """MoCo v2's knobs; defaults as released (ImageNet: queue 65536) except where noted.

    arch: ResNet depth (the teacher and the STT student must match when the student starts from
        it). dim: embedding size (128). queue_size: negatives kept (release 65536; our videos
        give ~12k frames, so recipes use a few thousand). momentum: key encoder EMA (0.999).
    temperature: InfoNCE temperature (0.2 in v2). key_splits: groups the keys' batch norm sees.
    """

    LABEL = "MoCo config"  # in errors: "unknown MoCo config keys"

    arch: str = "resnet50"
    dim: int = 128
    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float = 0.2
    key_splits: int = 4

    def __post_init__(self) -> None:
        refuse_non_finite(self)  # first: its message for a nan or inf value, not the range's
        # each bad field by name and value, as UVC's and CycleTime's configs
        refuse_out_of_range(self, {"arch": one_of(("resnet18", "resnet50")), "dim": POSITIVE_INTEGER,
                                   "queue_size": POSITIVE_INTEGER, "key_splits": POSITIVE_INTEGER,
                                   "momentum": BELOW_ONE_FROM_ZERO, "temperature": POSITIVE_NUMBER})


RECIPES: dict[str, dict[str, Any]] = {
    "moco": {},
    "moco-cpu": dict(arch="resnet18", queue_size=4096),
}


def config_for_recipe(base: str | None, model: dict[str, Any]) -> MoCoConfig:
    """`MoCoConfig` of a training recipe (``base`` in `RECIPES`, default "moco", plus ``[model]``)."""
    name = base or "moco"
    if name not in RECIPES:
        raise ValueError(f"unknown MoCo recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return MoCoConfig.from_dict({**RECIPES[name], **model})


def check_sizes(cfg: MoCoConfig, crop: int, batch: int) -> None:
    """ValueError where the key encoder's batch norm would see one value per channel: a group of one
    image (`MoCo._keys` encodes a ``batch`` of one process in ``key_splits`` groups) at a 1x1 layer4
    (a crop of at most 32 at stride 32). Checked when `vidcorr train moco` builds its config: torch
    refused it only at the first step ("Expected more than 1 value per channel when training")."""
    side = -(-crop // 32)  # a standard ResNet's layer4 (sizes round up at every stride 2)
    smallest = min(len(group) for group in torch.arange(batch).chunk(min(cfg.key_splits, batch)))
    if side * side * smallest < 2:
        raise ValueError(f"[data] crop = {crop} with batch_size {batch}: MoCo encodes the keys in groups of "
                         f"{smallest} image (key_splits {cfg.key_splits}), whose batch norm at the {side}x{side} "
                         "layer4 then sees one value per channel; use a crop above 32, or a batch_size of "
                         f"{2 * cfg.key_splits} per process (groups of 2)")


def _gathered(keys: Tensor) -> Tensor:
    """keys (N, dim) of this process -> (world * N, dim), every process's in rank order; the
    keys alone outside DDP. Every rank's batch has the same size (the loader drops ragged ends)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys
    parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts)


def _projector(channels: int, dim: int) -> nn.Sequential:
    """MoCo v2's MLP head: linear, ReLU, linear (the release's fc replaced by two layers)."""
    return nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, dim))


class MoCo(nn.Module):
    """Query encoder + head, momentum key encoder + head, queue -> InfoNCE loss.

    Attributes: ``encoder`` — the exported `FrameEncoder` (RGB, strides (1, 2, 2, 2), max-pool,
    layer4); ``queue`` (dim, queue_size) and ``queue_pointer``: buffers, so checkpoints keep them.
    """

    def __init__(self, cfg: MoCoConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.arch, strides=(1, 2, 2, 2), out_layer="layer4")
        self.projector = _projector(self.encoder.out_channels, cfg.dim)
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.dim, cfg.queue_size), dim=0))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.projector.parameters()]

    def batch_kind(self, stage: str) -> str:
        """``"two_views"``: {"query", "key"} (3, S, S) per sample (`TwoViewAugment`)."""
        if stage not in STAGES:
            raise ValueError(f"unknown MoCo stage {stage!r}; expected one of {STAGES}")
        return "two_views"

    def _embed(self, encoder: nn.Module, projector: nn.Module, images: Tensor) -> Tensor:
        """images (N, 3, S, S) in [0, 1] -> L2-normalised embeddings (N, dim), float32."""
        pooled = encoder(images).float().mean(dim=(2, 3))
        return F.normalize(projector(pooled).float(), dim=1)

    @torch.no_grad()
    def _follow_query(self) -> None:
        """Key encoder <- momentum * key + (1 - momentum) * query, parameters only: the key encoder's
        BatchNorm keeps its own running statistics, from its own forward passes (MoCo's
        `_momentum_update_key_encoder` does the same)."""
        m = self.cfg.momentum
        pairs = [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]
        for query, key in pairs:
            for q, k in zip(query.parameters(), key.parameters(), strict=True):
                k.mul_(m).add_(q.detach(), alpha=1 - m)

    @torch.no_grad()
    def _keys(self, images: Tensor) -> Tensor:
        """Key embeddings of images (N, 3, S, S), encoded in shuffled groups (see module doc)."""
        order = torch.randperm(images.shape[0], device=images.device)
        groups = [self._embed(self.key_encoder, self.key_projector, chunk)
                  for chunk in images[order].chunk(min(self.cfg.key_splits, images.shape[0]))]
        keys = torch.empty(images.shape[0], self.cfg.dim, device=images.device)
        keys[order] = torch.cat(groups)
        return keys

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        """Write keys (N, dim) over the oldest queue entries (wrapping around)."""
        size = self.cfg.queue_size
        if keys.shape[0] > size:
            raise ValueError(f"a batch of {keys.shape[0]} keys does not fit a queue of {size}")
        slots = (self.queue_pointer + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, slots] = keys.T
        self.queue_pointer.copy_((self.queue_pointer + keys.shape[0]) % size)

    def forward(self, batch: dict[str, Tensor], stage: str = "contrastive") -> dict[str, Tensor]:
        """batch: ``"query"``, ``"key"`` (B, 3, S, S) RGB in [0, 1], two views of each image.
        Returns ``"loss"`` (InfoNCE) and the detached diagnostic ``"accuracy"`` (share of queries
        whose positive key scores highest)."""
        self.batch_kind(stage)
        query = self._embed(self.encoder, self.projector, batch["query"])
        if self.training:
            self._follow_query()
        keys = self._keys(batch["key"])
        positive = (query * keys).sum(dim=1, keepdim=True)  # (B, 1)
        negative = query @ self.queue.clone().detach()  # (B, K)
        logits = torch.cat([positive, negative], dim=1) / self.cfg.temperature
        labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        loss = F.cross_entropy(logits, labels)
        if self.training:
            self._enqueue(_gathered(keys))
        accuracy = (logits.argmax(dim=1) == 0).float().mean().detach()
        return {"loss": loss, "accuracy": accuracy}

    @torch.no_grad()
    def visualise(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The two views of each image side by side."""
        return {"query_key": torch.cat([batch["query"].float(), batch["key"].float()], dim=-1)}

    def export(self) -> tuple[nn.Module, None]:
        return self.encoder, None

    @torch.no_grad()
    def initialised(self) -> None:
        """The encoder was loaded from weights (``--init``): the key encoder starts as its copy."""
        self.key_encoder.load_state_dict(self.encoder.state_dict())
