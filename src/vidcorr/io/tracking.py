"""Single-object tracking benchmarks on disk: OTB-2015 and VOT sequence folders, box text files.

Box convention everywhere in vidcorr (readers, trackers, metrics): ``(x, y, w, h)`` float64 in
**0-based continuous pixel coordinates**: the top-left pixel covers [0, 1) x [0, 1) and a box covers
[x, x + w) x [y, y + h).

* OTB (Wu et al., TPAMI 2015) annotates in MATLAB's 1-based pixels: the top-left pixel is (1, 1). The
  reader subtracts 1 from x and y (w, h unchanged), the same conversion DCFNet's ``rect1_2_cxy_wh``
  makes; `write_otb_boxes` adds it back, so predictions are written in OTB's own format.
* VOT (2013-2016 layout) stores a rotated rectangle as 4 corners, 8 numbers, or an ``x,y,w,h`` line.
  The numbers are taken as they are (0-based), and a polygon becomes the axis-aligned box spanned by
  its corners (min / max), as the task asks; the got-10k toolkit instead keeps the polygon's area
  and adds 1 to w and h, so its boxes differ slightly. That box is what trackers start from and what
  OPE scores; VOT's baseline experiment scores against the polygon itself (`read_vot_polygons`).

IoU and centre error do not change when both boxes shift by the same amount, so the choice of origin
never changes a score; it matters for what is drawn and written.

Frames without a valid box: a line holding ``NaN`` (in any value, e.g. "NaN,NaN,NaN,NaN" for an absent
target) or a box of width or height <= 0 (e.g. "0,0,0,0") is kept as it is and
scored the way the OTB toolkit scores it (`vidcorr.metrics.tracking.valid_boxes`). Only the first line
must hold a valid box, since the tracker starts from it. Malformed lines (text, infinities, a wrong
number of values, blank lines inside the file) are still refused with the file and line named.

Results files (`read_result_boxes`, what `vidcorr score otb|vot` reads): one OTB-format line per frame
as `write_otb_boxes` writes them and the OTB toolkit's results files hold, with the same separators and
the same refusals; a NaN value is allowed on any line, the first included (a lost target: a miss in
both curves), and a box of size <= 0 is kept (it overlaps nothing).

VOT baseline trajectories, the results files of VOT's supervised experiment, are read and written by
`vidcorr.io.vot_trajectory`.

Layouts: OTB ``<seq>/img/0001.jpg`` + ``<seq>/groundtruth_rect.txt``; VOT ``<seq>/00000001.jpg`` (or
``<seq>/color/00000001.jpg``, the VOT toolkit's layout from VOT2017) + ``<seq>/groundtruth.txt``. One annotation line per frame; values separated by commas, tabs or spaces,
mixed freely. OTB-2015 as distributed, read as its toolkit's sequence configs read it
(jwlim/tracker_benchmark ``MakeSequenceConfigVer10/11.m``): a folder with two targets holds
``groundtruth_rect.1.txt`` and ``groundtruth_rect.2.txt`` (Jogging, Skating2), and each is a
sequence named ``<folder>.<k>`` (Human4's one target is ``groundtruth_rect.2.txt``: ``Human4.2``);
five sequences annotate only a range of their frames (`OTB_ANNOTATED_RANGES`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.atomic import write_text_atomic
from vidcorr.io.images import image_size, is_frame_file, list_frame_files
from vidcorr.io.roots import misplaced_root_hint
from vidcorr.io.text import read_text
from vidcorr.io.video import FrameSource, open_frame_files

log = logging.getLogger(__name__)
Benchmark = Literal["otb", "vot"]
ANNOTATION_FILES: dict[str, str] = {"otb": "groundtruth_rect.txt", "vot": "groundtruth.txt"}
_SEPARATORS = re.compile(r"[,\s]+")

# OTB-2015 sequences whose annotation covers only part of the frames in img/: folder name ->
# (frames in img/, annotation lines, 1-based first annotated frame), from the OTB toolkit's sequence
# configs (David: frames 300:770; Football1 1:74, Freeman3 1:460, Freeman4 1:283, Diving 1:215).
# Applied only when both counts match, so another dataset's folder of the same name is not cut.
OTB_ANNOTATED_RANGES: dict[str, tuple[int, int, int]] = {
    "David": (770, 471, 300),
    "Diving": (231, 215, 1),
    "Football1": (81, 74, 1),
    "Freeman3": (474, 460, 1),
    "Freeman4": (297, 283, 1),
}
# OTB's per-target annotation files of a folder with several targets: groundtruth_rect.<k>.txt.
_OTB_TARGET_FILE = re.compile(r"groundtruth_rect\.(\d+)\.txt")


@dataclass(frozen=True)
class TrackingSequence:
    """One annotated sequence: ``boxes`` (T, 4) the 0-based boxes of ``frame_files`` (T images of
    ``frames_dir``, in order: all of them, or the annotated range of `OTB_ANNOTATED_RANGES`).

    ``boxes[0]`` is always a valid box; later rows may be NaN or of size <= 0 (no valid box).
    """

    name: str
    frames_dir: Path
    annotation: Path
    boxes: np.ndarray
    frame_files: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.boxes)

    def open_frames(self) -> FrameSource:
        """Stream the annotated frames, one per box (RGB uint8 (H, W, 3))."""
        return open_frame_files(self.frame_files)


def parse_line(text: str, path: Path, line_no: int, counts: Sequence[int]) -> np.ndarray:
    """One annotation line -> float64 values; `InputError` naming the file and line otherwise."""
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    try:
        values = np.array([float(f) for f in fields], np.float64)
    except ValueError:
        if text.strip().startswith("m"):  # the VOT toolkit's region code for a mask (VOT2020 on)
            raise InputError(path, f"line {line_no}: a segmentation mask (VOT2020+ run-length code 'm...'), "
                                   "not a box or polygon; mask ground truth is not supported") from None
        raise InputError(path, f"line {line_no}: cannot parse {text.strip()!r} as numbers") from None
    if len(values) not in counts:
        *others, last = (str(c) for c in counts)
        expected = f"{', '.join(others)} or {last}" if others else last
        raise InputError(path, f"line {line_no}: expected {expected} values, got {len(values)} ({text.strip()!r})")
    # NaN marks a frame without a box (kept, scored as the OTB toolkit does); infinity is an error.
    if np.any(np.isinf(values)):
        raise InputError(path, f"line {line_no}: infinite value in {text.strip()!r}")
    return values


def annotation_lines(path: Path, kind: str = "annotation") -> list[tuple[int, str]]:
    """(1-based line number, text) of every line; trailing blank lines are dropped, inner ones rejected.

    kind: what the file is ("annotation", "results"), for the messages.
    """
    lines = read_text(path, f"{kind} file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            raise InputError(path, f"line {number}: empty line inside the {kind} file")
    if not lines:
        raise InputError(path, f"{kind} file is empty")
    return list(enumerate(lines, start=1))


def _checked_first_box(boxes: np.ndarray, path: Path) -> np.ndarray:
    """Later frames may lack a valid box; the first may not: the tracker is initialised from it."""
    x, y, w, h = boxes[0]
    if not (np.all(np.isfinite(boxes[0])) and w > 0 and h > 0):
        raise InputError(path, f"line 1: the first frame needs a box of positive size to start the tracker, "
                               f"got {x:g},{y:g},{w:g},{h:g}")
    return boxes


def polygon_to_box(corners: np.ndarray) -> np.ndarray:
    """Axis-aligned box spanned by polygon corners: (..., 2K) x1, y1, x2, y2, ... -> (..., 4) x, y, w, h."""
    xs, ys = corners[..., 0::2], corners[..., 1::2]
    x0, y0 = xs.min(axis=-1), ys.min(axis=-1)
    return np.stack([x0, y0, xs.max(axis=-1) - x0, ys.max(axis=-1) - y0], axis=-1)


def _read_one_based_boxes(path: Path, kind: str) -> np.ndarray:
    """An OTB-format file (1-based x, y, w, h per line) -> (T, 4) float64, 0-based, rows as written."""
    boxes = np.stack([parse_line(text, path, n, (4,)) for n, text in annotation_lines(path, kind)])
    boxes[:, :2] -= 1.0
    return boxes


def read_otb_boxes(path: str | Path) -> np.ndarray:
    """OTB ``groundtruth_rect.txt`` (1-based x, y, w, h per line) -> (T, 4) float64, 0-based.

    Rows of frames without a valid box keep their NaN or non-positive size (see module docstring).
    """
    path = Path(path)
    return _checked_first_box(_read_one_based_boxes(path, "annotation"), path)


def read_result_boxes(path: str | Path) -> np.ndarray:
    """A tracker's OTB-format results file (`write_otb_boxes`, 1-based x, y, w, h) -> (T, 4) float64, 0-based.

    Unlike the ground truth, no line has to hold a valid box: a NaN row is a lost target (scored as
    a miss in both curves), a row of size <= 0 overlaps nothing; both are kept as written.
    """
    return _read_one_based_boxes(Path(path), "results")


def read_vot_boxes(path: str | Path) -> np.ndarray:
    """VOT ``groundtruth.txt`` (8 polygon values or x, y, w, h per line) -> (T, 4) float64, 0-based.

    A polygon with a NaN corner becomes a NaN row; a degenerate one a box of size 0 (both: no valid box).
    """
    path = Path(path)
    rows = []
    for number, text in annotation_lines(path):
        values = parse_line(text, path, number, (8, 4))
        rows.append(polygon_to_box(values) if len(values) == 8 else values)
    return _checked_first_box(np.stack(rows), path)


def read_vot_polygons(path: str | Path) -> np.ndarray:
    """VOT ``groundtruth.txt`` -> (T, 8) float64 corners x1, y1, ..., x4, y4, 0-based, as annotated.

    An ``x, y, w, h`` line becomes its 4 corners (clockwise from the top-left in image coordinates);
    NaN values are kept (a frame without a box). `read_vot_boxes` reads the same file as boxes.
    """
    path = Path(path)
    rows = []
    for number, text in annotation_lines(path):
        rows.append(region_corners(parse_line(text, path, number, (8, 4))))
    return np.stack(rows)


def region_corners(values: np.ndarray) -> np.ndarray:
    """A box (4,) x, y, w, h -> its 4 corners (8,), clockwise from the top-left in image coordinates;
    a polygon (8,) unchanged."""
    if len(values) == 8:
        return values
    x, y, w, h = values
    return np.array([x, y, x + w, y, x + w, y + h, x, y + h])


def write_otb_boxes(path: str | Path, boxes: np.ndarray) -> None:
    """Write (T, 4) 0-based boxes as an OTB result file: 1-based ``x,y,w,h`` per line, 2 decimals;
    atomically (an interrupted write leaves no file a resumed run or `score` would take for a result)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    one_based = boxes + np.array([1.0, 1.0, 0.0, 0.0])
    write_text_atomic(path, "".join(",".join(f"{v:.2f}" for v in row) + "\n" for row in one_based))


