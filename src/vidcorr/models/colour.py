"""Colour spaces and the per-method input normalisations (METHODS.md §1.2, §2.2, §3.2, §4.3).

Every encoder takes RGB in [0, 1] and converts it here, so a caller can never feed a model the
wrong colour space. The Lab conversion is the CIE L*a*b* formula (sRGB gamma, D65 white) that
OpenCV applies to float images (`cv2.COLOR_RGB2Lab`), written in torch so it is differentiable
and runs on any device: L in [0, 100], a and b roughly in [-127, 127].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

COLOUR_MODES = ("rgb", "gray-l", "lab")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# STT feeds its student cv2 float Lab normalised with these (METHODS.md §4.3).
STT_LAB_MEAN = (50.0, 0.0, 0.0)
STT_LAB_STD = (50.0, 127.0, 127.0)

# sRGB (D65) -> XYZ, and the D65 white point, as in OpenCV's colour conversion.
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE = (0.950456, 1.0, 1.088754)
# Folded: sRGB -> XYZ relative to the white point, and back.
_RGB_TO_XYZN = tuple(tuple(v / w for v in row) for row, w in zip(_RGB_TO_XYZ, _WHITE, strict=True))
_XYZN_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_XYZN, dtype=torch.float64)).tolist()))
_EPS = 0.008856  # (6/29)^3: below it the cube root is replaced by a line
_KAPPA = 903.3  # L = 903.3 Y in the linear part
_TINY = 1e-6  # keeps pow() away from 0 where its gradient is infinite


def _mix(matrix: tuple[tuple[float, ...], ...], x: Tensor) -> Tensor:
    """Apply a 3x3 colour matrix to (B, 3, H, W) with elementwise ops only: unlike a matmul,
    autocast never lowers their precision, so the conversion stays float32 on every device."""
    c0, c1, c2 = x.unbind(1)
    return torch.stack([m0 * c0 + m1 * c1 + m2 * c2 for m0, m1, m2 in matrix], dim=1)


def _srgb_to_linear(c: Tensor) -> Tensor:
    curve = ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(c > 0.04045, curve, c / 12.92)


def _linear_to_srgb(c: Tensor) -> Tensor:
    curve = 1.055 * c.clamp_min(0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(c > 0.0031308, curve, c * 12.92)


def _lab_f(t: Tensor) -> Tensor:
    return torch.where(t > _EPS, t.clamp_min(_TINY) ** (1 / 3), 7.787 * t + 16 / 116)


def _lab_f_inverse(f: Tensor) -> Tensor:
    cube = f**3
    return torch.where(cube > _EPS, cube, (f - 16 / 116) / 7.787)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] -> CIE L*a*b* (D65), the formula of OpenCV's float `COLOR_RGB2Lab`.

    rgb: (B, 3, H, W) float in [0, 1], RGB order. Returns (B, 3, H, W): L in [0, 100],
    a and b roughly in [-127, 127]. Differentiable everywhere (finite gradients at black).
    """
    linear = _srgb_to_linear(rgb)
    xyz = _mix(_RGB_TO_XYZN, linear)
    fx, fy, fz = _lab_f(xyz).unbind(1)
    lightness = _lightness(xyz[:, 1], fy)
    return torch.stack((lightness, 500 * (fx - fy), 200 * (fy - fz)), dim=1)


def rgb_to_lightness(rgb: Tensor) -> Tensor:
    """The L* channel of `rgb_to_lab` alone, without computing a* and b*.

    rgb: (B, 3, H, W) float in [0, 1] -> (B, 1, H, W) L in [0, 100]. UVC's gray-L input needs only
    this; skipping X, Z and two of the three cube roots halves the conversion. Same formula: equal
    bit for bit where H * W fills whole SIMD vectors (480p frames), otherwise within an ulp at the
    tensor's tail, where ATen's scalar pow stands in for its vectorised one.
    """
    y = _mix(_RGB_TO_XYZN[1:2], _srgb_to_linear(rgb))
    return _lightness(y, _lab_f(y))


