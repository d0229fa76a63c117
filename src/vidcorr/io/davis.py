"""DAVIS dataset layout reader (DAVIS-2016 and DAVIS-2017, 480p or Full-Resolution).

Layout::

    ROOT/JPEGImages/<resolution>/<seq>/00000.jpg ...
    ROOT/Annotations/<resolution>/<seq>/00000.png ...   (2016: 0/255 grayscale; 2017: palette + void)
    ROOT/ImageSets/<year>/<split>.txt                    one sequence name per line

Masks are read with `vidcorr.io.masks.read_mask`, so both annotation styles give object ids with
255 = void. Folders are checked when first used, so scoring can run on an annotation-only tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.images import image_size, in_frame_order, shared_size
from vidcorr.io.masks import VOID, mask_size, read_mask
from vidcorr.io.roots import misplaced_root_hint, names_held
from vidcorr.io.text import read_text


def is_davis_root(folder: Path) -> bool:
    """Whether ``folder`` has DAVIS's frames or annotations (scoring needs no frames)."""
    return (folder / "JPEGImages").is_dir() or (folder / "Annotations").is_dir()


class DavisDataset:
    """The sequences of one DAVIS split, with their frame and annotation files.

    Args:
        root: DAVIS root folder (holds JPEGImages/, Annotations/, ImageSets/).
        year: ImageSets sub-folder ("2016", "2017"); None picks the only one present.
        split: split file name without .txt ("val", "train", "test-dev").
        resolution: "480p" or "Full-Resolution".
        sequences: a subset of the split's sequences, in this order. When ROOT has no
            ImageSets/ at all (e.g. a hand-made tree) these names are used as they are.
    """

    def __init__(
        self,
        root: str | Path,
        year: str | None = None,
        split: str = "val",
        resolution: str = "480p",
        sequences: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(self.root, "DAVIS root folder not found")
        if not is_davis_root(self.root):  # a per-sequence "not found" under it said little
            raise InputError(self.root, "not a DAVIS root (JPEGImages/, Annotations/, ImageSets/)"
                             + misplaced_root_hint(self.root, is_davis_root))
        self.resolution = resolution
        self.split = split
        image_sets = self.root / "ImageSets"
        if not image_sets.is_dir() and sequences is not None:
            self.year = year
            self.sequences = list(sequences)
            return
        self.year = _pick_year(image_sets, year)
        listed = _read_split(image_sets / self.year, split)
        self.sequences = listed if sequences is None else _subset(listed, sequences, image_sets / self.year / f"{split}.txt")

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        return (f"DavisDataset(root={str(self.root)!r}, year={self.year!r}, split={self.split!r}, "
                f"resolution={self.resolution!r}, {len(self)} sequences)")

    def frames(self, seq: str) -> list[Path]:
        """JPEG frame paths of `seq` in natural (temporal) order: 2.jpg before 10.jpg; the same as
        sorted for DAVIS's zero-padded names (at least one, else `InputError`; so too for a JPEG
        not named like the frames or two of one number, `in_frame_order`)."""
        folder = self.root / "JPEGImages" / self.resolution / seq
        return in_frame_order(folder, _list_files(folder, "*.jpg", "frames"))

    def masks(self, seq: str) -> list[Path]:
        """Annotation PNG paths of `seq` (all frames in DAVIS val, the first in test-dev) in the
        frames' order and under the same naming checks (`in_frame_order`): sorted by name, a
        hand-made tree's 10.png came before 2.png, so frame 10 was scored in frame 2's place and
        the first annotation could be another frame's."""
        folder = self.root / "Annotations" / self.resolution / seq
        return in_frame_order(folder, _list_files(folder, "*.png", "annotations"), what="annotations")

    def first_mask(self, seq: str) -> np.ndarray:
        """The first annotation of `seq` as object ids, uint8 [H, W] (255 = void).

        Raises `InputError` if its size differs from the sequence's first frame, or if it holds no
        object: there is nothing to propagate, and the scorer skipped the sequence with a warning
        lost in the log, so the split's J&F silently left it out.
        """
        mask_path = self.masks(seq)[0]
        mask = read_mask(mask_path)
        height, width = image_size(self.frames(seq)[0])  # as the frames are read (EXIF orientation applied)
        check_mask_size(mask_path, mask, (width, height), "frames are")
        if not np.any((mask != 0) & (mask != VOID)):
            raise InputError(mask_path, f"the first annotation of sequence {seq!r} holds no object id (only 0 / "
                                        "void): there is nothing to propagate")
        return mask

    def check_sequence(self, seq: str) -> None:
        """Check from file headers only that `seq` can be propagated and scored; `InputError` naming
        the file otherwise.

        Checked: the first annotation is the first frame's (propagation starts from it); at least 3
        annotations (frames 1..T-2 are scored); every scored annotation has its frame; every
        annotation is a mask `read_mask` accepts, of the frames' size; every frame has one size.
        Headers cost seconds for a whole split, and each of these problems otherwise surfaced only
        after every sequence had been propagated (or, for a first annotation of a later frame, not
        at all: the masks were carried from the wrong frame).
        """
        frames, masks = self.frames(seq), self.masks(seq)
        if masks[0].stem != frames[0].stem:
            raise InputError(masks[0], f"the first annotation {masks[0].name} is not of the first frame "
                             f"{frames[0].name}: propagation starts from the first frame's annotation")
        if len(masks) < 3:
            raise InputError(masks[0].parent, f"{len(masks)} annotated frame(s): the semi-supervised protocol "
                             "scores frames 1..T-2 and needs at least 3 (an unannotated split such as "
                             "test-dev: `vidcorr propagate` each sequence instead)")
        stems = {frame.stem for frame in frames}
        for mask in masks[1:-1]:
            if mask.stem not in stems:
                raise InputError(frames[0].parent / f"{mask.stem}.jpg",
                                 f"frame not found, but its annotation {mask.name} is scored")
        height, width = shared_size(frames)
        for mask in masks:
            if (size := mask_size(mask)) != (width, height):
                raise InputError(mask, f"mask is {size[0]}x{size[1]} but frames are {width}x{height}")


def check_mask_size(mask_path: Path, mask: np.ndarray, size: tuple[int, int], reference: str) -> None:
    """Raise `InputError` unless `mask` ([H, W]) has `size` = (width, height).

    `reference` completes the message "X: mask is WxH but <reference> W'xH'", e.g. "frames are".
    """
    h, w = mask.shape
    if (w, h) != tuple(size):
        raise InputError(mask_path, f"mask is {w}x{h} but {reference} {size[0]}x{size[1]}")


def _pick_year(image_sets: Path, year: str | None) -> str:
    if not image_sets.is_dir():
        raise InputError(image_sets, "missing: a DAVIS root needs ImageSets/<year>/<split>.txt "
                         "(or name the sequences explicitly)")
    years = sorted(p.name for p in image_sets.iterdir() if p.is_dir())
    if year is not None:
        if year not in years:
            raise InputError(image_sets / year, f"no such year folder; found: {', '.join(years) or 'none'}")
        return year
    if len(years) != 1:
        found = ", ".join(years) if years else "no year folders"
        raise InputError(image_sets, f"cannot pick the year ({found}): pass year / --year")
    return years[0]


def _read_split(year_dir: Path, split: str) -> list[str]:
    split_file = year_dir / f"{split}.txt"
    if not split_file.is_file():
        splits = sorted(p.stem for p in year_dir.glob("*.txt"))
        raise InputError(split_file, f"split file not found; splits here: {', '.join(splits) or 'none'}")
    names = [line.strip() for line in read_text(split_file, "split file of sequence names").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise InputError(split_file, "split file lists no sequences")
    return names


def _subset(listed: list[str], wanted: Sequence[str], split_file: Path) -> list[str]:
    known = set(listed)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise InputError(split_file, f"unknown sequence(s) {', '.join(unknown)}; "
                         f"the split lists {names_held(listed)}")
    return list(wanted)


def _list_files(folder: Path, pattern: str, what: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(folder, f"{what} folder of sequence {folder.name!r} not found")
    files = sorted(folder.glob(pattern))
    if not files:
        raise InputError(folder, f"no {pattern} {what} in sequence folder")
    return files
