"""JHMDB keypoint propagation benchmark: first-frame joints -> every frame, scored with PCK.

Protocol (METHODS.md §1.9, §3.4, §4.6, §6.2): every frame is resized to a 320 x 320 square, the
15 first-frame joints become Gaussian heatmaps (`vidcorr.keypoints`), are propagated with the
chosen preset's JHMDB variant (`jhmdb_preset`), decoded per frame and scored with PCK@0.1/0.2
(`vidcorr.metrics.pck`). Frame 0 is skipped by default (UVC, CRW).

`score_jhmdb` scores saved prediction files (``predictions/<class>/<video>.json``, ours or another
method's in that format, or the keypoints.json of ``vidcorr propagate --keypoints``) without a
model (`vidcorr score jhmdb`). Both paths score the coordinates
as read back from the file, with the same `score_folder`, so ``score`` on ``eval``'s files gives
``eval``'s numbers exactly.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from torch import nn

from vidcorr.errors import InputError
from vidcorr.evaluate.ranks import Ranks
from vidcorr.evaluate.runs import check_output_folder
from vidcorr.evaluate.shards import run_items
from vidcorr.evaluate.timing import run_timing, timed_sequence
from vidcorr.io.atomic import write_json_atomic
from vidcorr.io.jhmdb import JOINT_NAMES, NUM_JOINTS, JhmdbDataset, JhmdbVideo
from vidcorr.io.video import open_frames
from vidcorr.keypoints import HeatmapCodec, codec_for, propagate_keypoints
from vidcorr.models.external import check_own_module
from vidcorr.metrics.pck import DEFAULT_ALPHAS, PCKAccumulator
from vidcorr.presets import PropagationPreset, SizePolicy, preset_knobs
from vidcorr.propagate import Propagator

log = logging.getLogger(__name__)

COMMAND = "eval jhmdb"  # in the run record (`vidcorr.evaluate.runs.RUN_STAMP`)

JHMDB_SIZE = 320
# What each preset's JHMDB test code changes besides the square 320 input (METHODS.md §1.9, §3.4, §4.6):
# UVC's jhmdb branch is TimeCycle's test loop: 8 copies of frame 0 as context, frame 0 propagated
# into itself first, top-20 per frame, min-max normalised predictions stored as context. CRW: first
# + 7 previous (the command in videowalk issue #10). STT: square window of side 10 (|d| <= 5),
# Gaussian maps resized bilinearly.
JHMDB_CHANGES: dict[str, dict] = {
    "uvc": {"k": 20, "initial_context": "fill_self", "normalise_context_labels": True},
    "crw": {"n_previous": 7},
    "stt": {"radius": 5, "label_downsample": "bilinear"},
    "timecycle": {},
}


def jhmdb_preset(base: PropagationPreset, size: int | None = None) -> PropagationPreset:
    """The JHMDB variant of a preset: square ``size`` (default 320) input plus `JHMDB_CHANGES`."""
    changes = dict(JHMDB_CHANGES.get(base.name, {}))
    return base.with_overrides(size=SizePolicy("square", size or JHMDB_SIZE), **changes)


def propagate_video(propagator: Propagator, video: JhmdbVideo, gt: np.ndarray,
                    codec: HeatmapCodec) -> tuple[np.ndarray, np.ndarray]:
    """First-frame GT joints through one video -> (coords (T, J, 2), visible (T, J))."""
    coords, visible = [], []
    for _, xy, seen in propagate_keypoints(propagator, open_frames(video.frames_dir), gt[0], codec):
        coords.append(xy)
        visible.append(seen)
    return np.stack(coords), np.stack(visible)


def write_prediction(path: Path, video: JhmdbVideo, coords: np.ndarray, visible: np.ndarray) -> None:
    """Per-frame coordinates as JSON (null for joints that are not visible), written atomically."""
    frames = [p.name for p in video.frame_files()]
    data = {
        "video": video.name, "joint_names": list(JOINT_NAMES), "frames": frames,
        "keypoints": [[None if not v else [round(float(x), 3), round(float(y), 3)]
                       for (x, y), v in zip(frame_xy, frame_vis)]
                      for frame_xy, frame_vis in zip(coords, visible)],
    }
    write_json_atomic(data, path)


def read_prediction(path: Path, video: JhmdbVideo, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A `write_prediction` file -> (coords (T, J, 2) float64, visible (T, J) bool), T = the video's frames,
    or its first ``max_frames`` (the file of a ``propagate --max-frames N`` run holds only those).

    ``null`` (or a NaN coordinate) is a joint without a position: not visible, not counted. The
    joint order must be `JOINT_NAMES` and, when the file lists ``frames``, they must be the video's.
    ``vidcorr propagate --keypoints``' keypoints.json is read too (`_from_propagate`).
    """
    if not path.is_file():
        raise InputError(path, "prediction not found (one <class>/<video>.json per video; eval jhmdb "
                               "writes them to OUT/predictions/)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(path, f"cannot read prediction JSON ({error})") from None
    files = video.frame_files()
    frames = [p.name for p in files[:max_frames]]
    row_name = "keypoints[{t}]"  # how an error names frame t's joints in the file
    if isinstance(data, dict) and "keypoints" not in data and _is_list_of(data.get("frames"), dict):
        data, row_name = _from_propagate(data, path, video, len(frames)), 'frames[{t}]["keypoints"]'
    if not isinstance(data, dict) or not isinstance(data.get("keypoints"), list):
        raise InputError(path, 'expected an object with "keypoints": [[[x, y] or null] * 15] per frame (eval '
                               'jhmdb\'s predictions) or the keypoints.json of propagate --keypoints')
    if data.get("joint_names", list(JOINT_NAMES)) != list(JOINT_NAMES):
        raise InputError(path, f"joint_names must be the JHMDB order {', '.join(JOINT_NAMES)}")
    if len(data["keypoints"]) != len(frames):
        raise _frame_count_mismatch(path, video, len(data["keypoints"]), len(files), max_frames)
    if data.get("frames", frames) != frames:
        raise InputError(path, f'"frames" are not the frame files of {video.frames_dir} '
                               f"({frames[0]} ... {frames[-1]}, in this order)")
    coords = np.array([[_joint(point, path, row_name.format(t=t), j)
                        for j, point in enumerate(_frame_joints(row, path, row_name.format(t=t)))]
                       for t, row in enumerate(data["keypoints"])], np.float64)
    return coords, np.all(np.isfinite(coords), axis=-1)


def _frame_count_mismatch(path: Path, video: JhmdbVideo, found: int, total: int, max_frames: int | None) -> InputError:
    """A file of ``found`` frames of keypoints for a video of ``total`` frames, of which ``max_frames``
    (None: all) are scored: the error, with the --max-frames that scores the file where one would."""
    if max_frames is None:
        # a prefix run (propagate --max-frames N) is scored only when asked: a truncated file is refused
        fix = (f" (a `propagate --max-frames {found}` run? score its first {found} frames with --max-frames "
               f"{found})" if 2 <= found < total else "")
        return InputError(path, f"{found} frames of keypoints but {video.frames_dir} has {total} frames{fix}")
    expected = min(total, max_frames)
    fix = ("; score it without --max-frames" if found == total else
           f"; score it with --max-frames {found}" if 2 <= found < total else "")
    return InputError(path, f"{found} frames of keypoints but --max-frames {max_frames} scores the first "
                            f"{expected} frames of {video.frames_dir} (it has {total}){fix}")


def _from_propagate(data: dict, path: Path, video: JhmdbVideo, n_frames: int) -> dict:
    """``vidcorr propagate --keypoints``' keypoints.json -> ``{"keypoints": rows}`` of `read_prediction`'s layout.

    Its coordinates are already 0-based pixels of the original frame, frame 0 the annotation, as
    eval's. Its "names" must be `JOINT_NAMES`: a FIRST.json without names gets "0", "1", ..., which
    say nothing of the order. Its frame names must be those of the video's first ``n_frames`` (a frame
    folder propagated: the files' stems) or 00000, 00001, ... (a video file); a frame count that differs
    is left to the caller, which names both counts.
    """
    names, rows = data.get("names"), data["frames"]
    if names != list(JOINT_NAMES):
        # a file without "names" was said to name its keypoints None
        shown = ("has no \"names\"" if names is None else
                 f"names its keypoints {', '.join(map(str, names)) if isinstance(names, list) else repr(names)}")
        raise InputError(path, f'propagate\'s keypoints.json {shown}; score jhmdb needs the '
                               f'{NUM_JOINTS} JHMDB joints in their order: {", ".join(JOINT_NAMES)}. Give FIRST.json '
                               f'these "names" and propagate again, or set them here if the keypoints are '
                               f"JHMDB's joints in that order (docs/keypoints.md)")
    missing = next((t for t, r in enumerate(rows) if "keypoints" not in r), None)
    if missing is not None:
        raise InputError(path, f'frames[{missing}] has no "keypoints" (propagate\'s keypoints.json holds '
                               '{"frame": NAME, "keypoints": [[x, y] or null, ...]} per frame)')
    given = [r.get("frame") for r in rows]
    stems = [p.stem for p in video.frame_files()[:n_frames]]
    numbered = [f"{t:05d}" for t in range(len(stems))]
    if len(given) == len(stems) and given not in (stems, numbered):
        raise InputError(path, f'"frames" are neither the frame files of {video.frames_dir} ({stems[0]} ... '
                               f"{stems[-1]}, a frame folder propagated) nor {numbered[0]} ... {numbered[-1]} "
                               "(a video file propagated)")
    return {"keypoints": [r["keypoints"] for r in rows]}


def _is_list_of(value, kind: type) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, kind) for v in value)


