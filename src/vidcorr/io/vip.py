"""VIP (Video instance-level Parsing) reader, plus an adapter for the VIPSeg snippet in ../shared/data.

VIP layout (``VIP_Fine``; read by UVC ``test_mask_vip.py`` / ``eval_vip.py``, STT ``vip_dataset.py``,
and documented with the dataset, see docs/vip.md)::

    VIP_Fine/Images/<video>/<frame>.jpg                      the annotated frames only (1 in 25)
    VIP_Fine/Annotations/Category_ids/<video>/<frame>.png    part class per pixel, 0..19, 255 ignored
    VIP_Fine/Annotations/Instance_ids/<video>/<frame>.png    part-instance id per pixel, 0 = none (255 is an id)
    VIP_Fine/Annotations/Instance_ids/<video>/<frame>.txt    "<instance id> <class id> <human id>" lines
    VIP_Fine/Annotations/Human_ids/<video>/<frame>.png       person id per pixel (not needed here)
    VIP_Fine/lists/val_videos.txt                            one video per line (a name or a path)

ROOT may be ``VIP_Fine`` or its parent. Instance_ids is optional: without it only mIoU is scored.

VIPSeg snippet layout (``layout="vipseg"``): ``images/<video>/<frame>.jpg`` and
``source/<video>/<frame>.png`` (P mode, one segment id per pixel, 0 = unlabelled) with
``<frame>.json`` beside each PNG listing ``{"id", "category_id", "isthing"}`` per segment. Segment
ids are not stable across frames (id 1 is a different category in different frames), so the
adapter maps them to the JSON's category ids (classes 0..123, unlabelled -> 255), and "thing"
segments become the instances. Every video under images/ is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidcorr.errors import InputError
from vidcorr.io.roots import misplaced_root_hint, names_held
from vidcorr.io.images import list_frame_files
from vidcorr.io.text import read_text

IGNORE = 255
# Class ids of Category_ids as defined by the LIP / VIP benchmark (UVC's eval_vip.py prints the
# LIP names in another order; the ids, and so the scores, are the same).
VIP_CLASSES: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks",
    "pants", "torso-skin", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg",
    "right-leg", "left-shoe", "right-shoe",
)
VIPSEG_NUM_CLASSES = 124


@dataclass(frozen=True)
class VipFrame:
    """One annotated frame: the image, its class map, and (optional) instance map + class table."""

    name: str
    image: Path
    category: Path
    instances: Path | None
    table: Path | None


@dataclass(frozen=True)
class VipVideo:
    name: str
    frames_dir: Path
    frames: list[VipFrame]


class VipDataset:
    """The videos of a VIP split (``layout="vip"``) or of a VIPSeg-snippet tree (``"vipseg"``).

    Args:
        root: VIP_Fine (or its parent), or the VIPSeg snippet root.
        split: list file ``lists/<split>_videos.txt`` (VIP only).
        videos: keep only these videos, in this order.
        layout: "vip", "vipseg" or "auto" (by the folders present).
    Attributes: ``layout``, ``num_classes``, ``class_names``, ``split``, ``videos`` (list of `VipVideo`).
    """

    def __init__(self, root: str | Path, split: str = "val", videos: list[str] | None = None,
                 layout: str = "auto"):
        self.root, self.split = Path(root), split
        if (self.root / "VIP_Fine").is_dir():
            self.root = self.root / "VIP_Fine"
        self.layout = _detect_layout(self.root) if layout == "auto" else layout
        if self.layout == "vip":
            self.num_classes, self.class_names = len(VIP_CLASSES), VIP_CLASSES
            names = _read_video_list(self.root / "lists" / f"{split}_videos.txt")
        elif self.layout == "vipseg":
            self.num_classes = VIPSEG_NUM_CLASSES
            self.class_names = tuple(str(i) for i in range(VIPSEG_NUM_CLASSES))
            names = sorted(p.name for p in (self.root / "images").iterdir() if p.is_dir())
        else:
            raise ValueError(f"unknown VIP layout {layout!r}; expected auto, vip or vipseg")
        if videos is not None:
            unknown = [v for v in videos if v not in names]
            if unknown:
                where = (f"lists/{split}_videos.txt lists" if self.layout == "vip" else "images/ holds")
                raise InputError(self.root, f"unknown video(s) {', '.join(unknown)}; {where} {names_held(names)}")
            names = list(videos)
        if not names:
            raise InputError(self.root, "no videos found")
        self.videos = [self._video(name) for name in names]

    def __len__(self) -> int:
        return len(self.videos)

    def category_map(self, frame: VipFrame) -> np.ndarray:
        """(H, W) uint8 class ids, 255 = ignore; `InputError` for ids outside the classes."""
        if self.layout == "vipseg":
            segments = _read_index_png(frame.category)
            categories = {s: c for s, (c, _) in _read_segments(frame.table).items()}
            lut = np.full(int(segments.max()) + 1, IGNORE, np.uint8)
            for segment, category in categories.items():
                if segment < len(lut):
                    lut[segment] = category
            return lut[segments]
        classes = _read_index_png(frame.category)
        bad = (classes >= self.num_classes) & (classes != IGNORE)
        if bad.any():
            raise InputError(frame.category, f"class id {int(classes[bad].max())} outside 0..{self.num_classes - 1}")
        return classes.astype(np.uint8)

    def instance_map(self, frame: VipFrame) -> tuple[np.ndarray, dict[int, int]] | None:
        """(H, W) int64 part-instance ids (0 = none) and {id: class}, or None if not annotated."""
        if frame.instances is None:
            return None
        ids = _read_index_png(frame.instances).astype(np.int64)
        if self.layout == "vipseg":
            things = {s: c for s, (c, thing) in _read_segments(frame.table).items() if thing}
            return np.where(np.isin(ids, list(things)), ids, 0), things
        table = _read_instance_table(frame.table)
        missing = sorted(set(np.unique(ids).tolist()) - set(table) - {0})
        if missing:
            raise InputError(frame.table, f"instance id {missing[0]} of {frame.instances.name} is not listed")
        return ids, table

    def _video(self, name: str) -> VipVideo:
        images = "Images" if self.layout == "vip" else "images"
        frames_dir = self.root / images / name
        if not frames_dir.is_dir():
            raise InputError(frames_dir, f"frames of video {name!r} not found")
        return VipVideo(name, frames_dir, [self._frame(name, image) for image in list_frame_files(frames_dir)])

    def _frame(self, video: str, image: Path) -> VipFrame:
        if self.layout == "vipseg":
            png = self.root / "source" / video / f"{image.stem}.png"
            _require(png, "segment map")
            return VipFrame(image.stem, image, png, png, _require(png.with_suffix(".json"), "segment table"))
        annotations = self.root / "Annotations"
        category = _require(annotations / "Category_ids" / video / f"{image.stem}.png", "class annotation")
        instances = annotations / "Instance_ids" / video / f"{image.stem}.png"
        if not (annotations / "Instance_ids").is_dir():
            return VipFrame(image.stem, image, category, None, None)
        _require(instances, "instance annotation")
        return VipFrame(image.stem, image, category, instances,
                        _require(instances.with_suffix(".txt"), "instance table"))


def _detect_layout(root: Path) -> str:
    if (layout := _layout_of(root)) is not None:
        return layout
    raise InputError(root, "not a VIP root (Images/, Annotations/Category_ids/, lists/) "
                           "nor a VIPSeg snippet (images/, source/)"
                     + misplaced_root_hint(root, lambda folder: _layout_of(folder) is not None))


def _layout_of(folder: Path) -> str | None:
    """"vip" or "vipseg" by the folders ``folder`` holds (VIP_Fine's parent counting as VIP), else None."""
    if (folder / "VIP_Fine").is_dir():
        folder = folder / "VIP_Fine"
    if (folder / "Images").is_dir() and (folder / "Annotations" / "Category_ids").is_dir():
        return "vip"
    if (folder / "images").is_dir() and (folder / "source").is_dir():
        return "vipseg"
    return None


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    return path


def _read_video_list(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(path, "video list not found (VIP_Fine/lists/<split>_videos.txt)")
    # UVC reads the last path component of each line: lines may be names or paths.
    names = [line.strip().rstrip("/").split("/")[-1] for line in read_text(path, "video list").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise InputError(path, "video list is empty")
    return names


def _read_index_png(path: Path) -> np.ndarray:
    """Pixel values of an index PNG as they are (not `read_mask`: its 0/255 DAVIS-2016 rule
    would turn a class map holding only background and 255 = ignore into object 1)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I", "I;16"):
                raise InputError(path, f"is a {img.mode} image; expected an index PNG (P or grayscale)")
            return np.array(img)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(path, f"cannot read annotation: {err}") from None


def _read_instance_table(path: Path) -> dict[int, int]:
    """VIP ``Instance_ids/<frame>.txt``: {instance id: class id}."""
    table = {}
    for lineno, line in enumerate(read_text(path, "instance table").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        # isdecimal: "²" is isdigit but no number int() reads
        if len(parts) != 3 or not all(p.isdecimal() for p in parts) or not 0 < int(parts[1]) < len(VIP_CLASSES):
            raise InputError(path, f"line {lineno}: expected '<instance id> <class 1..19> <human id>', "
                             f"got {line.strip()!r}")
        table[int(parts[0])] = int(parts[1])
    return table


def _read_segments(path: Path) -> dict[int, tuple[int, bool]]:
    """VIPSeg ``<frame>.json``: {segment id: (category id, is thing)}."""
    try:
        segments = json.loads(read_text(path, "segment table"))
        table = {int(s["id"]): (int(s["category_id"]), bool(s["isthing"])) for s in segments}
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise InputError(path, f"expected a JSON list of {{id, category_id, isthing}} objects ({err})") from None
    bad = [c for c, _ in table.values() if not 0 <= c < VIPSEG_NUM_CLASSES]
    if bad:
        raise InputError(path, f"category id {bad[0]} outside 0..{VIPSEG_NUM_CLASSES - 1}")
    return table
