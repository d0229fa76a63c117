"""Keypoints as soft labels: Gaussian heatmaps in, top-k weighted averages out (METHODS.md §6.2).

A set of J keypoints becomes J + 1 label channels: channel 0 is background, channel 1 + j a
Gaussian around joint j. They are propagated by `vidcorr.propagate.Propagator` like any soft
label map, and each joint channel is decoded back to coordinates by the weighted average of its
top-k values. Three protocol details (METHODS.md §1.9, §3.4, §4.6):

- UVC / CRW: sigma = 0.5 *feature cells*, heatmaps drawn at feature resolution, background = 1
  where no joint Gaussian reaches (their ``lbls.sum(-1) == 0``), decoded at feature resolution
  (top-5 UVC, top-3 CRW). UVC min-max normalises the maps before decoding, CRW does not.
- STT: sigma = 4 *pixels* drawn at full resolution, resized bilinearly to the features, decoded
  at full resolution (top-5) after bilinear upsampling; no min-max for heatmaps.

Transport is linear per channel, so the background channel never changes a decoded joint; it is
kept for parity with the references and for argmax overlays.

Coordinates are original-frame pixels with pixel centres at integer positions. A pixel x maps to
the feature coordinate u = (x + 0.5) h / H - 0.5, the convention of ``align_corners=False``
resizing that the propagator uses for labels, so that cell i is centred on the pixels it pools.
The references instead scale by H / h without the half-pixel shift (a constant offset of
(stride - 1) / 2 px between labels and features) and snap each Gaussian to a whole cell; we centre
it at the exact sub-cell position. Encode then decode returns the input to within the top-k
truncation bias of a sampled Gaussian: none when the top-k cells lie symmetrically around the point
(a cell centre with top-5, midway between four centres with top-4), at most 0.062 cells for
sigma 0.5 / top-5 and 0.167 cells for top-3 (tests/test_keypoints.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidcorr.errors import InputError
from vidcorr.labels import minmax_per_channel
from vidcorr.propagate import Propagator, first_and_rest

# Gaussians are cut at 3 sigma, as the pose-hg-train drawing code the references share does.
TRUNCATE_SIGMAS = 3.0


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints (J, 2) <-> heatmap labels (J + 1, H, W).

    sigma, sigma_unit: Gaussian width in feature ``cell``s (drawn at feature resolution) or in
        original-frame ``pixel``s (drawn at full resolution).
    topk: values averaged per joint when decoding. decode_at: ``feature`` resolution or the
        ``original`` frame size (after bilinear upsampling). minmax: per-channel min-max
        normalisation before decoding (UVC).
    """

    sigma: float = 0.5
    sigma_unit: Literal["cell", "pixel"] = "cell"
    topk: int = 5
    decode_at: Literal["feature", "original"] = "feature"
    minmax: bool = False

    def as_dict(self) -> dict:
        return {"sigma": self.sigma, "sigma_unit": self.sigma_unit, "topk": self.topk,
                "decode_at": self.decode_at, "minmax": self.minmax}

    def encode(self, points: np.ndarray, original_hw: tuple[int, int], feature_hw: tuple[int, int],
               visible: np.ndarray | None = None) -> Tensor:
        """points: (J, 2) pixels (x, y) -> labels (J + 1, H, W) at the original frame size.

        Invisible joints (``visible`` False) get an all-zero channel. In ``cell`` mode the map is
        drawn at ``feature_hw`` and expanded to the frame by nearest-neighbour blocks, which the
        propagator's label downsampling (nearest, or bilinear when each cell spans >= 2 pixels)
        maps back onto exactly the drawn cells.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        keep = np.ones(len(pts), bool) if visible is None else np.asarray(visible, bool)
        if self.sigma_unit == "pixel":
            return _with_background(_gaussians(pts, keep, original_hw, original_hw, self.sigma))
        h, w = feature_hw
        if original_hw[0] < 2 * h or original_hw[1] < 2 * w:
            raise ValueError(f"feature map {w}x{h} is finer than half the frame "
                             f"{original_hw[1]}x{original_hw[0]}: cell-unit heatmaps cannot be expanded exactly")
        small = _with_background(_gaussians(pts, keep, original_hw, feature_hw, self.sigma))
        return F.interpolate(small[None], size=original_hw, mode="nearest-exact")[0]

    def decode(self, soft: Tensor, original_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """soft: (J + 1, h, w) propagated labels -> (coords (J, 2) pixels, visible (J,) bool).

        A joint whose channel is all zero (nothing reached it) is not visible and gets NaN
        coordinates; PCK leaves it out, as the references do with their ``-1`` marker.
        """
        maps = soft[1:].float()
        if self.decode_at == "original":
            maps = F.interpolate(maps[None], size=original_hw, mode="bilinear", align_corners=False)[0]
        if self.minmax:
            maps = minmax_per_channel(maps)
        h, w = maps.shape[-2:]
        flat = maps.flatten(1)
        values, index = flat.topk(min(self.topk, flat.shape[1]), dim=1)
        total = values.sum(dim=1, keepdim=True)
        weights = values / total.clamp_min(1e-12)
        u = (weights * (index % w).to(weights.dtype)).sum(dim=1)
        v = (weights * torch.div(index, w, rounding_mode="floor").to(weights.dtype)).sum(dim=1)
        coords = torch.stack([_to_pixels(u, w, original_hw[1]), _to_pixels(v, h, original_hw[0])], dim=1)
        visible = (flat.sum(dim=1) > 0).cpu().numpy()
        coords = coords.double().cpu().numpy()
        coords[~visible] = np.nan
        return coords, visible


# Per preset: UVC jhmdb branch (TimeCycle-derived test code, hence also timecycle), CRW, STT.
CODECS: dict[str, HeatmapCodec] = {
    "uvc": HeatmapCodec(0.5, "cell", 5, "feature", minmax=True),
    "timecycle": HeatmapCodec(0.5, "cell", 5, "feature", minmax=True),
    "crw": HeatmapCodec(0.5, "cell", 3, "feature", minmax=False),
    "stt": HeatmapCodec(4.0, "pixel", 5, "original", minmax=False),
}


def codec_for(preset_name: str) -> HeatmapCodec:
    """The keypoint codec of a preset's protocol (CRW's for unknown names)."""
    return CODECS.get(preset_name, CODECS["crw"])


def _gaussians(points: np.ndarray, keep: np.ndarray, original_hw: tuple[int, int],
               grid_hw: tuple[int, int], sigma: float) -> Tensor:
    """(J, h, w) unnormalised Gaussians (peak 1) on a grid_hw grid, cut at TRUNCATE_SIGMAS."""
    h, w = grid_hw
    H, W = original_hw
    # pixel -> grid coordinate with pixel centres aligned (align_corners=False convention)
    u = torch.from_numpy((points[:, 0] + 0.5) * w / W - 0.5)
    v = torch.from_numpy((points[:, 1] + 0.5) * h / H - 0.5)
    dx2 = ((torch.arange(w, dtype=torch.float64)[None] - u[:, None]) ** 2).float()  # (J, w)
    dy2 = ((torch.arange(h, dtype=torch.float64)[None] - v[:, None]) ** 2).float()  # (J, h)
    d2 = dy2[:, :, None] + dx2[:, None, :]
    maps = torch.exp(-d2 / (2 * sigma**2))
    maps[d2 > (TRUNCATE_SIGMAS * sigma) ** 2] = 0.0
    maps[torch.from_numpy(~keep)] = 0.0
    return maps


def _with_background(joints: Tensor) -> Tensor:
    """(J, h, w) -> (J + 1, h, w): background 1 where no joint has mass (UVC / CRW)."""
    background = (joints.sum(dim=0, keepdim=True) == 0).float()
    return torch.cat([background, joints])


def _to_pixels(coord: Tensor, cells: int, pixels: int) -> Tensor:
    """Grid coordinate -> original pixel (inverse of the mapping in `_gaussians`)."""
    return (coord + 0.5) * pixels / cells - 0.5


# --------------------------------------------------------------------------- propagation


def check_heatmap_scale(propagator: Propagator, codec: HeatmapCodec, original_hw: tuple[int, int],
                        feature_hw: tuple[int, int]) -> None:
    """`InputError` when the preset enlarges frames so much that ``cell`` heatmaps cannot be drawn.

    feature_hw: the grid (h, w) the encoder gave for the first frame at the preset's input size.
    A cell-unit Gaussian is drawn on the feature grid and expanded to the frame in whole-pixel
    blocks, which needs every feature cell to cover >= 2 pixels of the frame. A preset that
    resizes to a fixed size (uvc: short side 480, timecycle: 320) breaks this on small frames
    (128x96 footage gives 80x60 features); without this check the user got a raw ValueError.
    """
    if codec.sigma_unit != "cell":
        return
    (h, w), (height, width) = feature_hw, original_hw
    if height >= 2 * h and width >= 2 * w:
        return
    # Input pixels per cell, measured (a module of one's own has no stride to read): the input short
    # side that gives cells of >= 2 frame pixels.
    input_hw = propagator.preset.size.input_size(*original_hw)
    cell = min(input_hw[0] / h, input_hw[1] / w)
    largest = int(cell * (min(original_hw) // 2))
    raise InputError(None, f"preset '{propagator.preset.name}' enlarges the {width}x{height} frames to "
                           f"{w}x{h} feature cells, finer than half the frame: its keypoint heatmaps (sigma "
                           f"{codec.sigma:g} cell) need cells of at least 2x2 pixels. Use a smaller input "
                           f"size: --size {min(largest, min(original_hw))} (size= from Python) or less.")


def propagate_keypoints(
    propagator: Propagator,
    frames: Iterable[np.ndarray],
    points: np.ndarray,
    codec: HeatmapCodec,
    visible: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(frame, coords (J, 2), visible (J,))`` for every frame, the first included.

    frames: RGB uint8 (H, W, 3); points: (J, 2) first-frame keypoints in pixels, NaN for one
    without a position; visible: (J,) bool (`first_visibility`: default, every keypoint with a
    position). Frame 0 gets the given keypoints (NaN where not visible). The heatmaps are drawn on
    the grid the encoder gives for the first frame (any module: its grid need not be
    ceil(input / stride)); `check_heatmap_scale` runs on it. Streaming: at most one encoder batch
    of frames is held besides the propagator's context.
    """
    first, stream = first_and_rest(frames)
    original_hw = tuple(first.shape[:2])
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    vis = first_visibility(pts, visible)

    def heatmaps(feature_hw: tuple[int, int]) -> Tensor:
        check_heatmap_scale(propagator, codec, original_hw, feature_hw)
        return codec.encode(pts, original_hw, feature_hw, vis)

    propagator.start(first, heatmaps)  # one encoder pass on the first frame gives its grid and memory
    yield first, np.where(vis[:, None], pts, np.nan), vis
    for frame, soft in propagator.follow(stream):  # every frame on the first one's grid (`Propagator`)
        coords, seen = codec.decode(soft, original_hw)
        yield frame, coords, seen