def _frame_joints(row, path: Path, where: str) -> list:
    if not isinstance(row, list) or len(row) != len(JOINT_NAMES):
        raise InputError(path, f"{where}: expected {len(JOINT_NAMES)} joints ([x, y] or null)")
    return row


def _joint(point, path: Path, where: str, j: int) -> tuple[float, float]:
    """[x, y] -> (x, y); null -> (NaN, NaN); anything else, or an infinite value, an `InputError`."""
    if point is None:
        return math.nan, math.nan
    if (isinstance(point, list) and len(point) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            and not any(math.isinf(v) for v in point)):
        return float(point[0]), float(point[1])
    raise InputError(path, f"{where}[{j}] ({JOINT_NAMES[j]}): expected [x, y] or null, got {point!r}")


def run_jhmdb(
    encoder: nn.Module,
    preset: PropagationPreset,
    dataset: JhmdbDataset,
    out_dir: str | Path,
    *,
    codec: HeatmapCodec | None = None,
    skip_first_frame: bool = True,
    device: str = "cpu",
    batch_size: int = 4,
    model_info: dict | None = None,
    resume: bool = False,
    ranks: Ranks | None = None,
) -> dict | None:
    """Propagate every video's first-frame joints, write predictions and ``results.json``.

    preset: the propagation protocol as run (usually `jhmdb_preset` of a named preset); codec:
    the heatmap codec (default: the preset's, `vidcorr.keypoints.codec_for`). Writes
    ``out_dir/predictions/<class>/<video>.json`` (each atomically) and ``out_dir/results.json``;
    returns the results dict (schema in docs/keypoints.md). ``out_dir`` must not exist or be empty
    unless ``resume``: keep the videos an interrupted run of the same model, protocol, codec and
    split finished there (`vidcorr.evaluate.runs.recorded_run`; another run is refused, naming what
    changed) and propagate only the rest. Every video is scored from its prediction file, read
    back, kept or not, so a resumed run's results equal an uninterrupted one's (the times are each
    video's, from the session that propagated it).
    ranks: under torchrun (`vidcorr.evaluate.ranks.join`, every rank calls run_jhmdb alike) each rank
    propagates its share of the videos; rank 0 alone scores, writes results.json and returns the
    results, the others None (docs/metrics.md, "Several processes").
    """
    ranks = ranks or Ranks()  # None: a single process, rank 0 of 1
    codec = codec or codec_for(preset.name)
    out_dir = Path(out_dir)

    def prepare() -> tuple[dict[str, np.ndarray], Propagator]:
        check_output_folder(out_dir, resume, COMMAND)
        # Read every annotation up front: a malformed file fails before any propagation.
        ground_truth = {video.name: video.joints() for video in dataset.videos}
        log.info("JHMDB: %s", dataset.describe())
        propagator = Propagator(encoder, preset, device=device, batch_size=batch_size)
        check_own_module(propagator.encoder, device)  # a module given from Python, checked as --encoder's is
        return ground_truth, propagator

    ground_truth, propagator = ranks.agree(prepare)
    stamp = {"command": COMMAND, "model": model_info or {}, "preset": preset_knobs(preset), "codec": codec.as_dict(),
             "split": dataset.split, "subset": dataset.subset}
    files = {video.name: out_dir / "predictions" / f"{video.name}.json" for video in dataset.videos}
    folders = [*sorted({path.parent for path in files.values()}), out_dir / "predictions"]  # <class>/ first
    videos = {video.name: video for video in dataset.videos}
    record = run_items(ranks, out_dir, stamp, list(files), resume=resume, done=lambda name: files[name].is_file(),
                       work=lambda name: timed_sequence(propagator, lambda: _write_video(
                           propagator, videos[name], ground_truth[name], codec, files[name])),
                       desc=f"JHMDB ({preset.name})", unit="video",
                       sizes=[len(ground_truth[name]) for name in files], folders=folders)
    if not ranks.is_main:
        return None
    # Scored as written (3 decimals), as `score_jhmdb` reads the files.
    results = score_folder(dataset, out_dir / "predictions", ground_truth, skip_first_frame)
    results.update(preset=preset.name, preset_knobs=preset_knobs(preset), codec=codec.as_dict(),
                   model=model_info or {}, timing=run_timing(record, propagator.device))
    write_json_atomic(results, out_dir / "results.json")
    return results


