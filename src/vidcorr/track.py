"""Box tracking with learned correspondence: UVC's region localisation, or a DCFNet head.

Two trackers share one way of looking at a frame (`PatchSampler`: cut a region around a centre,
resample it to a fixed size, embed it with the frozen encoder):

* ``"localise"`` (`LocaliseTracker`, UVC §3.2 and §4.5): the first box's features are the template;
  in every new frame a search region around the previous box is embedded, the template->search
  affinity is normalised over *search* positions (`vidcorr.affinity.locate_in_target`), and the new
  box is the mean transported coordinate (UVC Eq. 3) with half-size 2 x mean absolute deviation
  (Eq. 4, `vidcorr.affinity.region_from_coordinates`), damped and clamped.
* ``"dcf"`` (`vidcorr.dcf.DCFTracker`): DCFNet's closed-form correlation filter on the same features.

Scripting API (also behind ``vidcorr propagate --box``)::

    for box in track_video(encoder, open_frames("video.mp4"), (x, y, w, h), tracker="dcf"):
        ...   # one (x, y, w, h) per frame, first frame included; frame = draw_box(frame, box)

Boxes are (x, y, w, h) floats in 0-based pixel coordinates (top-left pixel = (0, 0), see
`vidcorr.io.tracking`). Frames are pulled one at a time and dropped, and a tracker keeps only its
template, so memory does not grow with the video.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.affinity import affinity_logits, locate_in_target, region_from_coordinates
from vidcorr.dcf import Box, DCFSettings, DCFTracker, start_box_state
from vidcorr.io.frames import as_rgb_frames
from vidcorr.models.encoder import inference_encoder
from vidcorr.models.external import encoder_stride
from vidcorr.propagate import check_features, first_and_rest, run_encoder
from vidcorr.strict_dict import check_settings, python_numbers, refuse_non_finite

TRACKERS = ("localise", "dcf")


class PatchSampler:
    """Resample regions of a frame and embed them with a frozen encoder.

    encoder: RGB (B, 3, H, W) in [0, 1] -> features (B, C, h, w). l2_normalise: unit-length cells.
    Pixels outside the frame take the frame's mean colour (the SiamFC / pysot convention; DCFNet
    pads with black), so the border adds no artificial edge.
    """

    def __init__(self, encoder: nn.Module, l2_normalise: bool, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.encoder = inference_encoder(encoder, self.device)
        self.l2_normalise = l2_normalise

    def image(self, frame: np.ndarray) -> Tensor:
        """RGB uint8 (H, W, 3) -> (3, H, W) float in [0, 1] on the sampler's device."""
        # torch.tensor copies: frames may be read-only
        return torch.tensor(frame, device=self.device).permute(2, 0, 1).float() / 255.0

    @torch.inference_mode()
    def crops(self, image: Tensor, centres: Tensor, sizes: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """Bilinear crops: image (3, H, W), centres / sizes (S, 2) x, y in pixels -> (S, 3, oh, ow)."""
        (oh, ow), (height, width) = out_hw, image.shape[-2:]
        centres, sizes = centres.to(self.device, torch.float32), sizes.to(self.device, torch.float32)
        # Output pixel j samples the continuous position x0 + (j + 0.5) * size / ow.
        tx = (torch.arange(ow, device=self.device) + 0.5) / ow - 0.5
        ty = (torch.arange(oh, device=self.device) + 0.5) / oh - 0.5
        xs = centres[:, :1] + tx[None] * sizes[:, :1]
        ys = centres[:, 1:] + ty[None] * sizes[:, 1:]
        n = len(centres)
        # grid_sample with align_corners=False: -1 is the left edge of pixel 0, +1 the right edge of the last.
        grid = torch.stack([(2 * xs / width - 1)[:, None, :].expand(n, oh, ow),
                            (2 * ys / height - 1)[:, :, None].expand(n, oh, ow)], dim=-1)
        mean = image.mean(dim=(1, 2), keepdim=True)
        out = F.grid_sample((image - mean).expand(n, -1, -1, -1), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
        return out + mean

    @torch.inference_mode()
    def features(self, image: Tensor, centres: Tensor, sizes: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """Embedded crops: (S, 2) centres and sizes in pixels -> (S, C, h, w) float32."""
        crops = self.crops(image, centres, sizes, out_hw)
        feats = run_encoder(self.encoder, crops, "crop(s)")
        check_features(self.encoder, feats, len(crops))  # a module of one's own may go wrong mid-video
        feats = feats.float().contiguous()  # from channels-last
        return F.normalize(feats, dim=1) if self.l2_normalise else feats


@dataclass(frozen=True)
class LocaliseSettings:
    """Every knob of the localisation tracker. UVC publishes no tracking settings (its OTB code is not
    released, METHODS.md §1.9); these defaults were chosen on the sequences in ../shared/data/tracking
    with the lab-pixels floor (docs/tracking.md has the sensitivity runs).

    search_scale: the search region is this multiple of the previous box, per axis (2.0: the object
        may move by half its size between frames).
    template_size: the box is resampled so that sqrt(w h) is this many pixels before embedding
        (64 px = about 8 x 8 cells at stride 8), its sides rounded to multiples of the encoder's
        stride (`encoder_stride`: measured for a module of one's own); the search region is
        embedded at the same scale.
    temperature, l2_normalise: the affinity ``f1.f2 / tau`` on L2-normalised cells (CRW's tau).
    topk: keep each template cell's k best search cells before the softmax (0 = all). Without it the
        diffuse tail of the softmax pulls each expected coordinate towards the window centre.
    iterations: re-centre the search window on the estimate and localise again, this many times per
        frame; what remains of that pull towards the window centre shrinks geometrically.
    calibrate: localise once on the first frame, where the box is known, and use the measured centre
        offset and Eq. 4 half-size as zero and unit (the soft coordinates are biased small).
    scale_rate: the size moves this fraction of the way towards the Eq. 4 estimate per frame (UVC's
        ``test_with_track.py`` damps box sizes with alpha = 0.1). Default 0 = fixed-size box, as UVC's
        released training code (``center2bbox``); on untrained features Eq. 4 barely responds to a
        wrong size and the box drifts (docs/tracking.md).
    max_scale_change: the Eq. 4 size ratio is clipped to [1/x, x] before damping. An axis along which
        calibration measured no extent (all cells on one row or column) keeps its size.
    min_scale_factor, max_scale_factor: size clamped to these multiples of the first box, at least
        4 px, at most the frame (DCFNet's limits).
    template_update: rate of the linear update of the template features towards the current box's
        (0 = first-frame template only).
    """

    search_scale: float = 2.0
    template_size: int = 64
    temperature: float = 0.05
    l2_normalise: bool = True
    topk: int = 4
    iterations: int = 3
    calibrate: bool = True
    scale_rate: float = 0.0
    max_scale_change: float = 1.5
    min_scale_factor: float = 0.2
    max_scale_factor: float = 5.0
    template_update: float = 0.0

    def __post_init__(self) -> None:
        # First, as `DCFSettings` does: inf passed the range checks (search_scale=inf: an
        # OverflowError at the first frame; temperature=inf: a box that never moves).
        python_numbers(self)  # np.int64 / np.float32 from code: the JSON results, the NaN check
        refuse_non_finite(self, "invalid localisation settings:")
        check_settings("localisation", self, {
            "search_scale": ("at least 1", self.search_scale >= 1),
            "template_size": ("at least 8", self.template_size >= 8),
            "temperature": ("positive", self.temperature > 0),
            "topk": ("0 (all) or more", self.topk >= 0),
            "iterations": ("at least 1", self.iterations >= 1),
            "scale_rate": ("in [0, 1]", 0 <= self.scale_rate <= 1),
            "max_scale_change": ("at least 1", self.max_scale_change >= 1),
            "min_scale_factor": ("positive and at most max_scale_factor",
                                 0 < self.min_scale_factor <= self.max_scale_factor),
            "template_update": ("in [0, 1]", 0 <= self.template_update <= 1),
        })


_MIN_REF_HALF = 1e-3  # search cells: a calibrated half-size at or below this measures nothing


def _to_multiple(values: np.ndarray, step: int) -> tuple[int, int]:
    """(x, y) pixel extents -> (h, w) rounded to multiples of ``step``, at least 2 steps."""
    w, h = (max(2, round(float(v) / step)) * step for v in values)
    return h, w


class LocaliseTracker:
    """UVC region localisation as a tracker. init(frame, box); update(frame) -> box."""

    def __init__(self, sampler: PatchSampler, settings: LocaliseSettings = LocaliseSettings()):
        self.sampler, self.settings = sampler, settings
        # Crop sides are rounded to multiples of the stride so that cells tile the crop. A module of one's
        # own is measured (assuming 8 sent a stride-16 module's box off the frame); one whose grid does
        # not follow the crop size tiles any crop.
        self.stride = encoder_stride(sampler.encoder, sampler.device) or 1
        self.template = torch.empty(0)
        self.pos = self.size = self.min_size = self.max_size = self.frame_wh = np.zeros(2)
        self.template_hw = self.search_hw = (0, 0)
        self.offset = np.zeros(2)  # calibrated centre bias, search-crop pixels (x, y)
        self.ref_half = np.ones(2)  # calibrated first-frame Eq. 4 half-size, search cells (x, y)

    def _embed(self, image: Tensor, size: np.ndarray, out_hw: tuple[int, int]) -> Tensor:
        centre = torch.tensor(self.pos[None], dtype=torch.float32)
        return self.sampler.features(image, centre, torch.tensor(size[None], dtype=torch.float32), out_hw)

    def init(self, frame: np.ndarray, box: Box) -> None:
        s = self.settings
        self.pos, self.size, self.frame_wh, self.min_size, self.max_size = start_box_state(
            frame, box, s.min_scale_factor, s.max_scale_factor)
        self.template_hw = _to_multiple(self.size * s.template_size / math.sqrt(box[2] * box[3]), self.stride)
        self.search_hw = _to_multiple(s.search_scale * np.array(self.template_hw[::-1]), self.stride)
        image = self.sampler.image(frame)
        self.template = self._embed(image, self.size, self.template_hw).flatten(2)
        self.offset, self.ref_half = np.zeros(2), np.ones(2)
        if s.calibrate:
            centre, half = self._localise(image)
            self.offset = centre - np.array(self.search_hw[::-1]) / 2
            self.ref_half = half

    def _localise(self, image: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """UVC Eq. 3-4 in a search window around the current box.

        -> centre (x, y) in search-crop pixels (mean transported coordinate) and half-size (x, y) in
        search cells (2 x mean absolute deviation of the transported coordinates).
        """
        crop_wh = np.array(self.search_hw[::-1], np.float64)
        window = self.size * crop_wh / np.array(self.template_hw[::-1])
        search = self._embed(image, window, self.search_hw)
        hs, ws = search.shape[-2:]
        scores = affinity_logits(self.template, search.flatten(2), self.settings.temperature)
        k = self.settings.topk
        if k and k < scores.shape[2]:
            # Keep each template cell's k best search cells: the rest of a flat softmax would pull
            # every expected coordinate towards the window centre (METHODS.md §5, top-k then softmax).
            kth = scores.topk(k, dim=2).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        centre, half = region_from_coordinates(locate_in_target(scores, (hs, ws)))
        cell = crop_wh / np.array([ws, hs])  # crop pixels per feature cell, (x, y)
        return (centre[0].cpu().numpy() + 0.5) * cell, half[0].cpu().numpy()

    def update(self, frame: np.ndarray) -> Box:
        s = self.settings
        image = self.sampler.image(frame)
        pixels_per_crop_pixel = self.size / np.array(self.template_hw[::-1])
        for _ in range(s.iterations):
            centre, half = self._localise(image)
            shift = (centre - self.offset - np.array(self.search_hw[::-1]) / 2) * pixels_per_crop_pixel
            self.pos = np.clip(self.pos + shift, 0.0, self.frame_wh)
        # An axis whose first-frame extent collapsed (every template cell transported to one row or
        # column) gives no unit to measure against: it keeps its size rather than growing by
        # max_scale_change every frame.
        ratio = np.divide(half, self.ref_half, out=np.ones(2), where=self.ref_half > _MIN_REF_HALF)
        ratio = np.clip(ratio, 1 / s.max_scale_change, s.max_scale_change)
        self.size = np.clip(self.size * (1 + s.scale_rate * (ratio - 1)), self.min_size, self.max_size)
        if s.template_update > 0:
            fresh = self._embed(image, self.size, self.template_hw).flatten(2)
            self.template = (1 - s.template_update) * self.template + s.template_update * fresh
        x, y = self.pos - self.size / 2
        return float(x), float(y), float(self.size[0]), float(self.size[1])


def tracker_settings(tracker: str, **options) -> LocaliseSettings | DCFSettings:
    """Default settings of ``tracker`` with ``options`` replacing fields; unknown names raise ValueError."""
    if tracker not in TRACKERS:
        raise ValueError(f"unknown tracker {tracker!r}; choose one of {', '.join(TRACKERS)}")
    cls = LocaliseSettings if tracker == "localise" else DCFSettings
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {tracker} setting(s) {unknown}; known: {sorted(known)}")
    return cls(**options)


def build_tracker(
    encoder: nn.Module, settings: LocaliseSettings | DCFSettings, device: str | torch.device = "cpu"
) -> LocaliseTracker | DCFTracker:
    """The tracker the settings belong to, on a `PatchSampler` around ``encoder``."""
    sampler = PatchSampler(encoder, settings.l2_normalise, device)
    if isinstance(settings, LocaliseSettings):
        return LocaliseTracker(sampler, settings)
    return DCFTracker(sampler, settings)


def _is_bool(value: object) -> bool:
    """A Python, numpy or 0-d torch boolean: each converts to 1.0 / 0.0 without complaint."""
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, Tensor) and value.dtype == torch.bool)


def check_first_box(box: Box, frame_hw: tuple[int, int] | None = None) -> Box:
    """box (x, y, w, h) as floats: four finite numbers, w and h > 0 and, given the frame's (H, W),
    overlapping it; `ValueError` naming the box and what it is not.

    A box partly outside the frame is accepted: OTB and VOT annotate objects that leave the frame
    edges, and the trackers sample outside pixels as the frame's mean colour. One that shares no
    area with the frame (pixel i spans [i, i + 1), so a box ending at x = 0 only touches it) has
    nothing to start from.
    """
    try:  # (x0, y0, x1, y1) corners are 4 numbers too: only the count can be checked
        values = list(box)
        # float(True) is 1.0 and list("1234") four digits: mix-ups, not a box
        if isinstance(box, (str, bytes)) or any(_is_bool(v) for v in values):
            raise TypeError
        x, y, w, h = (float(v) for v in values)
    except (TypeError, ValueError):  # not iterable, not 4 values, or not numbers
        raise ValueError(f"first box must be (x, y, w, h), 4 numbers, got {box!r}{_polygon_hint(box)}") from None
    if not (w > 0 and h > 0 and all(math.isfinite(v) for v in (x, y, w, h))):
        raise ValueError(f"first box {x:g},{y:g},{w:g},{h:g} must have finite values and positive size "
                         f"(w, h > 0)")
    if frame_hw is not None:
        height, width = frame_hw
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise ValueError(f"first box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} first frame "
                             f"(a box partly outside is fine; this one shares no pixel with the frame)")
    return x, y, w, h


def _polygon_hint(box: Any) -> str:
    """For 8 numbers, VOT's polygon (x1, y1, ... x4, y4), the box its corners span and how to get it
    (``propagate --box`` says the same with the box as its flag)."""
    try:
        if len(box) == 8 and not isinstance(box, (str, bytes)) and all(math.isfinite(float(v)) for v in box):
            from vidcorr.io.tracking import polygon_to_box

            spanned = ", ".join(f"{v:g}" for v in polygon_to_box(np.array([float(v) for v in box])))
            return (f"; a VOT polygon (x1,y1,...,x4,y4)? the box its corners span is ({spanned}): "
                    "vidcorr.io.tracking.polygon_to_box(np.asarray(polygon)), or read_vot_boxes(groundtruth.txt)[0]")
    except (TypeError, ValueError):
        pass
    return ""


def corner_box_warning(box: Box, frame_hw: tuple[int, int], flag: str | None = None) -> str | None:
    """What to tell a user whose first box (x, y, w, h), checked by `check_first_box`, looks like
    (x1, y1, x2, y2) corners, or None: a box running past the frame's right or bottom edge that,
    read as corners, lies inside the frame. Both are 4 numbers, so this can only warn (an object may
    leave the frame); corners were tracked as a box up to the frame's size without a word. No
    ground-truth box of the shared OTB and VOT sequences fits this. flag: the command line's option
    (``"--box"``), which the box to give is written as; else a Python tuple."""
    x, y, w, h = box
    height, width = frame_hw
    if (x + w <= width and y + h <= height) or not (x < w <= width and y < h <= height):
        return None
    fixed = (x, y, w - x, h - y)
    given = (f"{flag} " + ",".join(f"{v:g}" for v in box)) if flag else f"box ({', '.join(f'{v:g}' for v in box)})"
    fix = (f"{flag} " + ",".join(f"{v:g}" for v in fixed)) if flag else f"({', '.join(f'{v:g}' for v in fixed)})"
    return (f"{given} is x,y,w,h (top-left corner, width, height): it reaches ({x + w:g}, {y + h:g}), past "
            f"the edge of the {width}x{height} frame. If {w:g},{h:g} is its bottom-right corner (x1,y1,x2,y2), "
            f"give {fix}")


def track_video(
    encoder: nn.Module,
    frames_iter: Iterable[np.ndarray],
    first_box: Box,
    tracker: str = "localise",
    *,
    settings: LocaliseSettings | DCFSettings | None = None,
    device: str | torch.device = "cpu",
    **opts,
) -> Iterator[Box]:
    """Track one box through a stream of frames; yield (x, y, w, h) for every frame, the first included.

    encoder: RGB (B, 3, H, W) in [0, 1] -> (B, C, h, w), already cut at the wanted feature layer.
    frames_iter: RGB uint8 (H, W, 3) frames (e.g. `vidcorr.io.video.open_frames`), consumed lazily;
        other forms are converted as the API's (`vidcorr.io.frames.as_rgb_frames`: float, gray, torch).
    first_box: (x, y, w, h) in 0-based pixels on the first frame; it is yielded unchanged.
    tracker: "localise" or "dcf". settings: a full settings object, or ``opts`` replacing defaults
        (e.g. ``search_scale=3.0``; see `LocaliseSettings`, `vidcorr.dcf.DCFSettings`).
    """
    if settings is None:
        settings = tracker_settings(tracker, **opts)
    elif opts:
        raise ValueError("pass either `settings` or keyword options, not both")
    check_first_box(first_box)
    # as the API converts frames: a float frame in [0, 1] was divided by 255 again (`PatchSampler.image`),
    # a near-black video tracked without a word
    first, stream = first_and_rest(as_rgb_frames(frames_iter))
    x, y, w, h = check_first_box(first_box, first.shape[:2])
    trk = build_tracker(encoder, settings, device)
    trk.init(first, (x, y, w, h))
    yield x, y, w, h
    for frame in stream:
        yield trk.update(frame)


def track_frames(
    encoder: nn.Module, frames_iter: Iterable[np.ndarray], first_box: Box, tracker: str = "localise", **kwargs
) -> Iterator[tuple[np.ndarray, Box]]:
    """`track_video` yielding ``(frame, box)``: each frame with the box found on it. Holds only
    the frames the tracker has pulled and whose box is not out yet (one)."""
    pending: deque[np.ndarray] = deque()

    def remembered(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            pending.append(frame)
            yield frame

    for box in track_video(encoder, remembered(frames_iter), first_box, tracker, **kwargs):
        yield pending.popleft(), box


def draw_box(frame: np.ndarray, box: Box, colour: tuple[int, int, int] = (255, 48, 48),
             thickness: int = 3) -> np.ndarray:
    """A copy of an RGB uint8 frame (H, W, 3) with the box outline drawn inside its edges, clipped."""
    out = frame.copy()
    height, width = frame.shape[:2]
    x0, y0 = int(round(box[0])), int(round(box[1]))
    x1, y1 = int(round(box[0] + box[2])), int(round(box[1] + box[3]))
    t = max(1, min(thickness, x1 - x0, y1 - y0))
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return out  # entirely outside the frame
    for ya, yb in ((y0, y0 + t), (y1 - t, y1)):  # top and bottom bands
        out[max(ya, 0):max(min(yb, height), 0), cx0:cx1] = colour
    for xa, xb in ((x0, x0 + t), (x1 - t, x1)):  # left and right bands
        out[cy0:cy1, max(xa, 0):max(min(xb, width), 0)] = colour
    return out