def load_sequence(folder: str | Path, benchmark: Benchmark, annotation: str | Path | None = None) -> TrackingSequence:
    """Read one OTB or VOT sequence folder: its annotation (default the benchmark's file; for OTB's
    two-target folders ``groundtruth_rect.<k>.txt``, the sequence ``<folder>.<k>``) and its frames.

    The frame count must equal the annotation count, except for the OTB-2015 sequences of
    `OTB_ANNOTATED_RANGES`, whose annotated range of frames is used.
    """
    folder = Path(folder)
    annotation = folder / (annotation or ANNOTATION_FILES[benchmark])
    if not annotation.is_file():
        raise InputError(folder, f"no {annotation.name} in the sequence folder")
    target = _OTB_TARGET_FILE.fullmatch(annotation.name) if benchmark == "otb" else None
    name = f"{folder.name}.{target.group(1)}" if target else folder.name
    frames_dir = folder / "img" if benchmark == "otb" else _vot_frames_dir(folder)
    if not frames_dir.is_dir():
        raise InputError(frames_dir, "frame folder is missing")
    boxes = read_otb_boxes(annotation) if benchmark == "otb" else read_vot_boxes(annotation)
    files = list_frame_files(frames_dir)
    n_frames, n_lines = len(files), len(boxes)
    if benchmark == "otb" and OTB_ANNOTATED_RANGES.get(folder.name, (0, 0, 0))[:2] == (n_frames, n_lines):
        first = OTB_ANNOTATED_RANGES[folder.name][2] - 1
        files = files[first:first + n_lines]
    elif n_frames != n_lines:
        first_unmatched = min(n_frames, n_lines) + 1
        raise InputError(annotation, f"{n_lines} annotation lines but {n_frames} frames in {frames_dir}; "
                                     f"line {first_unmatched} has no "
                                     f"{'frame' if n_lines > n_frames else 'annotation'}")
    _refuse_first_box_outside(boxes[0], annotation, files[0])
    return TrackingSequence(name, frames_dir, annotation, boxes, tuple(files))