def _write_video(propagator: Propagator, video: JhmdbVideo, gt: np.ndarray, codec: HeatmapCodec, path: Path) -> int:
    """Propagate one video's first-frame joints and write them to ``path``; -> its frame count."""
    coords, visible = propagate_video(propagator, video, gt, codec)
    write_prediction(path, video, coords, visible)
    return len(coords)


def score_jhmdb(dataset: JhmdbDataset, results_dir: str | Path, *, skip_first_frame: bool = True,
                max_frames: int | None = None) -> dict:
    """PCK of saved predictions ``results_dir/<class>/<video>.json`` (`write_prediction`'s format, or
    propagate's keypoints.json: `read_prediction`).

    max_frames: score only the first N frames of each video (files of ``propagate --max-frames N``),
    at least 2 (frame 0 is the annotation); None: every frame, and a shorter file is refused.
    Returns `run_jhmdb`'s results without what only a run knows (preset, preset_knobs, codec,
    model, timing); ``results`` names the folder scored, ``max_frames`` the prefix (None: whole
    videos). Every file is read before anything is returned; nothing is written here.
    """
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2 (frame 0 and one propagated frame), got {max_frames}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(results_dir, "results folder not found")
    ground_truth = {video.name: video.joints()[:max_frames] for video in dataset.videos}
    results = score_folder(dataset, results_dir, ground_truth, skip_first_frame, max_frames)
    results.update(results=str(results_dir), max_frames=max_frames)
    return results


