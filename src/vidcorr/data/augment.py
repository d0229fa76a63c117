"""Training augmentations, in torch: UVC's (METHODS.md §1.3, ``libs/transforms_multi.py``),
CycleTime's clip + target patch (§2.3, `CycleClipAugment`), STT's pairs (§4.3,
`ResizedCropPairAugment`) and MoCo v2's two views of an image (STT's spatial stage, `TwoViewAugment`).

Each augmentation maps a list of RGB uint8 frames (H, W, 3) and a `torch.Generator` to a dict
of uint8 tensors (3, h, w); the trainer converts them to float in [0, 1] on the device (uint8
crosses the worker -> main process queue at a quarter of the bytes). All randomness comes from
the generator, so a sample is reproducible from its key.

As in UVC, one rotation angle, one scale and one flip are drawn per pair (the "multi"
transforms apply one draw to every frame); only the warm-up crop positions are independent
(``RandomCrop(seperate=True)``). Deliberate differences: bilinear (antialiased) resampling where
UVC uses nearest-neighbour, a continuous rotation angle where UVC draws integer degrees, and no
resize of frames to multiples of 64 (UVC's loader does that before cropping).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidcorr.patches import PATCH_SCALE, rigid_theta, sample_patch
from vidcorr.strict_dict import refuse_non_finite

Augment = Callable[[list[np.ndarray], torch.Generator], dict[str, Tensor]]


# ---------------------------------------------------------------------------------------------
# Image operations on float images (3, H, W)


def to_float(frame: np.ndarray) -> Tensor:
    """RGB uint8 (H, W, 3) -> float (3, H, W) in [0, 1]."""
    # Frames read from image files (frame folders) are read-only arrays, on which torch.from_numpy
    # put a UserWarning about "undefined behavior" into the training log; those are copied first.
    frame = np.ascontiguousarray(frame) if frame.flags.writeable else np.array(frame)
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255)


def to_uint8(image: Tensor) -> Tensor:
    """float (3, H, W) in [0, 1] -> uint8 (3, H, W), contiguous."""
    return image.mul(255).round_().clamp_(0, 255).to(torch.uint8).contiguous()


def rotate_reflect(image: Tensor, degrees: float) -> Tensor:
    """Rotate (3, H, W) about its centre, reflection-padded where the rotation uncovers pixels.

    UVC reflect-pads by the image size, rotates and crops the centre back; sampling the
    rotated grid with ``padding_mode="reflection"`` gives the same picture without the copy.
    """
    if degrees == 0:
        return image
    _, h, w = image.shape
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype) - (h - 1) / 2,
                            torch.arange(w, dtype=image.dtype) - (w - 1) / 2, indexing="ij")
    # Source pixel of each output pixel: inverse rotation, in pixels, then to [-1, 1].
    src_x = cos * xs + sin * ys
    src_y = -sin * xs + cos * ys
    grid = torch.stack((src_x / ((w - 1) / 2), src_y / ((h - 1) / 2)), dim=-1)
    out = F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="reflection",
                        align_corners=True)
    return out[0]


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of (3, H, W); antialiased when shrinking."""
    if image.shape[1:] == (height, width):
        return image
    shrink = height < image.shape[1] or width < image.shape[2]
    out = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out[0].clamp_(0, 1)


