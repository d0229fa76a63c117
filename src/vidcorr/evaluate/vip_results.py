"""VIP results without a model: score saved part predictions, build and print the results.

`score_vip` scores a folder of predictions (`vidcorr score vip`): mIoU from the class-map PNGs
(``eval``'s ``<video>/<frame>.png`` or another method's) and AP_part too when every video with part
instances has its ``instances/`` folder (`INSTANCES`), as ``eval`` writes it. The runner,
`vidcorr.evaluate.vip`, scores its own output, read back, with the same `score_folder`
(`score_video` per video), so ``score`` on ``eval``'s files gives ``eval``'s numbers exactly. Also
here: the per-video accumulators (`VideoScores`), the results dict (`_results`, schema in
docs/vip.md) and the printed table (`format_vip_table`).

Separate from the runner because none of it propagates labels or needs a model: the runner imports
this module, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.vip import VipDataset, VipFrame, VipVideo
from vidcorr.io.vip_predictions import read_class_map, read_instance_map, read_instance_scores
from vidcorr.metrics.segmentation import ConfusionMatrix, PartAP

INSTANCES = "instances"  # in a video's folder: its part-instance predictions, which AP_part is scored from


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


def score_video(dataset: VipDataset, video: VipVideo, folder: Path, skip_first_frame: bool, *,
                instances: bool, max_frames: int | None = None) -> VideoScores:
    """Score the predictions `write_video` saved in ``folder`` (or another method's class maps, one
    ``<frame>.png`` per annotated frame): mIoU and, with ``instances``, AP_part from ``instances/``;
    of the video's first ``max_frames`` frames only (None: all)."""
    scores = VideoScores.empty(dataset.num_classes)
    classes, instance_scores = _read_scores_json(dataset, folder) if instances else ({}, {})
    scored = video.frames[1 if skip_first_frame else 0:max_frames]
    _refuse_a_prefix(video, folder, scored, max_frames)
    for frame in scored:
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


def _refuse_a_prefix(video: VipVideo, folder: Path, scored: list[VipFrame], max_frames: int | None) -> None:
    """`InputError` where the class maps of ``scored`` stop after the video's first n frames (n >= 2:
    the maps of ``propagate --max-frames n``), naming the --max-frames that scores them; a map
    missing among present ones is left to `read_class_map`'s "not found"."""
    present = [(folder / f"{frame.name}.png").is_file() for frame in scored]
    if all(present) or any(present[present.index(False):]):
        return
    first_missing = scored[present.index(False)]
    n = video.frames.index(first_missing)  # frames 0..n-1 there (frame 0's map unread when skipped)
    if n < 2:
        return
    missing = len(present) - present.index(False)
    what = f"prediction not found ({missing} of the {len(scored)} scored frames of {video.name!r} are missing"
    if max_frames is None:
        fix = f"; a `propagate --max-frames {n}` run? score its first {n} frames with --max-frames {n})"
    else:
        fix = (f": --max-frames {max_frames} scores the first {min(max_frames, len(video.frames))} of its "
               f"{len(video.frames)} frames; score these with --max-frames {n})")
    raise InputError(folder / f"{first_missing.name}.png", what + fix)


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


def score_folder(dataset: VipDataset, folder: Path, skip_first_frame: bool, *, instances: bool,
                 max_frames: int | None = None) -> dict:
    """Score every video's saved predictions ``folder/<video>/`` (`score_video`, its first ``max_frames``
    frames) -> the results dict of `_results`: mIoU and, with ``instances``, AP_part of every video
    whose first frame has annotated part instances. `run_vip` scores its own output with ``instances``;
    `score_vip` only when every such video has its ``instances/`` folder (`missing_instances`)."""
    total, per_video = VideoScores.empty(dataset.num_classes), {}
    for video in dataset.videos:
        scores = score_video(dataset, video, folder / video.name, skip_first_frame,
                             instances=instances and video.frames[0].instances is not None, max_frames=max_frames)
        total.merge(scores)
        per_video[video.name] = scores.summary()
    return _results(dataset, total, per_video, skip_first_frame)


def score_vip(dataset: VipDataset, results_dir: str | Path, *, skip_first_frame: bool = False,
              max_frames: int | None = None) -> dict:
    """Score saved predictions ``results_dir/<video>/`` with `score_video`, as `run_vip` does: mIoU of
    the class maps ``<frame>.png`` (ids 0..num_classes-1), one per annotated frame (frame 0's may be
    absent with skip_first_frame), and AP_part of the part-instance files ``instances/`` when every
    video with annotated part instances has them (`missing_instances`); otherwise AP_part is null and
    ``protocol.instances`` says why (results of another tool or of an older ``eval vip``).

    max_frames: score only the first N frames of each video's frame folder (the class maps of
    ``propagate --max-frames N``), at least 2 (frame 0 is the annotation). Every frame there is
    annotated (VIP_Fine/Images holds the annotated frames only), so these are its first N
    annotated frames. None: every frame, and maps that stop after the first frames are refused.
    Returns `run_vip`'s results without what only a run knows (preset, preset_knobs, model, timing);
    ``results`` names the folder scored, ``max_frames`` the prefix (None: whole videos). Every file is
    read before anything is returned; nothing is written here.
    """
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2 (frame 0 and one propagated frame), got {max_frames}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    missing = missing_instances(dataset, results_dir)
    results = score_folder(dataset, results_dir, skip_first_frame, instances=missing is None, max_frames=max_frames)
    if missing is not None:
        results["protocol"]["instances"] = missing
    results.update(results=str(results_dir), max_frames=max_frames)
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
    prefix = f", first {results['max_frames']} frames" if results.get("max_frames") else ""
    lines += ["", f"global ({len(results['per_video'])} video(s){prefix}, frame 0 {first}): "
              f"mIoU {_cell(results['mIoU'])}  AP_part {_cell(results['AP_part'])}"
              f"  AP_part@0.5 {_cell(results['AP_part@0.5'])}"]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{'n/a':>7}" if value is None else f"{value:>7.4f}"