def score_folder(dataset: JhmdbDataset, folder: Path, ground_truth: dict[str, np.ndarray],
                 skip_first_frame: bool, max_frames: int | None = None) -> dict:
    """PCK of every video's saved prediction ``folder/<class>/<video>.json`` (`read_prediction`, its
    first ``max_frames`` frames) against ``ground_truth`` ({video: (T, 15, 2) joints}, T cut alike)
    -> the results dict of `_results`; `run_jhmdb` scores its own ``predictions/`` with it, `score_jhmdb` any folder."""
    scores = PCKAccumulator(JOINT_NAMES, skip_first_frame)
    for video in dataset.videos:
        coords, visible = read_prediction(folder / f"{video.name}.json", video, max_frames)
        scores.add(video.name, coords, ground_truth[video.name], visible)
    return _results(scores.results(DEFAULT_ALPHAS), dataset, skip_first_frame)


def _results(pck: dict, dataset: JhmdbDataset, skip_first_frame: bool) -> dict:
    return {
        **{k: pck[k] for k in pck if k.startswith("PCK@")},
        "per_joint": pck["per_joint"],
        "per_video": pck["per_video"],
        "skip_first_frame": skip_first_frame,
        "protocol": {
            "benchmark": "JHMDB", "videos": dataset.describe(), "n_videos": len(dataset),
            "counted_joints": pck["counted_joints"],
            "normaliser": "0.6 x diagonal of the box of the GT joints whose prediction is visible "
                          "(out-of-frame GT joints included; box max starts at -1; a zero-size box "
                          "makes its joints misses), as eval_pck.py",
            "note": "PCK pooled per joint over all counted frames, then averaged over the 15 joints "
                    "(UVC/CRW eval_pck.py); values are fractions in [0, 1]",
        },
    }


def format_pck_table(results: dict) -> str:
    """Per-video and per-joint PCK tables followed by the global line."""
    keys = [k for k in results if k.startswith("PCK@")]
    width = max([len("video"), *map(len, results["per_video"])])
    lines = [f"{'video':<{width}}  frames  " + "  ".join(f"{k:>8}" for k in keys)]
    for name, v in results["per_video"].items():
        lines.append(f"{name:<{width}}  {v['frames']:>6d}  " + "  ".join(_cell(v[k]) for k in keys))
    lines += ["", f"{'joint':<14}  " + "  ".join(f"{k:>8}" for k in keys)]
    for joint in JOINT_NAMES:
        lines.append(f"{joint:<14}  " + "  ".join(_cell(results["per_joint"][k][joint]) for k in keys))
    first = "skipped" if results["skip_first_frame"] else "included"
    prefix = f", first {results['max_frames']} frames" if results.get("max_frames") else ""
    lines += ["", f"mean over joints ({len(results['per_video'])} video(s){prefix}, frame 0 {first}): "
              + "  ".join(f"{k} {_cell(results[k]).strip()}" for k in keys)]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{'n/a':>8}" if value is None else f"{value:>8.4f}"
