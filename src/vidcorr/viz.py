"""Pictures a person would rather look at than read: label overlays on frames, line plots,
correspondences between two frames.

Task-specific drawings (skeletons, boxes) live beside their tasks; this module holds the shared
mask overlay used by `vidcorr propagate` and the demo, the Pillow line plot behind the
evaluations' plots (matplotlib is not a dependency) and the match lines of `vidcorr match`.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidcorr.io.atomic import atomic_file
from vidcorr.io.masks import DAVIS_PALETTE

if TYPE_CHECKING:
    from vidcorr.correspond import Matches

# Ten line colours that stay apart (matplotlib's "tab10"), so a plot of ten objects needs no repeat.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def palette_index(ids: np.ndarray, size: int = 256) -> np.ndarray:
    """The palette row of each id, for a palette of ``size`` colours whose row 0 is the background's:
    ids 1..size-1 their own row, and past them the object colours repeat, id k taking row
    1 + (k - 1) % (size - 1) (the DAVIS palette: 256 -> 1, 299 -> 44); ids <= 0 row 0.

    ids: any shape, integer -> the same shape, int64."""
    ids = np.asarray(ids, np.int64)
    return np.where(ids > 0, (ids - 1) % (size - 1) + 1, 0)


def overlay_mask(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
                 palette: np.ndarray | None = None) -> np.ndarray:
    """Blend object colours (``palette`` (256, 3), default the DAVIS palette) into an RGB frame and
    outline each object in its colour at full brightness, `outline_width` px wide inside its edge.
    Ids past the palette reuse its object colours (`palette_index`), still outlined apart.

    frame: (H, W, 3) uint8 RGB; labels: (H, W) integer ids, 0 = background -> (H, W, 3) uint8.
    """
    from scipy import ndimage  # here, not at the top: importing scipy is no part of `vidcorr.propagate_masks`

    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but labels are "
                         f"{labels.shape[1]}x{labels.shape[0]}")
    out = frame.astype(np.float32)
    objects = labels > 0
    palette = DAVIS_PALETTE if palette is None else palette
    colours = palette[palette_index(labels, len(palette))].astype(np.float32)
    out[objects] = (1 - alpha) * out[objects] + alpha * colours[objects]
    # The outline in the tint's own colour (DAVIS's dark (128, 0, 0) on a brown bear) and 1 px wide
    # on a 480p frame could not be seen: the same hue at full brightness, wider on larger frames.
    width = outline_width(labels.shape)
    edges = labels != ndimage.grey_erosion(labels, size=2 * width + 1)
    out[edges & objects] = full_brightness(colours[edges & objects])
    return out.clip(0, 255).astype(np.uint8)


def outline_width(frame_hw: tuple[int, int]) -> int:
    """Pixels of a mask outline on a frame of (H, W): the short side / 240, halves rounded up (1 below
    360p, 2 at 360p and 480p, 3 at 720p, 5 at 1080p); Python's round(4.5) = 4 gave 1080p 4 px."""
    return max(1, math.floor(min(frame_hw) / 240 + 0.5))


def full_brightness(colours: np.ndarray) -> np.ndarray:
    """(N, 3) RGB colours -> (N, 3) float, scaled to a largest channel of 255 (hue kept); black turns
    white. The outline of a mask, and UVC-track's box, stand out against its half-tint this way."""
    peak = colours.max(axis=1, keepdims=True)
    return np.where(peak > 0, colours * 255.0 / np.maximum(peak, 1.0), 255.0)