# --------------------------------------------------------------------------- FIRST.json


@dataclass(frozen=True)
class KeypointSet:
    """A user's first-frame keypoints: points (J, 2) pixels, visible (J,), names, skeleton edges."""

    points: np.ndarray
    visible: np.ndarray
    names: list[str]
    edges: list[tuple[int, int]]


def read_keypoints_json(path: str | Path) -> KeypointSet:
    """Read ``{"keypoints": [[x, y], ...], "names"?: [...], "edges"?: [[i, j], ...], "visible"?: [...]}``.

    x, y are 0-based pixels of the first frame (pixel centres at integers); a keypoint without a
    position is ``null`` (or NaN, as Python's json writes ``np.nan``) and gets NaN points.
    Names default to "0", "1", ...; edges to none; visible to every keypoint with a position
    (`first_visibility`: a visible one without a position is an `InputError` naming it).
    """
    path = Path(path)
    try:
        # From bytes json finds the encoding: UTF-8 with or without a Windows editor's BOM, and the
        # UTF-16 of Windows PowerShell's `>`, which the binary-file message below took for a mask or .npy
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(path, "keypoints file not found") from None
    except OSError as err:  # a folder, no permission
        raise InputError(path, f"cannot read keypoints file ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        if path.suffix.lower() == ".mat":  # JHMDB's joint_positions.mat, the likely one to be given
            raise InputError(path, "is a MATLAB file, not the JSON file --keypoints takes: write the first "
                                   "frame's joints to FIRST.json as docs/keypoints.md shows "
                                   "(read_joints(mat)[0])") from None
        if isinstance(err, UnicodeDecodeError):  # a mask PNG or a .npy given to the wrong option
            raise InputError(path, 'is a binary file, not the JSON text --keypoints takes: {"keypoints": '
                                   '[[x, y], ...]} (docs/keypoints.md); a mask goes to --mask, a .npy to '
                                   '--labels') from None
        raise InputError(path, f"not valid JSON: {err}") from None
    if not isinstance(data, dict) or "keypoints" not in data:
        raise InputError(path, 'expected a JSON object with a "keypoints" list of [x, y] pairs')
    points = _point_array(path, data["keypoints"])
    n = len(points)
    names = data.get("names", [str(i) for i in range(n)])
    if not isinstance(names, list) or len(names) != n or not all(isinstance(s, str) for s in names):
        raise InputError(path, f'"names" must be a list of {n} strings')
    visible = data.get("visible")
    if visible is not None and (not isinstance(visible, list) or len(visible) != n
                                or not all(isinstance(b, bool) for b in visible)):
        numbers = isinstance(visible, list) and any(_is_number(b) for b in visible)
        # COCO's v (0, 1, 2) or a 0/1 list is the likely mistake: say what to write instead
        raise InputError(path, f'"visible" must be a list of {n} booleans'
                               + (", true / false, not numbers (COCO's v: true where v > 0)" if numbers else ""))
    edges = data.get("edges", [])
    # bool is an int to isinstance (true read as 1); an edge from a keypoint to itself draws nothing,
    # most likely a typo for another index
    if not isinstance(edges, list) or not all(
            isinstance(e, list) and len(e) == 2 and e[0] != e[1]
            and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in e) for e in edges):
        raise InputError(path, f'"edges" must be a list of [i, j] pairs of two different keypoint indices '
                               f'in 0..{n - 1}')
    return KeypointSet(points, first_visibility(points, visible, names, path), names, [tuple(e) for e in edges])


