"""Object-id mask PNGs: reading DAVIS-2016 / DAVIS-2017 annotations, writing palette PNGs.

A label map in vidcorr is ``uint8 [H, W]``: 0 = background, 1..254 = object ids, **255 = void**
(pixels the annotators left undecided, e.g. thin structures and object borders in DAVIS-2017).

Two on-disk layouts exist and both are read by `read_mask`:

* DAVIS-2017 (and every VOS results folder): a *palette* PNG (Pillow mode ``P``). The pixel value
  is the palette **index**, and the index is the object id; index 255 is void.
* DAVIS-2016: a binary *grayscale* PNG (mode ``L`` or ``1``) with values 0 / 255. Here 255 means
  **foreground** (object 1), not void; there is no void in DAVIS-2016.

A 16-bit grayscale PNG (OpenCV's uint16, some annotation tools) is read as the 8-bit one it holds.

Void semantics downstream: the DAVIS semi-supervised metric turns void into background and scores
it (see `vidcorr.metrics.davis`); propagation should not start labels from it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidcorr.errors import InputError
from vidcorr.io.atomic import atomic_file

VOID = 255


def _pascal_colormap() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: index bits interleaved into R, G, B (MSB first)."""
    idx = np.arange(256)
    cmap = np.zeros((256, 3), np.uint8)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= (((idx >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    cmap.flags.writeable = False
    return cmap


# (256, 3) uint8, read-only. Index 0 black, 1 (128,0,0) red, 2 (0,128,0) green, ..., 255 (224,224,192).
DAVIS_PALETTE: np.ndarray = _pascal_colormap()


def write_indexed_png(path: str | Path, labels: Any, palette: np.ndarray | None = None) -> None:
    """Write a label map as a palette ('P' mode) PNG with ``palette`` (default `DAVIS_PALETTE`).

    Args:
        path: destination; parent folders are created. Written to a temporary file in the same
            folder and renamed into place, so a crash never leaves a half-written mask.
        labels: [H, W] object ids (255 = void), a NumPy array or torch tensor of any integer dtype
            whose values lie in 0..255; stored as palette indices unchanged.
        palette: (256, 3) uint8 colours (`read_palette`: the first-frame mask's own); only the
            colours change with it, never the indices.
    """
    labels = _id_labels(path, labels)
    colours = DAVIS_PALETTE if palette is None else np.asarray(palette, np.uint8)
    if colours.shape != (256, 3):
        raise ValueError(f"{path}: palette must be (256, 3) uint8 colours, got {colours.shape}")
    img = Image.fromarray(np.ascontiguousarray(labels), mode="L")
    img.putpalette(colours.tobytes())  # 'L' -> 'P': the pixel values become indices as they are
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")


def _id_labels(path: str | Path, labels: Any) -> np.ndarray:
    """``labels`` as uint8 [H, W] ids; ValueError naming ``path`` for another shape, a non-integer dtype
    or values outside 0..255. Any integer dtype is taken (int64 from ``argmax``, a torch tensor on a GPU):
    ids are ids at any width, and a range check, not the dtype, says whether they fit a PNG's 8 bits."""
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported; this module does not import it
    if torch is not None and isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels must be integer ids [H, W] (values 0..255), got {labels.dtype} "
                         f"{labels.shape}")
    low, high = int(labels.min(initial=0)), int(labels.max(initial=0))
    if low < 0 or high > 255:
        raise ValueError(f"{path}: labels must be ids 0..255 (255 = void) to fit an 8-bit PNG, got values "
                         f"{low}..{high} ({labels.dtype})")
    return labels.astype(np.uint8, copy=False)


def read_palette(path: str | Path) -> np.ndarray | None:
    """The colours (256, 3) uint8 of an indexed ('P') mask PNG, None for a grayscale one.

    A palette shorter than 256 entries (PNG allows it) is completed from `DAVIS_PALETTE`, so every
    id has a colour. Read after `read_mask` has accepted the file (errors are its to raise);
    `read_mask_and_palette` gives both from one opening.
    """
    with Image.open(path) as img:
        return _palette_of(img)


def _palette_of(img: Image.Image) -> np.ndarray | None:
    """`read_palette` of an opened image."""
    if img.mode != "P":
        return None
    values = np.asarray(img.getpalette("RGB") or [], np.uint8)
    colours = DAVIS_PALETTE.copy()
    entries = values[: len(values) // 3 * 3].reshape(-1, 3)[:256]
    colours[: len(entries)] = entries
    return colours


def read_mask(path: str | Path) -> np.ndarray:
    """Read an annotation or prediction PNG as object ids.

    Returns:
        uint8 [H, W]: 0 background, 1..254 object ids, 255 void.

    Modes:
        'P'        palette indices are the ids; 255 stays void (DAVIS-2017).
        'L' / '1'  values within {0, 255}: a binary DAVIS-2016 mask, 255 -> object 1, no void.
                   Any other grayscale values are taken as ids like a palette (255 = void), the
                   way ``np.array(Image.open(p))`` reads them in the official DAVIS code.
        'I;16'     16-bit grayscale (also 'I', as Pillow < 10 opens it): values 0..255 read as the same
                   values in an 'L' mask (ids are ids at any bit depth, as the DAVIS code reads them);
                   values 0 / 65535 only, a binary mask at 16 bits, as object 1; others `InputError`.
        other      `InputError` (RGB/RGBA gets a message on palette vs RGB), as for a JPEG file.
    """
    return _read_mask(Path(path), with_palette=False)[0]


def read_mask_and_palette(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(`read_mask`, `read_palette`) of one mask PNG, opened once: ids uint8 [H, W] and the
    colours (256, 3) uint8, None for a grayscale mask."""
    return _read_mask(Path(path), with_palette=True)


def _read_mask(path: Path, with_palette: bool) -> tuple[np.ndarray, np.ndarray | None]:
    with _opened_mask(path) as img:
        mode, arr = img.mode, np.array(img)
        palette = _palette_of(img) if with_palette else None
    return mask_ids(arr, mode, path), palette


@contextlib.contextmanager
def _opened_mask(path: Path) -> Iterator[Image.Image]:
    """The mask file ``path`` opened, its format checked (`check_mask_format`); `InputError` naming
    it when it is missing, a folder or unreadable, also while the block reads its pixels."""
    try:
        with Image.open(path) as img:
            check_mask_format(img, path)
            yield img
    except FileNotFoundError:
        raise InputError(path, "mask file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a mask file") from None
    except (UnidentifiedImageError, OSError) as err:
        if _is_npy(path):  # ids saved with np.save: "cannot identify image file" said nothing of it
            raise InputError(path, "is a NumPy array (.npy), not a mask image: save the ids as a PNG "
                                   "(vidcorr.io.masks.write_indexed_png(path, ids)), or from Python give the "
                                   "array itself (np.load(path)); soft per-pixel labels go to --labels "
                                   "(vidcorr.propagate_labels)") from None
        raise InputError(path, f"cannot read mask: {err}") from None


def _is_npy(path: Path) -> bool:
    """Whether ``path`` starts as NumPy's .npy format does."""
    try:
        with path.open("rb") as file:
            return file.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def mask_ids(arr: np.ndarray, mode: str, path: Path | None) -> np.ndarray:
    """A mask image's pixels (H, W) as object ids uint8 [H, W], by its mode (`read_mask`'s rules; also for
    a PIL image given as the mask, `vidcorr.masks.read_first_mask`). path: for messages, None for no file."""
    if _is_16_bit(mode):
        arr, mode = _as_8_bit(arr, mode, path), "L"
    if mode == "1":
        return arr.astype(np.uint8)  # bool -> 0/1: the foreground is object 1
    if mode == "L":
        return _grey_ids(arr, path)
    return arr.astype(np.uint8, copy=False)


def _grey_ids(arr: np.ndarray, path: Path | None) -> np.ndarray:
    """An 8-bit grayscale mask's pixels uint8 (H, W) as ids (H, W), from one histogram of its values:
    0/255 only, a binary mask (255 is object 1); a smoothed binary mask `InputError`; else the values."""
    counts = np.bincount(arr.ravel(), minlength=256)
    if not counts[1:255].any():
        # Pitfall (0/255 vs palette 255): in a DAVIS-2016 grayscale mask 255 is the object.
        # Read as a palette index it would be void, and the sequence would have no object at all.
        return (arr == 255).astype(np.uint8)
    if smoothed := _smoothed_binary_levels(counts):
        raise InputError(path, f"is a grayscale mask with 0, 255 and {smoothed} grey levels between them, on fewer "
                               "pixels than 255: a binary mask that was anti-aliased, resized or blurred. Read "
                               "as ids, its object (255) would be void and its rim stray objects. Threshold it "
                               "(e.g. > 127 -> 255) and save it unsmoothed, or save ids as a palette PNG.")
    return arr.astype(np.uint8, copy=False)


def _is_16_bit(mode: str) -> bool:
    """Whether a Pillow mode is 16-bit grayscale: 'I;16' (and its byte orders), or 'I' (32-bit
    integers), as Pillow < 10 opens a 16-bit PNG."""
    return mode == "I" or mode.startswith("I;16")


def _as_8_bit(arr: np.ndarray, mode: str, path: Path | None) -> np.ndarray:
    """A 16-bit grayscale mask's pixels (H, W) as the 8-bit grayscale mask uint8 [H, W] they stand for:
    values 0..255 as they are, 0 / 65535 (a binary mask at full 16-bit white) as 0 / 255. `InputError`
    for other values: a mask's object ids are 1..254 (255 void; `vidcorr.masks` refuses larger ones), a
    cast to 8 bits would wrap the rest (256 -> background, 511 -> void, 300 -> 44), and guessing a
    renumbering or a threshold would change what the annotator drew."""
    low, high = int(arr.min(initial=0)), int(arr.max(initial=0))
    if low >= 0 and high <= 255:
        return arr.astype(np.uint8)
    if low >= 0 and bool(((arr == 0) | (arr == 65535)).all()):
        return np.where(arr == 65535, 255, 0).astype(np.uint8)
    raise InputError(path, f"is a 16-bit grayscale mask (mode {mode!r}) with values {low}..{high}: vidcorr reads ids "
                           "0..255 (255 void) or a binary 0/65535 mask (65535 is object 1) at 16 bits. Save its ids "
                           "renumbered 1..254 as 8 bits: vidcorr.io.masks.write_indexed_png(path, ids) (ids of any "
                           "integer dtype; 0 background), or threshold a binary mask's grey levels to 0/65535.")


def mask_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a mask file, refused as `read_mask` would refuse it (JPEG, RGB, unsupported
    mode, a 16-bit mask of values that are no ids, a smoothed 0/255 grayscale mask, unreadable): a cheap
    check of a whole annotation folder before a long run, which otherwise failed on a bad file only
    after hours of propagation. From the header alone for palette and 1-bit masks; a grayscale mask's
    values decide whether it is read at all, so its pixels are decoded once (`mask_ids`)."""
    with _opened_mask(Path(path)) as img:
        if img.mode == "L" or _is_16_bit(img.mode):
            mask_ids(np.asarray(img), img.mode, Path(path))
        return img.size


def check_mask_format(img: Image.Image, path: Path | None) -> None:
    """`InputError` unless ``img`` (an opened file) can hold object ids, by its format and mode: a 'P',
    'L' or '1' PNG, or a 16-bit grayscale one. A grayscale mask's values are checked as they are read
    (`mask_ids`: smoothed 0/255, 16-bit values that are no ids), so that its pixels are converted once."""
    mode = img.mode
    # A JPEG cannot hold ids: lossy compression scatters values around every border, so a
    # 0/255 mask read as ids turned its object (mostly 255) into void and its rim into a
    # dozen stray ids, and the object was lost without a word.
    if img.format in ("JPEG", "MPO"):
        raise InputError(path, "is a JPEG: lossy compression alters pixel values, so it cannot hold "
                         "object ids. Save the mask as a PNG (palette of ids, or 0/255 grayscale).")
    # Pitfall (palette vs RGB): np.array of a 'P' image gives the indices (the ids). An
    # image converted to RGB, or saved by a tool that drops the palette, only has colours,
    # and colours are not ids; guessing a colour->id map would silently mislabel objects.
    if mode in ("RGB", "RGBA") and _is_grey(img):
        # A mask painted white on black in an image editor is saved as RGB: the palette advice
        # below did not tell its author the one conversion it needs.
        raise InputError(path, f"is an {mode} image of grey levels only (a black-and-white mask saved in "
                               "colour), not a grayscale or palette mask of object ids. Save it as grayscale: "
                               "Image.open(path).convert('L').save(path) (0/255: 255 is object 1).")
    if mode in ("RGB", "RGBA"):
        raise InputError(
            path,
            f"is an {mode} image, not an indexed (palette) mask: its colours are not object ids. "
            "Save masks as 'P' mode PNGs whose indices are the ids (vidcorr.io.masks."
            "write_indexed_png); a DAVIS-coloured RGB mask can be converted with "
            "img.quantize(palette=<'P' image with DAVIS_PALETTE>, dither=Image.Dither.NONE).",
        )
    if mode == "LA":  # an editor's grayscale export with transparency (GIMP): "unsupported PNG mode" said no more
        raise InputError(path, "is a grayscale image with an alpha channel (mode 'LA'), not a grayscale or palette "
                               "mask of object ids. Save it without alpha: Image.open(path).convert('L').save(path) "
                               "(grey levels kept, transparency dropped; 0/255: 255 is object 1).")
    if mode not in ("P", "L", "1") and not _is_16_bit(mode):  # a 16-bit mask's values decide: `mask_ids`
        raise InputError(path, f"unsupported PNG mode {mode!r}: expected a palette ('P') "
                         "or grayscale ('L'/'1', 16-bit 'I;16') mask of object ids")


def _is_grey(img: Image.Image) -> bool:
    """Whether an opened RGB / RGBA image has R = G = B at every pixel (and RGBA is opaque)."""
    pixels = np.asarray(img)
    rgb = pixels[..., :3]
    opaque = pixels.shape[-1] == 3 or bool((pixels[..., 3] == 255).all())
    return opaque and bool((rgb == rgb[..., :1]).all())


def _smoothed_binary_levels(counts: np.ndarray) -> int:
    """How many grey levels a smoothed 0/255 mask has between 0 and 255, else 0. counts: (256,) pixels
    of each value.

    Ids stored as grayscale are blobs of a few values with void (255) as thin bands between them;
    smoothing a binary mask leaves 255 as the blob and many levels on its rim. So: 0 and 255
    present, at least 3 other levels, and fewer pixels on them than on 255.
    """
    grey = counts[1:255]
    levels = int(np.count_nonzero(grey))
    if counts[0] and levels >= 3 and grey.sum() < counts[255]:
        return levels
    return 0
