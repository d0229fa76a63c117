"""Image files as video frames: a folder's frame files in natural order, one image read as RGB.

Frames come upright and 8-bit whatever the file: EXIF orientation is applied (phone photos), and
16-bit grayscale is scaled, not clipped.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vidcorr.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The version of the rules by which `list_frame_files` takes or refuses a folder's files: bump it
# with any change to them, and the training index lists its cached frame folders again
# (`vidcorr.data.videos`). 1: `refuse_odd_names`; 2: `refuse_same_numbers`.
FRAME_LISTING_VERSION = 2
EXIF_ORIENTATION = 0x0112  # 1 = upright; 5-8 swap width and height


def natural_key(name: str) -> list[int | str]:
    """Sort key treating digit runs as numbers: "2.jpg" < "10.jpg". isdecimal, the digits ``\\d``
    splits at: "²" is isdigit but no number int() reads, and raised on a name such as "²³.jpg"."""
    return [int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", name)]


def is_frame_file(path: Path) -> bool:
    """Whether a folder entry is a frame: an image file (by suffix), not a hidden one."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_frame_files(folder: Path, exclude: Collection[Path] = ()) -> list[Path]:
    """Image files of a frame folder (`is_frame_file`) in natural order; `InputError` if there are
    none, or if their names leave the order in doubt (`in_frame_order`).

    exclude: files to leave out (a first-frame mask kept among the frames is an image, not a frame).
    """
    skipped = {Path(p).resolve() for p in exclude}
    files = [p for p in folder.iterdir() if is_frame_file(p) and not (skipped and p.resolve() in skipped)]
    if not files:
        raise InputError(folder, f"folder has no frames ({'/'.join(IMAGE_SUFFIXES)} files)")
    return in_frame_order(folder, files)


def in_frame_order(folder: Path, files: list[Path], what: str = "frames") -> list[Path]:
    """The frame files of ``folder`` in natural order; `InputError` for images not named like the
    frames (`refuse_odd_names`) or two of one frame number (`refuse_same_numbers`). ``what``: the
    files' name in those errors, a plural in -s (a DAVIS folder of masks: "annotations")."""
    files = sorted(files, key=lambda p: natural_key(p.name))
    refuse_odd_names(folder, files, what)
    refuse_same_numbers(folder, files, what)
    return files


def frame_naming(path: Path) -> str:
    """A frame file's naming: its stem with every digit run as "#" ("frame_0001.png" -> "frame_#").
    The suffix is left out: a folder may mix .jpg and .png frames."""
    return re.sub(r"\d+", "#", path.stem.lower())


ODD_NAMES_SHOWN = 10


def refuse_odd_names(folder: Path, files: list[Path], what: str = "frames") -> None:
    """`InputError` naming the images of a numbered frame folder that are not named like its frames
    (``what``: their name in the error, as in `in_frame_order`).

    A same-size stray (cover.jpg, a preview, an exported annotation mask_00000.png) was read as one
    more frame, without a word, and shifted every result after it. Refused rather than left out
    with a warning: telling frames from strays by name is a guess, and a wrong guess that drops
    real frames silently is worse than one that stops and names them; moving a file out is
    a one-line fix. Folders whose images have no numbers at all (a.jpg, b.jpg) have no naming
    to go by and are read in name order as before.
    """
    names: dict[str, list[str]] = {}  # naming -> the files' names, in order
    for path in files:
        names.setdefault(frame_naming(path), []).append(path.name)
    if len(names) == 1 or not any("#" in naming for naming in names):
        return
    main = max(names, key=lambda naming: (len(names[naming]), "#" in naming))  # a tie: the numbered one
    odd = [name for naming, group in names.items() if naming != main for name in group]
    if len(names[main]) <= len(odd):  # no naming most images share: which are the frames is a guess
        groups = sorted(names.values(), key=len, reverse=True)[:ODD_NAMES_SHOWN]
        raise InputError(folder, f"images named in {len(names)} ways ("
                                 + ", ".join(f"{len(group)} like {group[0]}" for group in groups)
                                 + f"): their names do not tell the {what} from other images. Keep one "
                                   f"video's {what} in the folder, named alike")
    more = len(odd) - ODD_NAMES_SHOWN
    shown = ", ".join(sorted(odd, key=natural_key)[:ODD_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")
    raise InputError(folder, f"{len(odd)} image(s) not named like its {len(names[main])} {what} "
                             f"({names[main][0]}, ...): {shown}. They would be read as {what}: move them out "
                             f"of the folder (or rename them like the others if they are {what})")


def refuse_same_numbers(folder: Path, files: list[Path], what: str = "frames") -> None:
    """`InputError` naming the files of ``folder`` that are one frame by name: the same naming and
    numbers, written differently (1.jpg and 00001.jpg, 00001.jpg and 00001.png, A.jpg and a.jpg).
    ``what``: the files' name in the error, as in `in_frame_order`.

    Frames are ordered by their numbers, so two of one number have no order but the file system's
    listing: which one came first, and every later frame's index, was a matter of chance.
    """
    by_key: dict[tuple[int | str, ...], list[str]] = {}
    for path in files:
        by_key.setdefault(tuple(natural_key(path.stem)), []).append(path.name)
    same = [sorted(names) for names in by_key.values() if len(names) > 1]
    if not same:
        return
    more = len(same) - ODD_NAMES_SHOWN
    shown = "; ".join(" and ".join(names) for names in same[:ODD_NAMES_SHOWN]) + (
        f"; and {more} more" if more > 0 else "")
    one = what.removesuffix("s")
    raise InputError(folder, f"{len(same)} {one}(s) named more than once ({shown}): {what} are ordered by the "
                             f"numbers in their names, so the order of these is not known. Keep one image per "
                             f"{one} (move the others out of the folder)")


def read_image(path: str | Path) -> np.ndarray:
    """One image file as RGB uint8 (H, W, 3); `InputError` naming it if missing or unreadable."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = _upright_image(image)
            if image.mode == "I" or image.mode.startswith("I;16"):
                return _gray16_to_rgb(np.asarray(image))
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:  # caught here, not by a stat first: this runs once per frame of a folder
        raise InputError(path, "no such image file") from None
    except OSError as error:
        raise InputError(path, f"unreadable image ({error})") from None


def _gray16_to_rgb(values: np.ndarray) -> np.ndarray:
    """16-bit grayscale (H, W) (Pillow mode 'I;16' / 'I') -> RGB uint8 (H, W, 3), 0..65535 -> 0..255.

    Pillow's ``convert("RGB")`` clips these values at 255 instead of scaling them, so a 16-bit
    PNG frame (depth cameras, scientific or exported grayscale footage) would come out almost white.
    """
    return np.repeat(sixteen_to_eight_bits(values)[..., None], 3, axis=2)


def sixteen_to_eight_bits(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 uint8, rounded (a 16-bit image is full range)."""
    return ((np.clip(values.astype(np.int64), 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)


def _upright_image(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (phone photos), else unchanged (no copy)."""
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def shared_size(files: list[Path]) -> tuple[int, int]:
    """(H, W) every image of ``files`` has, from headers only (cheap, and before any work is done);
    `InputError` naming the first one of another size."""
    size = image_size(files[0])
    for file in files[1:]:
        if (other := image_size(file)) != size:
            raise InputError(file, f"frame is {other[1]}x{other[0]} but {files[0].name} "
                                   f"is {size[1]}x{size[0]}; all frames must share one size")
    return size


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as `read_image` returns it (EXIF orientation applied)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
    except OSError as error:
        raise InputError(path, f"unreadable image ({error})") from None
    return height, width