def first_visibility(points: np.ndarray, visible: np.ndarray | list[bool] | None = None,
                     names: list[str] | None = None, path: str | Path | None = None) -> np.ndarray:
    """Which first-frame keypoints are visible: points (J, 2) pixels, visible (J,) bool or None -> (J,) bool.

    A NaN coordinate means the keypoint has no position (absent from the first frame, or ``null`` in
    FIRST.json). With ``visible`` None such keypoints are the invisible ones; a keypoint marked
    visible without a position is a contradiction, and it used to be propagated as an empty channel
    without a word: `InputError` naming it (and ``path``). An infinite coordinate is never a
    position: `InputError` too. ValueError when ``visible`` is not one flag per keypoint.
    """
    points = np.asarray(points, np.float64)
    absent = np.isnan(points).any(axis=1)
    if visible is None:
        shown = ~absent
    else:
        shown = np.asarray(visible, bool)
        if shown.shape != (len(points),):
            raise ValueError(f"visible has shape {shown.shape}; expected ({len(points)},), one per keypoint")
    infinite = np.isinf(points).any(axis=1)
    bad = np.flatnonzero(infinite | (shown & absent))
    if bad.size:
        k = int(bad[0])
        where = f"{_keypoint(k, names)} at ({points[k, 0]:g}, {points[k, 1]:g})"
        if infinite[k]:
            raise InputError(path, f"{where} has an infinite coordinate; give its x, y, or NaN (null in JSON) "
                                   f"for a keypoint without a position")
        raise InputError(path, f"{where} has no position (NaN) but is marked visible; give its x, y or mark it "
                               f"not visible (\"visible\": false in JSON, visible[{k}] = False)")
    return shown.copy()


