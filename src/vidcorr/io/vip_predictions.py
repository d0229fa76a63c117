"""VIP predictions on disk: the class maps `vidcorr score vip` reads (``<video>/<frame>.png``) and the
part-instance predictions `eval vip` keeps beside them (``<video>/instances/<frame>.png``, 16-bit
instance ids, 0 = none, and ``<video>/instances/scores.json``) so that AP_part can be scored from
files: a resumed run's kept videos are scored from them, exactly as when they were propagated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidcorr.errors import InputError


def read_class_map(path: Path) -> np.ndarray:
    """A predicted class-map PNG (palette or grayscale, pixel value = class id) -> (H, W) uint8.

    Frame 0's map as `run_vip` writes it is the annotation, 255 (ignored) included; 255 counts only
    where the ground truth is not ignored, and there `ConfusionMatrix.update` refuses it.
    """
    # Values as they are, not `read_mask`: its DAVIS-2016 rule reads a grayscale map of only 0 and
    # 255 as 0 / 1, turning an invalid 255 into class 1 without a word. JPEG alters ids; RGB has colours.
    return _read_png_of_ids(path, "prediction", "(one <video>/<frame>.png per annotated frame)", ("P", "L"),
                            "a palette or grayscale PNG of class ids")


def write_instance_map(path: Path, ids: np.ndarray) -> None:
    """(H, W) instance ids as a 16-bit grayscale PNG (ids above 255 exist: a VIPSeg segment id)."""
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{path}: instance ids {ids.min()}..{ids.max()} do not fit a 16-bit PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint16)).save(path, format="PNG")


def read_instance_scores(path: Path) -> tuple[dict[int, int], dict[str, dict[int, float]]]:
    """``instances/scores.json`` -> ({instance id: class}, {frame: {instance id: score}})."""
    try:
        data = json.loads(path.read_text())
        classes = {int(k): int(v) for k, v in data["classes"].items()}
        scores = {frame: {int(k): float(v) for k, v in table.items()} for frame, table in data["scores"].items()}
    except FileNotFoundError:
        raise InputError(path, "part-instance scores not found (eval vip writes them beside the instance "
                               "maps)") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise InputError(path, f'cannot read part-instance scores ({error}); expected {{"classes": {{id: class}}, '
                               '"scores": {frame: {id: score}}}') from None
    return classes, scores


# Single-channel PNG modes whose pixel values are ids: 16-bit grayscale (as written; "I" in older
# Pillow), and 8-bit grayscale or palette, which hold ids under 256 as they are.
INSTANCE_MODES = ("I;16", "I;16B", "I", "L", "P")


def read_instance_map(path: Path) -> np.ndarray:
    """A `write_instance_map` PNG (or an 8-bit grayscale / palette PNG of ids) -> (H, W) int64 instance
    ids; `InputError` naming the file when it is missing, unreadable, not a PNG or not of one channel."""
    return _read_png_of_ids(path, "part-instance prediction", "", INSTANCE_MODES,
                            "a 16-bit grayscale PNG of part-instance ids (as eval vip writes them)").astype(np.int64)


def _read_png_of_ids(path: Path, what: str, where: str, modes: tuple[str, ...], expected: str) -> np.ndarray:
    """A one-channel PNG whose pixel values are ids -> (H, W) as stored; `InputError` naming ``path``
    when it is missing (``where`` says where it should be), unreadable, not a PNG or of a mode not in
    ``modes`` (``expected`` says what it should be)."""
    if not path.is_file():
        raise InputError(path, f"{what} not found {where}".rstrip())
    try:
        with Image.open(path) as img:
            kind, mode, ids = img.format, img.mode, np.array(img)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(path, f"cannot read {what} ({error})") from None
    if kind != "PNG" or mode not in modes:
        raise InputError(path, f"is a {kind} {mode} image; expected {expected}")
    return ids
