"""DCF head: closed-form Fourier solution vs a direct spatial ridge solve, known-shift answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vidcorr.dcf import (
    CorrelationFilter,
    DCFSettings,
    cosine_window,
    filter_response,
    gaussian_label,
    locate_peak,
    solve_filter,
)
from vidcorr.strict_dict import check_settings
from vidcorr.track import LocaliseSettings


def _direct_ridge(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, lam: float) -> np.ndarray:
    """Primal ridge regression over every circular shift of x, solved as a dense linear system.

    Sample i is x rolled by i with target y[i]; the kernel is <a, b> / n (DCFNet's normalisation), so
    the feature map is a / sqrt(n). Response i scores z rolled back by i: (h, w).
    """
    _, h, w = x.shape
    n = x.numel()
    shifts = [(i, j) for i in range(h) for j in range(w)]
    samples = np.stack([torch.roll(x, s, (1, 2)).reshape(-1).numpy() for s in shifts]) / np.sqrt(n)
    targets = np.array([float(y[s]) for s in shifts])
    weights = np.linalg.solve(samples.T @ samples + lam * np.eye(n), samples.T @ targets)
    back = [torch.roll(z, (-i, -j), (1, 2)).reshape(-1).numpy() / np.sqrt(n) for i, j in shifts]
    return (np.stack(back) @ weights).reshape(h, w)


@pytest.mark.parametrize("shape", [(2, 1, 8), (3, 4, 5)], ids=["1d", "2d"])
def test_fft_solution_equals_direct_spatial_solve(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    y = gaussian_label(shape[1:], sigma=1.0)
    lam = 0.1
    alphaf = solve_filter(torch.fft.fft2(x), torch.fft.fft2(y), lam)
    response = filter_response(torch.fft.fft2(z)[None], torch.fft.fft2(x), alphaf)[0]
    np.testing.assert_allclose(response.numpy(), _direct_ridge(x, y, z, lam), atol=1e-10)


@pytest.mark.parametrize("shift", [(3, -5), (0, 0), (-7, 6), (8, 1)])
def test_filter_peaks_at_known_shift(shift):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 16, 16, generator=g, dtype=torch.float64)
    xf = torch.fft.fft2(x)
    alphaf = solve_filter(xf, torch.fft.fft2(gaussian_label((16, 16), 1.5)), 1e-4)
    z = torch.roll(x, shift, dims=(1, 2))
    dy, dx, peak = locate_peak(filter_response(torch.fft.fft2(z)[None], xf, alphaf)[0])
    wrapped = [s + 16 if s < -8 else s for s in shift]  # +8 and -8 coincide; +8 is reported
    assert (dy, dx) == pytest.approx(wrapped, abs=1e-6)  # symmetric peak: no sub-cell offset
    assert peak == pytest.approx(1.0, abs=1e-3)  # lambda -> 0: the shifted label is reproduced


def test_label_and_window():
    y = gaussian_label((6, 7), sigma=2.0)
    assert y[0, 0] == 1.0 and y.argmax() == 0
    assert y[1, 0] == pytest.approx(y[-1, 0]) and y[0, 2] == pytest.approx(y[0, -2])  # wrapped
    assert y[0, 1] == pytest.approx(np.exp(-1 / 8))
    np.testing.assert_allclose(cosine_window((5, 8)).numpy(), np.outer(np.hanning(5), np.hanning(8)), atol=1e-7)


def test_subcell_peak_recovers_parabola_vertex():
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    response = -((ys - 2.3) ** 2) - ((xs - 6.6) ** 2)
    dy, dx, _ = locate_peak(response)
    assert dy == pytest.approx(2.3) and dx == pytest.approx(6.6 - 9)  # 6.6 > 9 / 2 wraps to -2.4
    assert locate_peak(response, subcell=False)[:2] == (2, 7 - 9)


def test_model_update_interpolates():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 3, 8, 8, generator=g)
    head = CorrelationFilter(lam=1e-4, sigma_factor=0.1, padding=2.0)
    head.fit(a)
    first_xf, first_alphaf = head.model_xf.clone(), head.alphaf.clone()
    head.fit(b, rate=0.25)
    only_b = CorrelationFilter(lam=1e-4, sigma_factor=0.1, padding=2.0)
    only_b.fit(b)
    torch.testing.assert_close(head.model_xf, 0.75 * first_xf + 0.25 * only_b.model_xf)
    torch.testing.assert_close(head.alphaf, 0.75 * first_alphaf + 0.25 * only_b.alphaf)
    assert head.respond(torch.randn(3, 3, 8, 8, generator=g)).shape == (3, 8, 8)


def test_settings_are_dcfnet_defaults_and_validated():
    s = DCFSettings()
    assert (s.padding, s.output_sigma_factor, s.lam, s.interp_factor) == (2.0, 0.1, 1e-4, 0.01)
    assert (s.num_scales, s.scale_step, s.scale_penalty) == (3, 1.0275, 0.9925)
    with pytest.raises(ValueError):
        DCFSettings(interp_factor=0.0)
    with pytest.raises(ValueError):
        DCFSettings(lam=0.0)


def test_both_trackers_settings_name_every_bad_field():
    """One rule checker (strict_dict.check_settings) serves the DCF and localisation settings: every
    failing field is named with its value, in the rules' order; fields that pass are not."""
    with pytest.raises(ValueError) as err:
        DCFSettings(lam=0.0, num_scales=0, padding=1.0)
    assert str(err.value) == "invalid DCF settings: lam must be positive, got 0.0; num_scales must be at least 1, got 0"
    with pytest.raises(ValueError, match=r"^invalid localisation settings: topk must be 0 \(all\) or more, got -1$"):
        LocaliseSettings(topk=-1)

    @dataclass(frozen=True)
    class Knobs:
        a: int = 1
        b: float = 2.0

    check_settings("toy", Knobs(), {"a": ("positive", True), "b": ("under 1", True)})
    with pytest.raises(ValueError, match=r"^invalid toy settings: b must be under 1, got 2.0$"):
        check_settings("toy", Knobs(), {"a": ("positive", True), "b": ("under 1", False)})