def _keypoint(k: int, names: list[str] | None) -> str:
    """'keypoint 3 (left wrist)', or 'keypoint 3' when it has no name of its own."""
    name = names[k] if names is not None else str(k)
    return f"keypoint {k}" if name == str(k) else f"keypoint {k} ({name})"


def check_first_keypoints(kps: KeypointSet, frame_hw: tuple[int, int], path: str | Path | None = None) -> KeypointSet:
    """Every visible keypoint must lie on the first frame (H, W), and at least one must be visible;
    `InputError` naming path (and the point).

    The one check both the command line and `vidcorr.propagate_keypoints` run on the final first-frame
    visibility (after a ``visible=`` that replaces the file's list).
    """
    if len(kps.visible) == 0:  # (0, 2) from Python: "all 0 have no position" said what is not the matter
        raise InputError(path, "no keypoints given (an empty list): give the first frame's (J, 2) x, y pixels")
    if not kps.visible.any():
        # Propagating no keypoint at all gave an all-null result without a word.
        raise InputError(path, f"no keypoint is visible in the first frame (all {len(kps.visible)} have no position "
                               f"or are marked not visible): there is nothing to propagate")
    h, w = frame_hw
    x, y = kps.points[:, 0], kps.points[:, 1]
    outside = kps.visible & ~_on_frame(x, y, frame_hw)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        # numpy's (row, column) order is (y, x): when every visible point lands on the frame swapped, say so
        swapped = _on_frame(y, x, frame_hw)[kps.visible].all()
        raise InputError(path, f"{_keypoint(k, kps.names)} at ({x[k]:g}, {y[k]:g}) lies outside the "
                               f"{w}x{h} first frame; mark it \"visible\": false or fix the coordinates"
                               + ("; keypoints are [x, y] (column, row): swapped, every visible one lies on "
                                  "the frame" if swapped else ""))
    return kps


