"""A discriminative correlation filter (DCF) head on frozen features, solved in closed form: DCFNet.

UVC §4.5 plugs its self-supervised features into a correlation-filter tracker (DCFNet, Wang et al.,
arXiv 1704.04057, and UDT) "while keeping other parts in the tracking framework unchanged". Here
the features come from any vidcorr encoder, frozen: there is no tracking data to train a head on.

The filter (linear kernel, multi-channel, as in DCFNet's ``DCFNet.update`` / ``forward``):

* template features ``x`` (C, h, w) times a cosine window, ``X_c = FFT2(x_c)``;
* label ``y``: a Gaussian of std ``sigma`` cells with its peak at (0, 0), circularly wrapped;
* ridge regression over all circular shifts of ``x``, solved in the Fourier domain (dual form):
  ``alpha_hat = Y / (sum_c |X_c|^2 / n + lambda)`` with ``n = C h w``;
* response to search features ``z``: ``IFFT2(alpha_hat * sum_c Z_c conj(X_c) / n)``, which peaks at
  the displacement of ``z`` relative to ``x`` (wrapped: index i > h/2 means i - h);
* online update: ``X`` and ``alpha_hat`` move towards the newest frame's by the interpolation factor.

Because ``sum_c |X_c|^2`` is the spectrum of the circulant Gram matrix of all shifted samples, this is
the exact ridge solution; ``tests/test_dcf.py`` checks it against a direct spatial solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from vidcorr.strict_dict import check_settings, python_numbers, refuse_non_finite

Box = tuple[float, float, float, float]


def start_box_state(frame: np.ndarray, box: Box, min_scale_factor: float, max_scale_factor: float):
    """Tracker state from the first frame's box: centre ``pos`` and ``size`` (x, y order, pixels),
    ``frame_wh`` (the clip range of the centre) and the ``min_size`` / ``max_size`` limits of later
    sizes (at least 4 px; at most the frame, or ``max_scale_factor`` x the first box)."""
    x, y, w, h = box
    pos, size = np.array([x + w / 2, y + h / 2]), np.array([w, h], np.float64)
    frame_wh = np.array([frame.shape[1], frame.shape[0]], np.float64)
    # DCFNet clamps to min(im.shape[:2], ...), i.e. (H, W) against (w, h); we use (W, H).
    min_size = np.maximum(min_scale_factor * size, 4.0)
    max_size = np.maximum(np.minimum(frame_wh, max_scale_factor * size), min_size)
    return pos, size, frame_wh, min_size, max_size


@dataclass(frozen=True)
class DCFSettings:
    """Every knob of the DCF tracker. Defaults are DCFNet's published tracking settings
    (foolwood/DCFNet_pytorch ``track/DCFNet.py`` ``TrackerConfig``, "OTB2013 AUC 0.665"), except where
    marked "ours".

    padding: search window = target size x (1 + padding) per axis, resampled to a square [2.0].
    output_sigma_factor: label std = this x target size in feature cells [0.1].
    lam: ridge regulariser lambda [1e-4].
    interp_factor: model learning rate of the linear interpolation update [0.01].
    num_scales, scale_step: windows at scale_step ** k, k = -(n-1)/2 ... (n-1)/2 [3, 1.0275]. DCFNet's
        code computes ``k = arange(n) - n / 2`` = (-1.5, -0.5, 0.5) under Python 3; its Python 2
        original gave the intended (-1, 0, 1), which we use.
    scale_penalty: peak of scale k multiplied by scale_penalty ** |k| [0.9925].
    min_scale_factor, max_scale_factor: box size clamped to these multiples of the first box, and to
        at least 4 px and at most the frame [0.2, 5].
    input_size: side of the square crop fed to the encoder. Ours: 256. DCFNet feeds 125 px to a
        stride-1 network (125 x 125 cells); our encoders have stride 8, so 256 px gives 32 x 32 cells
        and the target spans about 10.7 cells, as in DCFNet it spans 125 / 3 = 41.7 of its cells.
    subcell: refine the integer response peak with a parabola through its neighbours (ours: at stride 8
        one cell is 8 crop pixels; DCFNet's peak is already pixel-accurate).
    l2_normalise: L2-normalise each feature cell before the filter (ours: taken from the propagation
        preset, so features are matched the way the preset propagates labels).
    """

    padding: float = 2.0
    output_sigma_factor: float = 0.1
    lam: float = 1e-4
    interp_factor: float = 0.01
    num_scales: int = 3
    scale_step: float = 1.0275
    scale_penalty: float = 0.9925
    min_scale_factor: float = 0.2
    max_scale_factor: float = 5.0
    input_size: int = 256
    subcell: bool = True
    l2_normalise: bool = True

    def __post_init__(self) -> None:
        # First: NaN fails every comparison below, so a NaN max_scale_factor was reported as a bad
        # min_scale_factor, and NaN passed the output_sigma_factor, scale_step and scale_penalty
        # ranges when they were unchecked (a drifting box, or NaN crops blamed on the encoder).
        python_numbers(self)  # np.int64 / np.float32 from code: the JSON results, the NaN check
        refuse_non_finite(self, "invalid DCF settings:")
        check_settings("DCF", self, {
            "padding": ("0 or more", self.padding >= 0),
            # The label's std (`gaussian_label` divides by it squared): 0 gave a NaN filter.
            "output_sigma_factor": ("positive", self.output_sigma_factor > 0),
            "lam": ("positive", self.lam > 0),
            "interp_factor": ("in (0, 1]", 0.0 < self.interp_factor <= 1.0),
            "num_scales": ("at least 1", self.num_scales >= 1),
            # Window sizes are size x scale_step ** k, k in -(n-1)/2 .. (n-1)/2: 0 gave infinite or
            # zero windows, a negative step negative ones. (A step below 1 searches the same scales
            # as its inverse; 1 searches none.)
            "scale_step": ("positive", self.scale_step > 0),
            # Peak of scale k times scale_penalty ** |k|: a negative one flips the sign of every odd
            # scale's peak, 0 zeroes all but the centre's, above 1 it rewards a scale change.
            "scale_penalty": ("in (0, 1]", 0.0 < self.scale_penalty <= 1.0),
            "min_scale_factor": ("positive and at most max_scale_factor",
                                 0 < self.min_scale_factor <= self.max_scale_factor),
            "input_size": ("at least 16", self.input_size >= 16),
        })


class FeatureSampler(Protocol):
    """Cuts regions out of a frame, resamples and embeds them (see `vidcorr.track.PatchSampler`)."""

    def image(self, frame: np.ndarray) -> Tensor:
        """RGB uint8 (H, W, 3) -> the frame as the sampler wants it."""

    def features(self, image: Tensor, centres: Tensor, sizes: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """centres, sizes: (S, 2) x/y in pixels -> features (S, C, h, w) of the resampled regions."""


# --------------------------------------------------------------------------- closed-form filter


def gaussian_label(hw: tuple[int, int], sigma: float) -> Tensor:
    """Desired response: Gaussian of std ``sigma`` cells, value 1 at index (0, 0), circularly wrapped.

    -> (h, w) float64. Putting the peak at the origin makes the response's argmax the displacement.
    """
    dist = [torch.minimum(torch.arange(n), n - torch.arange(n)).double() for n in hw]
    d2 = dist[0][:, None] ** 2 + dist[1][None, :] ** 2
    return torch.exp(-0.5 * d2 / sigma**2)


def cosine_window(hw: tuple[int, int]) -> Tensor:
    """Hann window (h, w), numpy's ``hanning`` (zero at both ends) as DCFNet uses, float32."""
    return torch.outer(torch.hann_window(hw[0], periodic=False), torch.hann_window(hw[1], periodic=False))


def solve_filter(xf: Tensor, yf: Tensor, lam: float) -> Tensor:
    """Dual ridge solution: xf (C, h, w) template spectrum, yf (h, w) label spectrum -> alpha_hat (h, w)."""
    kxx = xf.abs().square().sum(dim=0) / xf.numel()
    return yf / (kxx + lam)


def filter_response(zf: Tensor, model_xf: Tensor, alphaf: Tensor) -> Tensor:
    """Correlation response: zf (S, C, h, w) search spectra, model_xf (C, h, w) -> (S, h, w) real."""
    n = model_xf.numel()
    kzf = (zf * model_xf.conj()).sum(dim=1) / n
    return torch.fft.ifft2(kzf * alphaf).real


def locate_peak(response: Tensor, subcell: bool = True) -> tuple[float, float, float]:
    """Wrapped displacement of the response maximum: response (h, w) -> (dy, dx, peak value).

    Index i > h / 2 means a shift of i - h. With ``subcell``, each axis is refined by the vertex of the
    parabola through the peak and its two (circular) neighbours, clipped to half a cell.
    """
    h, w = response.shape
    flat = int(response.argmax())
    iy, ix = divmod(flat, w)
    peak = float(response[iy, ix])
    offsets = []
    for i, n, line in ((iy, h, response[:, ix]), (ix, w, response[iy, :])):
        delta = 0.0
        if subcell and n >= 3:
            left, right = float(line[(i - 1) % n]), float(line[(i + 1) % n])
            curvature = left - 2 * peak + right
            if curvature < 0:
                delta = min(0.5, max(-0.5, 0.5 * (left - right) / curvature))
        shift = i + delta
        offsets.append(shift - n if shift > n / 2 else shift)
    return offsets[0], offsets[1], peak


class CorrelationFilter:
    """Filter state: the interpolated template spectrum and dual coefficients (DCFNet's model).

    fit(feats (1, C, h, w), rate): rate 1 replaces the model, rate < 1 interpolates towards feats.
    respond(feats (S, C, h, w)) -> (S, h, w) responses. Features are cosine-windowed here.
    """

    def __init__(self, lam: float, sigma_factor: float, padding: float):
        self.lam, self.sigma_factor, self.padding = lam, sigma_factor, padding
        self.window: Tensor | None = None
        self.yf: Tensor | None = None
        self.model_xf: Tensor | None = None
        self.alphaf: Tensor | None = None

    def _spectrum(self, feats: Tensor) -> Tensor:
        hw = tuple(feats.shape[-2:])
        if self.window is None or tuple(self.window.shape) != hw:
            self.window = cosine_window(hw).to(feats.device)
            # DCFNet: sigma = crop / (1 + padding) * factor, i.e. a fraction of the target's extent.
            sigma = self.sigma_factor * math.sqrt(hw[0] * hw[1]) / (1 + self.padding)
            self.yf = torch.fft.fft2(gaussian_label(hw, sigma)).to(feats.device, torch.complex64)
        return torch.fft.fft2(feats.float() * self.window)

    def fit(self, feats: Tensor, rate: float = 1.0) -> None:
        xf = self._spectrum(feats)[0]
        alphaf = solve_filter(xf, self.yf, self.lam)
        if self.model_xf is None or rate >= 1.0:
            self.model_xf, self.alphaf = xf, alphaf
        else:
            self.model_xf = (1 - rate) * self.model_xf + rate * xf
            self.alphaf = (1 - rate) * self.alphaf + rate * alphaf

    def respond(self, feats: Tensor) -> Tensor:
        if self.model_xf is None:
            raise RuntimeError("fit the filter on a template before asking for responses")
        return filter_response(self._spectrum(feats), self.model_xf, self.alphaf)


class DCFTracker:
    """DCFNet's tracking loop (``track/DCFNet.py``, ``DCFNetTraker.track``) on frozen features.

    init(frame, box): learn the filter on the window around the first box.
    update(frame) -> box: embed ``num_scales`` windows around the last position, keep the scale whose
    penalised peak is highest, move by its displacement, take its size, then update the model on the
    window around the new box with ``interp_factor``. Boxes are (x, y, w, h), 0-based pixels.
    """

    def __init__(self, sampler: FeatureSampler, settings: DCFSettings = DCFSettings()):
        self.sampler, self.settings = sampler, settings
        k = np.arange(settings.num_scales) - (settings.num_scales - 1) / 2
        self.scale_factors = settings.scale_step**k
        self.scale_penalties = settings.scale_penalty ** np.abs(k)
        self.filter = CorrelationFilter(settings.lam, settings.output_sigma_factor, settings.padding)
        self.pos = self.size = self.min_size = self.max_size = self.frame_wh = np.zeros(2)

    def _features(self, image: Tensor, sizes: np.ndarray) -> Tensor:
        """Embed windows of (1 + padding) x ``sizes`` (S, 2) around the current position."""
        s = self.settings
        centres = torch.tensor(np.repeat(self.pos[None], len(sizes), axis=0), dtype=torch.float32)
        windows = torch.tensor(sizes * (1 + s.padding), dtype=torch.float32)
        return self.sampler.features(image, centres, windows, (s.input_size, s.input_size))

    def init(self, frame: np.ndarray, box: Box) -> None:
        s = self.settings
        self.pos, self.size, self.frame_wh, self.min_size, self.max_size = start_box_state(
            frame, box, s.min_scale_factor, s.max_scale_factor)
        self.filter.fit(self._features(self.sampler.image(frame), self.size[None]), rate=1.0)

    def update(self, frame: np.ndarray) -> Box:
        s = self.settings
        image = self.sampler.image(frame)
        sizes = self.size[None] * self.scale_factors[:, None]
        responses = self.filter.respond(self._features(image, sizes))
        peaks = [locate_peak(r, s.subcell) for r in responses]
        best = int(np.argmax([p[2] * penalty for p, penalty in zip(peaks, self.scale_penalties)]))
        dy, dx, _ = peaks[best]
        cells = np.array([responses.shape[-1], responses.shape[-2]], np.float64)
        window = sizes[best] * (1 + s.padding)
        # Keeping the centre inside the frame is ours; DCFNet lets it leave.
        self.pos = np.clip(self.pos + np.array([dx, dy]) * window / cells, 0.0, self.frame_wh)
        self.size = np.clip(sizes[best], self.min_size, self.max_size)
        self.filter.fit(self._features(image, self.size[None]), rate=s.interp_factor)
        x, y = self.pos - self.size / 2
        return float(x), float(y), float(self.size[0]), float(self.size[1])