def _refuse_first_box_outside(box: np.ndarray, annotation: Path, first_frame: Path) -> None:
    """The tracker starts from the first box, so it must share a pixel with the first frame (the rule
    of `vidcorr.track.check_first_box`); checked here, from the frame's header, so that `eval` refuses
    it before tracking any sequence, not with a traceback when it reaches this one."""
    height, width = image_size(first_frame)
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InputError(annotation, f"line 1: the first box lies outside the {width}x{height} first frame "
                                     f"{first_frame.name} (it shares no pixel with it): the tracker has nothing "
                                     "to start from")


def _vot_frames_dir(folder: Path) -> Path:
    """VOT2013-2016 keep the frames beside groundtruth.txt; the VOT toolkit's later layout
    (VOT2017 on) in ``color/`` (its ``sequence`` file: ``channels.color=color/%08d.jpg``). With
    frames in both places, color/ is read and the warning says so (two extractions of a sequence?)."""
    if not (folder / "color").is_dir():
        return folder
    beside = sorted(p for p in folder.iterdir() if is_frame_file(p))
    if beside:
        log.warning("%s: frames both in color/ and beside groundtruth.txt (%d, e.g. %s); reading color/, "
                    "the VOT toolkit's layout", folder, len(beside), beside[0].name)
    return folder / "color"