def _on_frame(x: np.ndarray, y: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """(J,) whether pixel coordinates x, y (J,) lie on a frame (H, W), pixel centres at integers."""
    h, w = frame_hw
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def _point_array(path: Path, raw) -> np.ndarray:
    """(J, 2) float64 from the JSON list; ``null`` (no position) becomes NaN, as NaN is kept:
    `first_visibility` decides whether that is allowed."""
    if not (isinstance(raw, list) and raw):
        raise InputError(path, '"keypoints" must be a non-empty list of [x, y] number pairs (null for a '
                               'keypoint without a position)')
    # COCO's layouts are the likely mistakes: a flat x, y, v list, or [x, y, v] triplets; naming the
    # entry (of 15 or 17) says where to look, which one message for the whole list did not.
    if all(_is_number(c) for c in raw):
        raise InputError(path, f'"keypoints" is a flat list of {len(raw)} numbers; give one [x, y] pair per '
                               'keypoint, [[x0, y0], [x1, y1], ...] (COCO\'s x, y, v triplets: their x, y, and '
                               'the v > 0 test as "visible")')
    for k, p in enumerate(raw):
        if not (p is None or isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p)):
            triplet = isinstance(p, list) and len(p) == 3
            shown = json.dumps(p)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."  # the message stays one line
            raise InputError(path, f'"keypoints" entry {k} is {shown}, not an [x, y] pair of numbers '
                                   '(null for a keypoint without a position)'
                                   + ('; an [x, y, v] triplet? give [x, y], and true where v > 0 in "visible"'
                                      if triplet else ''))
    return np.asarray([[math.nan, math.nan] if p is None else p for p in raw], dtype=np.float64)


def _is_number(value) -> bool:
    """A JSON number (``true`` / ``false`` are bools, which Python counts as ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