def pad_reflect(image: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Reflection padding of (3, H, W) by any amount (repeated while the pad exceeds the image)."""
    while top or bottom or left or right:
        _, h, w = image.shape
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        image = F.pad(image[None], step, mode="reflect")[0]
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return image


def resize_and_pad(image: Tensor, size: int) -> Tensor:
    """UVC ``ResizeandPad``: longer side to ``size``, then centred reflect-pad to size x size."""
    _, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = min(size, max(1, round(h * scale))), min(size, max(1, round(w * scale)))
    image = resize(image, nh, nw)
    top, left = (size - nh) // 2, (size - nw) // 2
    return pad_reflect(image, top, size - nh - top, left, size - nw - left)


def random_crop(image: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Uniform size x size crop of (3, H, W); a smaller image is centre reflect-padded first."""
    _, h, w = image.shape
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        image = pad_reflect(image, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
        _, h, w = image.shape
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return image[:, top : top + size, left : left + size]


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


# ---------------------------------------------------------------------------------------------
# The augmentations, one per batch kind


@dataclass(frozen=True)
class CropPairAugment:
    """Warm-up (``crop_pair``, UVC ``VidListv1``): shared rotation ±``max_rotation``° (reflect),
    shared scale in ``scale``, independent ``crop`` x ``crop`` crops, shared horizontal flip.

    -> {"ref": (3, crop, crop), "target": (3, crop, crop)} uint8.
    """

    crop: int = 256
    max_rotation: float = 10.0
    scale: tuple[float, float] = (1 / 1.2, 1.2)
    flip: bool = True

    def __post_init__(self) -> None:
        refuse_non_finite(self)

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        angle = _uniform(-self.max_rotation, self.max_rotation, generator)
        ratio = _uniform(*self.scale, generator)
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        out = []
        for frame in frames[:2]:
            image = rotate_reflect(to_float(frame), angle)
            _, h, w = image.shape
            image = resize(image, max(1, round(h * ratio)), max(1, round(w * ratio)))
            image = random_crop(image, self.crop, generator)  # own draw per frame
            out.append(to_uint8(image.flip(-1) if flip else image))
        return {"ref": out[0], "target": out[1]}


@dataclass(frozen=True)
class PatchFramePairAugment:
    """Joint stage (``patch_frame``, UVC ``VidListv2``).

    Frame 1: rotate ±``max_rotation``° (reflect), ``resize_and_pad`` to ``frame``, random
    ``crop`` x ``crop`` patch. Frame 2: ``resize_and_pad`` to ``frame`` (whole frame, no crop).
    -> {"ref": (3, crop, crop), "target": (3, frame, frame)} uint8.
    """

    crop: int = 256
    frame: int = 640
    max_rotation: float = 10.0

    def __post_init__(self) -> None:
        refuse_non_finite(self)

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        angle = _uniform(-self.max_rotation, self.max_rotation, generator)
        ref = resize_and_pad(rotate_reflect(to_float(frames[0]), angle), self.frame)
        ref = random_crop(ref, self.crop, generator)
        target = resize_and_pad(to_float(frames[1]), self.frame)
        return {"ref": to_uint8(ref), "target": to_uint8(target)}


@dataclass(frozen=True)
class ImageAugment:
    """One frame (``image``, the Lab auto-encoder): random ``crop`` x ``crop`` crop, random flip.

    -> {"image": (3, crop, crop)} uint8.
    """

    crop: int = 256
    flip: bool = True

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        image = random_crop(to_float(frames[0]), self.crop, generator)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
        return {"image": to_uint8(image)}


def random_resized_box(height: int, width: int, area: tuple[float, float], aspect: tuple[float, float],
                       generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop``'s box rule: (top, left, h, w) covering a uniform share of
    the image in ``area`` with a log-uniform aspect ratio w / h in ``aspect``; after 10 failed
    draws, the largest centred box whose aspect ratio is clamped into ``aspect``."""
    for _ in range(10):
        target_area = height * width * _uniform(*area, generator)
        ratio = math.exp(_uniform(math.log(aspect[0]), math.log(aspect[1]), generator))
        w, h = round(math.sqrt(target_area * ratio)), round(math.sqrt(target_area / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    ratio = width / height
    if ratio < aspect[0]:
        w, h = width, round(width / aspect[0])
    elif ratio > aspect[1]:
        h, w = height, round(height * aspect[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class ResizedCropPairAugment:
    """STT's temporal pairs (``resized_crop_pair``, METHODS.md §4.3): one random resized box
    (``area`` share of the frame, aspect ratio w / h in ``aspect``) cut from both frames, each
    resized to ``crop`` x ``crop`` (aspect not kept), one shared horizontal flip.

    -> {"ref": (3, crop, crop), "target": (3, crop, crop)} uint8.
    """

    crop: int = 256
    area: tuple[float, float] = (0.6, 1.0)
    aspect: tuple[float, float] = (1.5, 2.0)
    flip: bool = True

    def __post_init__(self) -> None:
        refuse_non_finite(self)

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        height, width = frames[0].shape[:2]
        top, left, h, w = random_resized_box(height, width, self.area, self.aspect, generator)
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        out = []
        for frame in frames[:2]:
            box = to_float(frame[top : top + h, left : left + w])
            image = resize(box, self.crop, self.crop)
            out.append(to_uint8(image.flip(-1) if flip else image))
        return {"ref": out[0], "target": out[1]}


def colour_jitter(image: Tensor, strength: tuple[float, float, float, float],
                  generator: torch.Generator) -> Tensor:
    """torchvision ``ColorJitter(brightness, contrast, saturation, hue)``: each factor drawn
    uniformly around 1 (hue around 0), applied in a random order. image: (3, H, W) in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    brightness, contrast, saturation, hue = strength
    operations = [
        lambda x: TF.adjust_brightness(x, _uniform(max(0.0, 1 - brightness), 1 + brightness, generator)),
        lambda x: TF.adjust_contrast(x, _uniform(max(0.0, 1 - contrast), 1 + contrast, generator)),
        lambda x: TF.adjust_saturation(x, _uniform(max(0.0, 1 - saturation), 1 + saturation, generator)),
        lambda x: TF.adjust_hue(x, _uniform(-hue, hue, generator)),
    ]
    for i in torch.randperm(4, generator=generator).tolist():
        image = operations[i](image)
    return image.clamp(0, 1)


@dataclass(frozen=True)
class TwoViewAugment:
    """MoCo v2's two views of one image (``two_views``; the spatial stage of STT, METHODS.md §4.2):
    each view independently: random resized crop (``area`` share, aspect 3/4..4/3) to ``crop``,
    colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with p 0.2, Gaussian blur (sigma
    0.1..2, kernel about a tenth of the crop) with p 0.5, horizontal flip with p 0.5.

    -> {"query": (3, crop, crop), "key": (3, crop, crop)} uint8.
    """

    crop: int = 224
    area: tuple[float, float] = (0.2, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)

    def __post_init__(self) -> None:
        refuse_non_finite(self)

    def _view(self, frame: np.ndarray, generator: torch.Generator) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        top, left, h, w = random_resized_box(*frame.shape[:2], self.area, self.aspect, generator)
        image = resize(to_float(frame[top : top + h, left : left + w]), self.crop, self.crop)
        if bool(torch.rand((), generator=generator) < 0.8):
            image = colour_jitter(image, self.jitter, generator)
        if bool(torch.rand((), generator=generator) < 0.2):
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if bool(torch.rand((), generator=generator) < 0.5):
            kernel = (self.crop // 10) | 1  # odd
            image = TF.gaussian_blur(image, [kernel, kernel], [_uniform(0.1, 2.0, generator)] * 2)
        if bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
        return to_uint8(image)

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        return {"query": self._view(frames[0], generator), "key": self._view(frames[0], generator)}


def resize_short_side(image: Tensor, side: int) -> Tensor:
    """Bilinear resize of (3, H, W) so that its shorter side is ``side``, keeping the aspect ratio."""
    _, h, w = image.shape
    scale = side / min(h, w)
    return resize(image, max(side, round(h * scale)), max(side, round(w * scale)))


@dataclass(frozen=True)
class CycleClipAugment:
    """CycleTime (``cycle_clip``, ``vlog_train.py``, METHODS.md §2.3).

    frames: the clip's L frames, then the target frame and the frame after it (see
    `vidcorr.data.pairs.CycleClipSampling`). All are resized to short side ``resize``, cut at one
    random ``crop`` x ``crop`` position and flipped together. A patch of a third of the crop's side
    is cut from the target at a rigid transform theta: its centre is one of the ``top`` windows
    (3 x 3 cells of a ``grid`` x ``grid`` partition, i.e. (grid - 2)^2 candidates) with the most
    motion (summed |target - next frame|), chosen uniformly and jittered by up to ``jitter`` of the
    frame; its angle is uniform in +-``max_rotation`` degrees.

    -> {"clip": (L, 3, crop, crop), "target": (3, crop, crop), "patch": (3, crop/3, crop/3)} uint8
    and "theta" (2, 3) float32 (`vidcorr.patches` conventions).

    Deliberate difference: the official loader scores motion on the flipped frames and then mirrors
    the chosen window again, so a flipped sample's patch sits opposite the motion; here the window
    is chosen where the motion is.
    """

    crop: int = 240
    resize: int = 256
    grid: int = 9
    top: int = 10
    jitter: float = 1.0 / 12.0
    max_rotation: float = 45.0
    flip: bool = True

    def __post_init__(self) -> None:
        refuse_non_finite(self)  # a NaN jitter or max_rotation gave a NaN theta and a black patch
        if self.resize < self.crop or self.crop % 24:
            raise ValueError(f"cycle clips need crop a multiple of 24 (patch = crop / 3, both on the "
                             f"stride-8 grid) and resize >= crop; got crop {self.crop}, resize {self.resize}")

    def __call__(self, frames: list[np.ndarray], generator: torch.Generator) -> dict[str, Tensor]:
        if len(frames) < 3:
            raise ValueError(f"a cycle clip needs at least 3 frames (clip, target, next), got {len(frames)}")
        images = [resize_short_side(to_float(frame), self.resize) for frame in frames]
        _, h, w = images[0].shape
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=generator))
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        images = [x[:, top : top + self.crop, left : left + self.crop] for x in images]
        if flip:
            images = [x.flip(-1) for x in images]
        *clip, target, after = images

        box = self.crop // self.grid
        motion = (target - after).abs().sum(dim=0)[None, None]
        scores = F.avg_pool2d(motion, kernel_size=3 * box, stride=box)[0, 0]  # (rows, cols)
        cells = self.grid - 2
        scores = scores[:cells, :cells].flatten()
        best = scores.topk(min(self.top, scores.numel())).indices
        choice = int(best[int(torch.randint(0, best.numel(), (1,), generator=generator))])
        row, col = divmod(choice, cells)
        centre = []
        for index in (col, row):  # x, then y: window position in [0, 1], jittered, clamped
            loc = index / (cells - 1) + _uniform(-self.jitter, self.jitter, generator)
            centre.append((2 * min(max(loc, 0.0), 1.0) - 1) * (1 - PATCH_SCALE))
        angle = math.radians(_uniform(-self.max_rotation, self.max_rotation, generator))
        theta = rigid_theta(torch.tensor([[centre[0], centre[1], angle]]))
        side = self.crop // 3
        patch = sample_patch(target[None], theta, (side, side))[0]
        return {"clip": torch.stack([to_uint8(x) for x in clip]), "target": to_uint8(target),
                "patch": to_uint8(patch), "theta": theta[0].float()}


BATCH_KINDS = ("crop_pair", "patch_frame", "image", "cycle_clip", "resized_crop_pair", "two_views")


def build_augment(kind: str, crop: int, frame: int) -> Augment:
    """The augmentation of a batch kind; ``frame`` is "patch_frame"'s target size and
    "cycle_clip"'s short side before cropping."""
    if kind == "crop_pair":
        return CropPairAugment(crop)
    if kind == "patch_frame":
        return PatchFramePairAugment(crop, frame)
    if kind == "image":
        return ImageAugment(crop)
    if kind == "cycle_clip":
        return CycleClipAugment(crop, resize=frame)
    if kind == "resized_crop_pair":
        return ResizedCropPairAugment(crop)
    if kind == "two_views":
        return TwoViewAugment(crop)
    raise ValueError(f"unknown batch kind {kind!r}; expected one of {BATCH_KINDS}")