def _annotated_sequences(root: Path, benchmark: Benchmark) -> dict[str, tuple[Path, str]]:
    """Sequence name -> (folder, annotation file name) for every annotation under ``root``; two
    annotations of the same name (a folder ``Jogging.1`` beside ``Jogging/groundtruth_rect.1.txt``)
    are an `InputError`, not one silently left out."""
    found: dict[str, tuple[Path, str]] = {}

    def add(name: str, folder: Path, annotation: str) -> None:
        if name in found:
            raise InputError(root, f"two sequences named {name}: {found[name][0] / found[name][1]} and "
                                   f"{folder / annotation}; rename one of the folders")
        found[name] = (folder, annotation)

    for folder in (p for p in root.iterdir() if p.is_dir()):
        if (folder / ANNOTATION_FILES[benchmark]).is_file():
            add(folder.name, folder, ANNOTATION_FILES[benchmark])
        if benchmark == "otb":
            for file in folder.iterdir():
                if (target := _OTB_TARGET_FILE.fullmatch(file.name)) and file.is_file():
                    add(f"{folder.name}.{target.group(1)}", folder, file.name)
    return dict(sorted(found.items()))


def _root_hint(root: Path, benchmark: Benchmark) -> str:
    """What ``root``, holding no sequence of ``benchmark``, is instead: the other benchmark's root,
    one sequence folder (its sequences named as --sequences takes them), or a folder beside or
    inside a root (`misplaced_root_hint`)."""
    other: Benchmark = "vot" if benchmark == "otb" else "otb"
    if _sequences_in(root, other):
        return (f"; it holds {other.upper()} sequences ({ANNOTATION_FILES[other]}): `vidcorr eval {other}` "
                f"(or `score {other}`) reads them")
    if names := [name for name, (folder, _) in _sequences_in(root.parent, benchmark).items() if folder == root]:
        return f"; it is one sequence folder: --root {root.parent} --sequences {','.join(names)}"
    return misplaced_root_hint(root, lambda folder: bool(_sequences_in(folder, benchmark)))


def _sequences_in(folder: Path, benchmark: Benchmark) -> dict[str, tuple[Path, str]]:
    """`_annotated_sequences`, or none where they cannot be listed (two of one name, for a hint)."""
    try:
        return _annotated_sequences(folder, benchmark)
    except InputError:
        return {}


def discover_sequences(
    root: str | Path, benchmark: Benchmark, names: Sequence[str] | None = None
) -> list[TrackingSequence]:
    """Every sequence of ``root`` (a sub-folder with the benchmark's annotation file, or for OTB one
    per ``groundtruth_rect.<k>.txt``, named ``<folder>.<k>``), sorted by name.

    names: restrict to these sequences (in this order); an unknown name is an `InputError`.
    """
    root = Path(root)
    if benchmark not in ANNOTATION_FILES:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {sorted(ANNOTATION_FILES)}")
    if not root.is_dir():
        raise InputError(root, "tracking root folder does not exist")
    found = _annotated_sequences(root, benchmark)
    if not found:
        raise InputError(root, f"no sequence folders with {ANNOTATION_FILES[benchmark]} "
                               f"(expected {benchmark.upper()} layout <root>/<seq>/...){_root_hint(root, benchmark)}")
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(root, f"unknown sequence(s) {', '.join(missing)}; found {', '.join(found)}")
        found = {name: found[name] for name in names}
    return [load_sequence(folder, benchmark, annotation) for folder, annotation in found.values()]
