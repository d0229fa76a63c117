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

``eval`` saves every video's predictions (`write_video`: class maps, and the part-instance maps with
their scores under ``<video>/instances/``, `vidcorr.io.vip_predictions`) and scores them as read
back (`score_video`), so a resumed run scores its kept videos exactly as it would have.
`score_vip` scores saved predictions with the same `score_folder` as ``eval``, without a model
(`vidcorr score vip`): mIoU from the class-map PNGs (``eval``'s ``<video>/<frame>.png`` or another
method's) and AP_part too when every video with part instances has its ``instances/`` folder, as
``eval`` writes it.
"""

from __future__ import annotations

import logging
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
from vidcorr.errors import InputError
from vidcorr.io.atomic import write_json_atomic
from vidcorr.io.masks import write_indexed_png
from vidcorr.io.video import open_frames
from vidcorr.io.vip import IGNORE, VipDataset, VipFrame, VipVideo
from vidcorr.io.vip_predictions import read_class_map, read_instance_map, read_instance_scores, write_instance_map
from vidcorr.labels import decode_label_map, one_hot_labels
from vidcorr.metrics.segmentation import ConfusionMatrix, PartAP
from vidcorr.presets import PropagationPreset, SizePolicy, preset_knobs
from vidcorr.propagate import Propagator

log = logging.getLogger(__name__)

COMMAND = "eval vip"  # in the run record (`vidcorr.evaluate.runs.RUN_STAMP`)
INSTANCES = "instances"  # in a video's folder: its part-instance predictions, which AP_part is scored from

VIP_SIZE = 560
# Instance channels are numbered in a uint8 map whose 255 marks ignored pixels, channel 0 is "no
# instance": 254 part instances at most in a first frame. The instance ids themselves have no
# ignore value: 255 is ignored in Category_ids only, while VIP's Instance_ids number instances 1..N
# (0 = none) and VIPSeg's segment maps number segments 1..N (0 = unlabelled), so an instance 255
# is a part instance like any other (and a GT instance that AP_part counts).
MAX_INSTANCES = IGNORE - 1
# What each preset's VIP test changes besides the square 560 input (METHODS.md §1.9, §3.4, §6.3):
# UVC test_mask_vip.py --pre_num 1; CRW --videoLen 4 (videowalk issue #10); STT square window of
# side 32 (|d| <= 16).
VIP_CHANGES: dict[str, dict] = {
    "uvc": {"n_previous": 1},
    "crw": {"n_previous": 4},
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
    labels = [one_hot_labels(_channel_map(category, classes), len(classes))]
    inst_ids, inst_classes = np.zeros(0, np.int64), {}
    if instances is not None:
        ids, inst_classes = instances
        inst_ids = np.union1d([0], np.unique(ids))
        labels.append(one_hot_labels(_channel_map(ids, inst_ids, ignored=None), len(inst_ids)))
    return PartChannels(classes, inst_ids, inst_classes), torch.cat(labels)


def _channel_map(index: np.ndarray, values: np.ndarray, ignored: int | None = IGNORE) -> np.ndarray:
    """Ids (H, W) -> uint8 channel numbers (position in ``values``), 255 (void to `one_hot_labels`)
    where the id is ``ignored`` or not in ``values``; ``ignored=None`` for ids without an ignore value."""
    channels = np.searchsorted(values, index)
    known = channels < len(values)
    if ignored is not None:
        known &= index != ignored
    known[known] = values[channels[known]] == index[known]
    return np.where(known, channels, IGNORE).astype(np.uint8)


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


@dataclass
class VideoScores:
    """Per-video accumulators (merged into the global ones at the end)."""

    confusion: ConfusionMatrix
    part_ap: PartAP
    frames: int = 0

    @classmethod
    def empty(cls, num_classes: int) -> VideoScores:
        return cls(ConfusionMatrix(num_classes), PartAP())

    def merge(self, other: VideoScores) -> None:
        self.confusion.merge(other.confusion)
        self.part_ap.merge(other.part_ap)
        self.frames += other.frames

    def summary(self) -> dict:
        """{"mIoU", "AP_part", "AP_part@0.5", "frames"}: one video's line of results.json."""
        ap = self.part_ap.results()
        return {"mIoU": self.confusion.miou(), "AP_part": ap["AP_part"], "AP_part@0.5": ap["AP_part@0.5"],
                "frames": self.frames}


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


def score_video(dataset: VipDataset, video: VipVideo, folder: Path, skip_first_frame: bool, *,
                instances: bool) -> VideoScores:
    """Score the predictions `write_video` saved in ``folder`` (or another method's class maps, one
    ``<frame>.png`` per annotated frame): mIoU and, with ``instances``, AP_part from ``instances/``."""
    scores = VideoScores.empty(dataset.num_classes)
    classes, instance_scores = _read_scores_json(dataset, folder) if instances else ({}, {})
    for frame in video.frames[1 if skip_first_frame else 0:]:
        path = folder / f"{frame.name}.png"
        gt, pred = dataset.category_map(frame), read_class_map(path)
        try:
            scores.confusion.update(gt, pred)
        except ValueError as error:  # a class id outside the classes where the GT is not ignored
            raise InputError(path, str(error)) from None
        scores.frames += 1
        if instances:
            gt_ids, gt_classes = dataset.instance_map(frame)
            pred_ids, frame_scores = _read_frame_instances(folder, frame, gt_ids.shape, classes, instance_scores)
            scores.part_ap.add_frame(gt_ids, gt_classes, pred_ids, classes, frame_scores)
    return scores


def _read_scores_json(dataset: VipDataset, folder: Path) -> tuple[dict[int, int], dict[str, dict[int, float]]]:
    """``folder/instances/scores.json`` (`read_instance_scores`); `InputError` naming it when an
    instance's class is not one of the dataset's (its AP would be counted under no class)."""
    path = folder / INSTANCES / "scores.json"
    classes, instance_scores = read_instance_scores(path)
    bad = {i: c for i, c in classes.items() if not 0 <= c < dataset.num_classes}
    if bad:
        i, c = next(iter(bad.items()))
        raise InputError(path, f"part instance {i} has class {c}, outside 0..{dataset.num_classes - 1} "
                               f"({len(bad)} such instance(s))")
    return classes, instance_scores


def _read_frame_instances(folder: Path, frame: VipFrame, gt_hw: tuple[int, int], classes: dict[int, int],
                          instance_scores: dict[str, dict[int, float]]) -> tuple[np.ndarray, dict[int, float]]:
    """One frame's saved part-instance map and scores -> ((H, W) ids, {id: score}); `InputError`
    naming the file when the map is not the annotation's size (eval writes it at the frame's, so
    another size is not its output) or holds an id ``scores.json`` gives no class or no score in
    this frame (AP_part could not rank or class it)."""
    path, table = folder / INSTANCES / f"{frame.name}.png", folder / INSTANCES / "scores.json"
    pred_ids = read_instance_map(path)
    if pred_ids.shape != gt_hw:
        raise InputError(path, f"part-instance map is {pred_ids.shape[1]}x{pred_ids.shape[0]} but its annotation "
                               f"{frame.instances} is {gt_hw[1]}x{gt_hw[0]}")
    if frame.name not in instance_scores:
        raise InputError(table, f"no scores of frame {frame.name}")
    frame_scores = instance_scores[frame.name]
    unknown = [i for i in np.unique(pred_ids).tolist() if i != 0 and (i not in classes or i not in frame_scores)]
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InputError(path, f"part-instance id(s) {shown} have no class or no score of frame {frame.name} in "
                               f"{table} (ids with both: {sorted(set(classes) & set(frame_scores))})")
    return pred_ids, frame_scores


def score_folder(dataset: VipDataset, folder: Path, skip_first_frame: bool, *, instances: bool) -> dict:
    """Score every video's saved predictions ``folder/<video>/`` (`score_video`) -> the results
    dict of `_results`: mIoU and, with ``instances``, AP_part of every video whose first frame has
    annotated part instances. `run_vip` scores its own output with ``instances``; `score_vip` only
    when every such video has its ``instances/`` folder (`missing_instances`)."""
    total, per_video = VideoScores.empty(dataset.num_classes), {}
    for video in dataset.videos:
        scores = score_video(dataset, video, folder / video.name, skip_first_frame,
                             instances=instances and video.frames[0].instances is not None)
        total.merge(scores)
        per_video[video.name] = scores.summary()
    return _results(dataset, total, per_video, skip_first_frame)


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
    out_dir = Path(out_dir)

    def prepare() -> Propagator:  # on every rank, before OUT is created
        check_output_folder(out_dir, resume, COMMAND)
        return Propagator(encoder, preset, device=device, batch_size=batch_size)

    propagator = (ranks or Ranks()).agree(prepare)
    stamp = {"command": COMMAND, "model": model_info or {}, "preset": preset_knobs(preset), "layout": dataset.layout}
    if dataset.layout == "vip":  # the VIPSeg snippet has no split lists: every video is used
        stamp["split"] = dataset.split
    videos = {video.name: video for video in dataset.videos}
    record = run_items(ranks, out_dir, stamp, list(videos), resume=resume, done=lambda name: (out_dir / name).is_dir(),
                       work=lambda name: timed_sequence(propagator, lambda: write_item_folder(
                           out_dir, name, partial(write_video, propagator, dataset, videos[name]))),
                       desc=f"VIP ({preset.name})", unit="video", sizes=[len(v.frames) for v in videos.values()])
    if ranks is not None and not ranks.is_main:
        return None
    results = score_folder(dataset, out_dir, skip_first_frame, instances=True)
    results.update(preset=preset.name, preset_knobs=preset_knobs(preset), model=model_info or {},
                   timing=run_timing(record, propagator.device))
    write_json_atomic(results, out_dir / "results.json")
    return results


def score_vip(dataset: VipDataset, results_dir: str | Path, *, skip_first_frame: bool = False) -> dict:
    """Score saved predictions ``results_dir/<video>/`` with `score_video`, as `run_vip` does: mIoU of
    the class maps ``<frame>.png`` (ids 0..num_classes-1), one per annotated frame (frame 0's may be
    absent with skip_first_frame), and AP_part of the part-instance files ``instances/`` when every
    video with annotated part instances has them (`missing_instances`); otherwise AP_part is null and
    ``protocol.instances`` says why (results of another tool or of an older ``eval vip``).

    Returns `run_vip`'s results without what only a run knows (preset, preset_knobs, model, timing);
    ``results`` names the folder scored. Every file is read before anything is returned; nothing is
    written here.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    missing = missing_instances(dataset, results_dir)
    results = score_folder(dataset, results_dir, skip_first_frame, instances=missing is None)
    if missing is not None:
        results["protocol"]["instances"] = missing
    results["results"] = str(results_dir)
    return results


def missing_instances(dataset: VipDataset, results_dir: Path) -> str | None:
    """None when every video with annotated part instances has ``results_dir/<video>/instances/``;
    else why AP_part cannot be scored (one line, the first such video named). All or none: AP_part
    over some of the videos would not be the run's."""
    wanted = [v.name for v in dataset.videos if v.frames[0].instances is not None]
    lacking = [name for name in wanted if not (results_dir / name / INSTANCES).is_dir()]
    if not lacking:
        return None
    return (f"not scored: {results_dir / lacking[0] / INSTANCES} not found ({len(lacking)} of {len(wanted)} "
            "video(s) lack part-instance predictions: eval vip saves them beside the class maps; results of "
            "another tool or an older vidcorr hold class maps only)")


def _results(dataset: VipDataset, total: VideoScores, per_video: dict, skip_first_frame: bool) -> dict:
    ap = total.part_ap.results()
    iou = total.confusion.iou()
    names = dataset.class_names
    return {
        "mIoU": total.confusion.miou(),
        "AP_part": ap["AP_part"],
        "AP_part@0.5": ap["AP_part@0.5"],
        "AP_part_per_threshold": ap["per_threshold"],
        "per_class": {
            "IoU": {names[c]: float(v) for c, v in enumerate(iou) if not np.isnan(v)},
            "AP_part": {names[c]: v for c, v in ap["per_class"].items()},
        },
        "per_video": per_video,
        "skip_first_frame": skip_first_frame,
        "protocol": {
            "benchmark": "VIP" if dataset.layout == "vip" else "VIPSeg snippet (VIP protocol, smoke test)",
            "layout": dataset.layout, "n_videos": len(dataset), "scored_frames": total.frames,
            "num_classes": dataset.num_classes,
            "instances": "annotated" if ap["AP_part"] is not None else "none: AP_part not computed",
            "note": "mIoU from one confusion matrix over all scored frames (255 ignored); AP_part = mean "
                    "over IoU 0.1..0.9 of the class-mean region AP of part instances (docs/vip.md)",
        },
    }


def format_vip_table(results: dict) -> str:
    """Per-video mIoU / AP_part table followed by the global line."""
    width = max([len("video"), *map(len, results["per_video"])])
    lines = [f"{'video':<{width}}  frames     mIoU  AP_part  AP_part@0.5"]
    for name, v in results["per_video"].items():
        lines.append(f"{name:<{width}}  {v['frames']:>6d}  {_cell(v['mIoU'])}  {_cell(v['AP_part'])}  "
                     f"{_cell(v['AP_part@0.5']):>11}")
    first = "skipped" if results["skip_first_frame"] else "included"
    lines += ["", f"global ({len(results['per_video'])} video(s), frame 0 {first}): mIoU {_cell(results['mIoU'])}"
              f"  AP_part {_cell(results['AP_part'])}  AP_part@0.5 {_cell(results['AP_part@0.5'])}"]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{'n/a':>7}" if value is None else f"{value:>7.4f}"