def _lightness(y: Tensor, fy: Tensor) -> Tensor:
    """L* from the white-relative luminance Y and f(Y): the cube root above _EPS, a line below."""
    return torch.where(y > _EPS, 116 * fy - 16, _KAPPA * y)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Inverse of `rgb_to_lab`. lab: (B, 3, H, W) -> sRGB (B, 3, H, W) clamped to [0, 1].

    Out-of-gamut Lab values are clipped, as any display of them would be.
    """
    lightness, a, b = lab.unbind(1)
    fy = (lightness + 16) / 116
    y = torch.where(lightness > _KAPPA * _EPS, fy**3, lightness / _KAPPA)
    xyz = torch.stack((_lab_f_inverse(fy + a / 500), y, _lab_f_inverse(fy - b / 200)), dim=1)
    linear = _mix(_XYZN_TO_RGB, xyz)
    return _linear_to_srgb(linear).clamp(0.0, 1.0)


def lab_to_uvc_normalised(lab: Tensor) -> Tensor:
    """CIE Lab -> UVC's [-1, 1] Lab (METHODS.md §1.2).

    UVC reads OpenCV 8-bit Lab (L·255/100, a+128, b+128) and maps it by (x - 128) / 128. We use
    the same scaling on float Lab (no uint8 rounding). lab: (B, 3, H, W) -> (B, 3, H, W).
    """
    lightness, a, b = lab.unbind(1)
    return torch.stack((_uvc_normalised_lightness(lightness), a / 128, b / 128), dim=1)


def _uvc_normalised_lightness(lightness: Tensor) -> Tensor:
    """CIE L in [0, 100] -> UVC's L in [-1, 1] (see `lab_to_uvc_normalised`)."""
    return (lightness * 2.55 - 128) / 128


def uvc_normalised_to_lab(lab_n: Tensor) -> Tensor:
    """Inverse of `lab_to_uvc_normalised`. lab_n: (B, 3, H, W) in [-1, 1] -> CIE Lab."""
    l_n, a_n, b_n = lab_n.unbind(1)
    return torch.stack(((l_n * 128 + 128) / 2.55, a_n * 128, b_n * 128), dim=1)


class ColourNormalise(nn.Module):
    """RGB in [0, 1] -> the normalised input a backbone of the given colour mode was trained on.

    - ``"rgb"``: ImageNet mean/std (CRW test, CycleTime, STT teacher; METHODS.md §2.2, §3.4).
    - ``"gray-l"``: UVC's matching encoder sees only lightness: UVC-normalised L in [-1, 1],
      replicated to 3 channels, mapped back to [0, 1] by (x + 1) / 2, then ImageNet-normalised
      per channel (METHODS.md §1.2).
    - ``"lab"``: STT's student: Lab with mean (50, 0, 0) and std (50, 127, 127) (§4.3).

    The statistics are non-persistent buffers: they follow ``.to(device)`` but never enter a
    state dict, so weights files hold only learned tensors.
    """

    def __init__(self, mode: str):
        super().__init__()
        if mode not in COLOUR_MODES:
            raise ValueError(f"unknown colour mode {mode!r}; expected one of {COLOUR_MODES}")
        self.mode = mode
        mean, std = (STT_LAB_MEAN, STT_LAB_STD) if mode == "lab" else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: Tensor) -> Tensor:
        """rgb: (B, 3, H, W) in [0, 1] -> (B, 3, H, W) normalised input of this colour mode."""
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"expected RGB images of shape (B, 3, H, W), got {tuple(rgb.shape)}")
        # Colour maths in float32 even for half inputs (L would lose ~0.5 units in bf16); the
        # elementwise ops below are not touched by autocast.
        rgb = rgb.float()
        if self.mode == "rgb":
            x = rgb
        elif self.mode == "lab":
            x = rgb_to_lab(rgb)
        else:
            lightness = _uvc_normalised_lightness(rgb_to_lightness(rgb))
            x = ((lightness + 1) / 2).expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