def side_by_side(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, gap: int = 8) -> np.ndarray:
    """RGB uint8 images of one height (H, Wi, 3) placed left to right on white, ``gap`` px apart,
    each caption written in its top-left corner (`caption`) -> (H, sum Wi + gap * (n - 1), 3)."""
    height = images[0].shape[0]
    if any(image.shape[0] != height for image in images):
        raise ValueError(f"images must share a height, got {[image.shape[0] for image in images]}")
    canvas = Image.new("RGB", (sum(image.shape[1] for image in images) + gap * (len(images) - 1), height), "white")
    x = 0
    for index, image in enumerate(images):
        canvas.paste(Image.fromarray(caption(image, captions[index]) if captions else image), (x, 0))
        x += image.shape[1] + gap
    return np.asarray(canvas)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with ``text`` white on a black box in its top-left
    corner, in a font sized to H (`caption_font`); drawn on the image, so a long text is cut at its
    right edge (not drawn into the gap beside it in `side_by_side`)."""
    tile = Image.fromarray(image)
    font = caption_font(tile.height)
    margin = max(4, round(tile.height / 120))  # 4 px up to 480p, 9 at 1080p
    pad = max(2, margin // 2)
    draw, origin = ImageDraw.Draw(tile), margin + pad
    # one box height for every text (that of "Ag"), so captions side by side line up; the font's
    # blank rows above its letters (`shift`) are left out of the box
    _, top, _, bottom = draw.textbbox((origin, origin), "Ag", font=font)
    shift, right = top - origin, origin + math.ceil(draw.textlength(text, font=font))
    draw.rectangle([margin, margin, right + pad, bottom - shift + pad], fill="black")
    draw.text((origin, origin - shift), text, fill="white", font=font)
    return np.asarray(tile)


def frame_caption(what: str, index: int, file: str | None = None) -> str:
    """The caption of an overlay frame: what it shows and its 0-based frame number ("propagated ·
    frame 17"; "frame 17" where ``what`` is empty), then the frame's file where it came from a folder
    ("frame 2 · 00004.jpg"): its results are named after the file, which the number alone does not
    give where the folder's numbers start at 1 or have gaps."""
    shown = f"{what} · frame {index}" if what else f"frame {index}"
    return f"{shown} · {file}" if file else shown


def caption_size(height: int) -> int:
    """Pixels per em of a caption on an image ``height`` px tall: 12 up to 432p, height / 36 above
    (13 at 480p, 20 at 720p, 30 at 1080p), so it takes the same share of a frame at any size."""
    return max(12, round(height / 36))


def caption_font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at `caption_size` (Pillow >= 10.1 with FreeType, a scalable font); on
    Pillow 10.0, which has only the 11-px bitmap font, and on a Pillow built without FreeType, that
    bitmap font at every size."""
    try:
        return ImageFont.load_default(size=caption_size(height))
    except (TypeError, ImportError):
        # TypeError: Pillow 10.0, whose load_default() takes no size. ImportError: no FreeType, where a
        # size asks for the scalable font anyway ("The _imagingft C module is not installed").
        return ImageFont.load_default()


@dataclass(frozen=True)
class Curve:
    """One line of `line_plot`: points (xs[i], ys[i]) and its legend entry."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: tuple[int, int, int]
    width: int = 1


LEGEND_WIDTH = 200  # pixels right of the axes in a plot of `size`; more for a long entry


def line_plot(path: str | Path, curves: Sequence[Curve], *, title: str, x_label: str,
              x_ticks: Sequence[float], y_ticks: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
              y_label: str = "", size: tuple[int, int] = (720, 420)) -> None:
    """Draw ``curves`` on axes spanning the first to the last tick, legend to the right, and save
    a PNG (atomically). The image grows taller when the legend needs more rows than ``size`` gives,
    and wider for a legend entry longer than its `LEGEND_WIDTH` pixels (the axes keep their size)."""
    font = ImageFont.load_default()
    legend = 16 + 24 + math.ceil(max((font.getlength(c.label) for c in curves), default=0)) + 8
    left, right, top, bottom, row = 56, max(LEGEND_WIDTH, legend), 28, 44, 18
    width, height = size[0] - LEGEND_WIDTH + right, max(size[1], top + 10 + row * len(curves) + bottom)
    (x0, x1), (y0, y1) = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    for x in x_ticks:
        draw.line([xy(x, y0), xy(x, y1)], fill=(225, 225, 225))
        draw.text((xy(x, y0)[0] - 8, height - bottom + 6), f"{x:g}", fill="black", font=font)
    for y in y_ticks:
        draw.line([xy(x0, y), xy(x1, y)], fill=(225, 225, 225))
        draw.text((left - 28, xy(x0, y)[1] - 6), f"{y:.1f}", fill="black", font=font)
    draw.rectangle([xy(x0, y1), xy(x1, y0)], outline="black")
    draw.text((left, 8), title, fill="black", font=font)
    draw.text((xy((x0 + x1) / 2, y0)[0] - 3 * len(x_label), height - 18), x_label, fill="black", font=font)
    if y_label:  # written across, then turned a quarter to read upwards along the left edge
        across = Image.new("RGB", (math.ceil(font.getlength(y_label)) + 2, 12), "white")
        ImageDraw.Draw(across).text((1, 0), y_label, fill="black", font=font)
        upright = across.rotate(90, expand=True)
        img.paste(upright, (4, round((xy(x0, y0)[1] + xy(x0, y1)[1]) / 2 - upright.height / 2)))
    for index, curve in enumerate(curves):
        points = [xy(x, y) for x, y in zip(curve.xs, curve.ys)]
        if len(points) > 1:
            draw.line(points, fill=curve.colour, width=curve.width)
        elif points:
            draw.point(points, fill=curve.colour)
        lx, ly = width - right + 16, top + 10 + row * index
        draw.line([(lx, ly), (lx + 18, ly)], fill=curve.colour, width=curve.width)
        draw.text((lx + 24, ly - 6), curve.label, fill="black", font=font)
    with atomic_file(path) as tmp:
        img.save(tmp)


def write_jpeg_still(image: Image.Image, path: Path, scale: float) -> tuple[int, int]:
    """``image`` resized by ``scale`` (at least a pixel each way) and written to ``path`` as a JPEG,
    atomically: a still for the docs (scripts/overlay_still.py, scripts/uvc_track_still.py) ->
    its (width, height)."""
    # max(1, ...): a tiny scale rounded to 0 was PIL's "height and width must be > 0"
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    with atomic_file(path) as tmp:
        image.resize(size, Image.LANCZOS).save(tmp, format="JPEG", quality=85)
    return size


def draw_matches(frame_a: np.ndarray, frame_b: np.ndarray, matches: Matches, *, max_lines: int = 300,
                 show_rejected: bool = False, gap: int = 8, captions: tuple[str, str] | None = None) -> np.ndarray:
    """Frames A and B side by side (B scaled to A's height) with a line per match, and each frame's
    caption (e.g. "A · frame 0", `caption`) in its top-left corner, over the lines.

    frame_a: (Ha, Wa, 3), frame_b: (Hb, Wb, 3) uint8 RGB -> (Ha, Wa + gap + Wb * Ha / Hb, 3).
    Mutual matches are drawn in a colour that encodes where they start in A (hue across, brightness
    down, over the extent of the drawn points), so a coherent motion reads as an ordered fan;
    show_rejected adds the others in thin grey. At most max_lines matches are drawn, evenly spaced
    in the list (the grid order).
    """
    height, width_a = frame_a.shape[:2]
    scale = height / frame_b.shape[0]
    width_b = max(1, round(frame_b.shape[1] * scale))
    resized_b = np.asarray(Image.fromarray(frame_b).resize((width_b, height), Image.BILINEAR))
    canvas = Image.fromarray(side_by_side([frame_a, resized_b], gap=gap))
    draw = ImageDraw.Draw(canvas)
    shown = np.flatnonzero(matches.mutual if not show_rejected else np.ones(len(matches), bool))
    if len(shown) > max_lines:
        shown = shown[np.linspace(0, len(shown) - 1, max_lines).round().astype(int)]
    low = matches.points_a[shown].min(axis=0) if len(shown) else np.zeros(2)
    span = np.maximum(matches.points_a[shown].max(axis=0) - low, 1.0) if len(shown) else np.ones(2)
    for i in shown:
        (xa, ya), (xb, yb) = matches.points_a[i], matches.points_b[i]
        end = (width_a + gap + xb * scale, yb * scale)
        if matches.mutual[i]:
            hue, value = 0.85 * (xa - low[0]) / span[0], 1.0 - 0.45 * (ya - low[1]) / span[1]
            colour = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, value))
            draw.line([(xa, ya), end], fill=colour, width=1)
            for x, y in ((xa, ya), end):
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        else:
            draw.line([(xa, ya), end], fill=(160, 160, 160), width=1)
    picture = np.asarray(canvas)
    return _captioned(picture, [(0, width_a), (width_a + gap, width_b)], captions) if captions else picture


def _captioned(picture: np.ndarray, columns: Sequence[tuple[int, int]], captions: Sequence[str]) -> np.ndarray:
    """``picture`` (H, W, 3) with each caption written on its column (x, width) of it -> (H, W, 3)."""
    out = picture.copy()
    for (x, width), text in zip(columns, captions):
        out[:, x:x + width] = caption(np.ascontiguousarray(out[:, x:x + width]), text)
    return out
