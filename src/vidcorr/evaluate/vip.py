"""VIP part propagation benchmark: first-frame part classes and part instances -> every frame.

Protocol (METHODS.md §1.9, §3.4, §4.6, §6.3): frames are resized to a 560 x 560 square and the
first frame's labels are propagated with the preset's VIP variant (`vip_preset`). Two label sets
travel together in one run: one channel per part class present in frame 0 (scored with mIoU) and
one channel per part instance of frame 0 (scored with AP_part). Propagation is channel-wise, so
stacking them gives exactly the results of two separate runs for the cost of one affinity.
Frame 0 is scored by default, as UVC and STT do (it is the given annotation).

Predicted part instances: the argmax over the instance channels (decoded like any label map);
each keeps the class of its frame-0 instance and is scored by the mean, over its pixels, of its
channel's share of the soft labels (channel / sum of instance channels, bilinearly upsampled).

This module propagates: the presets' VIP variants, part-label encoding (`first_frame_labels`) and
decoding (`decode_parts`), and the runner (`run_vip`). ``eval`` saves every video's predictions
(`write_video`: class maps, and the part-instance maps with their scores under
``<video>/instances/``, `vidcorr.io.vip_predictions`) and scores them as read back with
`vidcorr.evaluate.vip_results.score_folder`, so a resumed run scores its kept videos exactly as it
would have. Scoring saved predictions without a model (`score_vip`, `vidcorr score vip`), the
results dict and the printed table live in `vidcorr.evaluate.vip_results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.evaluate.ranks import Ranks
from vidcorr.evaluate.runs import check_output_folder, write_item_folder
from vidcorr.evaluate.shards import run_items
from vidcorr.evaluate.timing import run_timing, timed_sequence
from vidcorr.evaluate.vip_results import INSTANCES, score_folder
from vidcorr.errors import InputError
from vidcorr.io.atomic import write_json_atomic
from vidcorr.io.masks import write_indexed_png
from vidcorr.io.video import open_frames
from vidcorr.io.vip import IGNORE, VipDataset, VipFrame, VipVideo
from vidcorr.io.vip_predictions import write_instance_map
from vidcorr.labels import channel_map, decode_label_map, one_hot_labels
from vidcorr.models.external import check_own_module
from vidcorr.presets import PropagationPreset, SizePolicy, preset_knobs
from vidcorr.propagate import Propagator


COMMAND = "eval vip"  # in the run record (`vidcorr.evaluate.runs.RUN_STAMP`)

VIP_SIZE = 560
# Instance channels are numbered in a uint8 map whose 255 marks ignored pixels, channel 0 is "no
# instance": 254 part instances at most in a first frame. The instance ids themselves have no
# ignore value: 255 is ignored in Category_ids only, while VIP's Instance_ids number instances 1..N
# (0 = none) and VIPSeg's segment maps number segments 1..N (0 = unlabelled), so an instance 255
# is a part instance like any other (and a GT instance that AP_part counts).
MAX_INSTANCES = IGNORE - 1
# What each preset's VIP test changes besides the square 560 input (METHODS.md §1.9, §3.4, §6.3):
# UVC test_mask_vip.py --pre_num 1; CRW --videoLen 4 (videowalk issue #10), and CRW takes the
# argmax at the 560 x 560 input (test.py's dump_predictions resizes to the resized frame it was
# given; eval_vip.py then resizes the class map to the GT), where at native size (DAVIS) input and
# frame are one; STT square window of side 32 (|d| <= 16).
VIP_CHANGES: dict[str, dict] = {
    "uvc": {"n_previous": 1},
    "crw": {"n_previous": 4, "output_resize": "input"},
    "stt": {"radius": 16},
    "timecycle": {},
}


def vip_preset(base: PropagationPreset, size: int | None = None) -> PropagationPreset:
    """The VIP variant of a preset: square ``size`` (default 560) input plus `VIP_CHANGES`."""
    changes = dict(VIP_CHANGES.get(base.name, {}))
    return base.with_overrides(size=SizePolicy("square", size or VIP_SIZE), **changes)


@dataclass(frozen=True)
class PartChannels:
    """Which class / part instance each propagated channel carries (frame 0 of one video).

    classes: (Kc,) class id per category channel; instances: (Ki,) instance id per instance
    channel (instances[0] = 0, no instance), empty when the video has no instance annotation;
    instance_classes: {instance id: class id}.
    """

    classes: np.ndarray
    instances: np.ndarray
    instance_classes: dict[int, int]


def first_frame_labels(category: np.ndarray, instances: tuple[np.ndarray, dict[int, int]] | None
                       ) -> tuple[PartChannels, Tensor]:
    """category: (H, W) class ids (255 ignored); instances: ((H, W) ids, {id: class}) or None, of at
    most `MAX_INSTANCES` instances (`_first_annotation` refuses more, naming the file)
    -> (channels, labels (Kc + Ki, H, W)). Only classes / instances present get a channel."""
    classes = np.unique(category[category != IGNORE])
    labels = [one_hot_labels(channel_map(category, classes, IGNORE), len(classes))]
    inst_ids, inst_classes = np.zeros(0, np.int64), {}
    if instances is not None:
        ids, inst_classes = instances
        inst_ids = np.union1d([0], np.unique(ids))
        labels.append(one_hot_labels(channel_map(ids, inst_ids, ignored=None), len(inst_ids)))
    return PartChannels(classes, inst_ids, inst_classes), torch.cat(labels)


def decode_parts(soft: Tensor, parts: PartChannels, propagator: Propagator
                 ) -> tuple[np.ndarray, np.ndarray | None, dict[int, float]]:
    """soft: (Kc + Ki, h, w) -> (class map (H, W) uint8, instance ids (H, W) or None, {id: score})."""
    preset, input_hw, original_hw = propagator.preset, propagator.input_hw, propagator.original_hw
    kc = len(parts.classes)
    index = decode_label_map(soft[:kc], preset, input_hw, original_hw).cpu().numpy()
    category = parts.classes[index].astype(np.uint8)
    if not len(parts.instances):
        return category, None, {}
    inst_index = decode_label_map(soft[kc:], preset, input_hw, original_hw)
    scores = instance_scores(soft[kc:], inst_index)
    inst_index = inst_index.cpu().numpy()
    return category, parts.instances[inst_index], {int(i): float(s) for i, s in zip(parts.instances, scores)}


def instance_scores(soft: Tensor, index: Tensor) -> Tensor:
    """Mean share of each instance channel over its predicted pixels.

    soft: (K, h, w) instance channels; index: (H, W) long, the decoded channel per pixel -> (K,).
    """
    share = soft / soft.sum(dim=0, keepdim=True).clamp_min(1e-12)
    up = F.interpolate(share[None], size=tuple(index.shape), mode="bilinear", align_corners=False)[0]
    picked = up.gather(0, index[None].to(up.device))[0].flatten()
    flat = index.flatten().to(up.device)
    sums = torch.zeros(len(soft), dtype=up.dtype, device=up.device).index_add_(0, flat, picked)
    counts = torch.bincount(flat, minlength=len(soft))
    return (sums / counts.clamp_min(1)).cpu()


def write_video(propagator: Propagator, dataset: VipDataset, video: VipVideo, folder: Path) -> int:
    """Propagate one video's frame-0 labels and write its predictions to ``folder``: ``<frame>.png``
    (class maps) and, for a video with part instances, ``instances/<frame>.png`` (instance ids,
    16-bit) and ``instances/scores.json`` (`read_instance_scores`); -> the frames written."""
    source = open_frames(video.frames_dir)
    category0, instances0 = _first_annotation(dataset, video.frames[0], tuple(source.size))
    parts, labels = first_frame_labels(category0, instances0)
    first_pred = (category0, None if instances0 is None else instances0[0],
                  {i: 1.0 for i in ([] if instances0 is None else instances0[1])})
    preds = (decode_parts(soft, parts, propagator) for soft in propagator.run(source, labels))
    instance_scores_per_frame = {}
    for t, frame in enumerate(video.frames):
        category, inst_ids, inst_scores = first_pred if t == 0 else next(preds)
        write_indexed_png(folder / f"{frame.name}.png", category)
        if inst_ids is not None:
            write_instance_map(folder / INSTANCES / f"{frame.name}.png", inst_ids)
            instance_scores_per_frame[frame.name] = inst_scores
    if instances0 is not None:
        write_json_atomic({"classes": parts.instance_classes, "scores": instance_scores_per_frame},
                          folder / INSTANCES / "scores.json")
    return len(video.frames)


def _first_annotation(dataset: VipDataset, first: VipFrame, frame_hw: tuple[int, int]
                      ) -> tuple[np.ndarray, tuple[np.ndarray, dict[int, int]] | None]:
    """Frame 0's class map (H, W) and part instances (`VipDataset.instance_map`), checked for what
    propagating them needs; `InputError` naming the file: a class map not of the frames' size (H, W)
    or of no class, an instance map not of the class map's size or of more instances than
    `MAX_INSTANCES`."""
    category, instances = dataset.category_map(first), dataset.instance_map(first)
    if category.shape != frame_hw:
        raise InputError(first.category, f"annotation is {category.shape[1]}x{category.shape[0]} "
                         f"but frames are {frame_hw[1]}x{frame_hw[0]}")
    if not np.any(category != IGNORE):
        raise InputError(first.category, "the first annotation holds no class (only 255 = ignore)")
    if instances is None:
        return category, None
    ids = instances[0]
    if ids.shape != category.shape:
        raise InputError(first.instances, f"instance map is {ids.shape[1]}x{ids.shape[0]} but its class map "
                                          f"{first.category.name} is {category.shape[1]}x{category.shape[0]}")
    count = len(np.unique(ids[ids != 0]))
    if count > MAX_INSTANCES:
        raise InputError(first.instances, f"{count} part instances in the first frame; at most {MAX_INSTANCES} "
                                          "can be propagated")
    return category, instances


def run_vip(
    encoder: nn.Module,
    preset: PropagationPreset,
    dataset: VipDataset,
    out_dir: str | Path,
    *,
    skip_first_frame: bool = False,
    device: str = "cpu",
    batch_size: int = 4,
    model_info: dict | None = None,
    resume: bool = False,
    ranks: Ranks | None = None,
) -> dict | None:
    """Propagate and score every video; write ``out_dir/<video>/`` (`write_video`) and ``results.json``.

    preset: the protocol as run (usually `vip_preset` of a named preset). Returns the results
    dict (schema in docs/vip.md). ``out_dir`` must not exist or be empty unless ``resume``: keep
    the videos an interrupted run of the same model, protocol, layout and split finished there
    (`vidcorr.evaluate.runs.recorded_run`; another run is refused, naming what changed) and
    propagate only the rest. Each video folder is written under a temporary name and renamed when
    complete; every video is scored from its saved predictions, kept or not (`score_video`), so a
    resumed run's results equal an uninterrupted one's (the times are each video's, from the
    session that propagated it). ranks: under torchrun each rank propagates its share of the videos;
    rank 0 alone scores and returns the results, the others None (docs/metrics.md, "Several processes").
    """
    ranks = ranks or Ranks()  # None: a single process, rank 0 of 1
    out_dir = Path(out_dir)

    def prepare() -> Propagator:  # on every rank, before OUT is created
        check_output_folder(out_dir, resume, COMMAND)
        propagator = Propagator(encoder, preset, device=device, batch_size=batch_size)
        check_own_module(propagator.encoder, device)  # a module given from Python, checked as --encoder's is
        return propagator

    propagator = ranks.agree(prepare)
    stamp = {"command": COMMAND, "model": model_info or {}, "preset": preset_knobs(preset), "layout": dataset.layout}
    if dataset.layout == "vip":  # the VIPSeg snippet has no split lists: every video is used
        stamp["split"] = dataset.split
    videos = {video.name: video for video in dataset.videos}
    record = run_items(ranks, out_dir, stamp, list(videos), resume=resume, done=lambda name: (out_dir / name).is_dir(),
                       work=lambda name: timed_sequence(propagator, lambda: write_item_folder(
                           out_dir, name, partial(write_video, propagator, dataset, videos[name]))),
                       desc=f"VIP ({preset.name})", unit="video", sizes=[len(v.frames) for v in videos.values()])
    if not ranks.is_main:
        return None
    results = score_folder(dataset, out_dir, skip_first_frame, instances=True)
    results.update(preset=preset.name, preset_knobs=preset_knobs(preset), model=model_info or {},
                   timing=run_timing(record, propagator.device))
    write_json_atomic(results, out_dir / "results.json")
    return results
