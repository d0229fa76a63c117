"""UVC augmentations (METHODS.md §1.3): shapes, dtype, determinism, padding, shared draws."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from vidcorr.data.augment import (
    CropPairAugment,
    ImageAugment,
    PatchFramePairAugment,
    build_augment,
    pad_reflect,
    resize_and_pad,
    rotate_reflect,
    to_float,
)


def _frames(height: int = 256, width: int = 456, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]


@pytest.mark.parametrize("kind, crop, frame, shapes", [
    ("crop_pair", 64, 128, {"ref": (3, 64, 64), "target": (3, 64, 64)}),
    ("patch_frame", 64, 128, {"ref": (3, 64, 64), "target": (3, 128, 128)}),
    ("patch_frame", 256, 640, {"ref": (3, 256, 256), "target": (3, 640, 640)}),
    ("image", 96, 0, {"image": (3, 96, 96)}),
])
@pytest.mark.parametrize("size", [(256, 456), (400, 180)])  # landscape and portrait
def test_shapes_dtype_and_determinism(kind, crop, frame, shapes, size) -> None:
    augment = build_augment(kind, crop=crop, frame=frame)
    frames = _frames(*size)
    out = augment(frames, torch.Generator().manual_seed(5))
    again = augment(frames, torch.Generator().manual_seed(5))
    other = augment(frames, torch.Generator().manual_seed(6))
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert all(v.dtype == torch.uint8 and v.is_contiguous() for v in out.values())
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert any(not torch.equal(out[k], other[k]) for k in out)


def test_warmup_crops_are_independent_windows_of_one_warp() -> None:
    # Without rotation, scaling and flip, each crop is an exact window of its frame; identical
    # frames still give different windows (UVC's RandomCrop(seperate=True)). Pixels encode their
    # own position (R = x mod 256, G = y, B = x div 256), so a crop tells where it came from.
    ys, xs = np.mgrid[0:256, 0:456]
    frame = np.stack([xs % 256, ys, xs // 256], axis=-1).astype(np.uint8)
    augment = CropPairAugment(crop=64, max_rotation=0.0, scale=(1.0, 1.0), flip=False)
    out = augment([frame, frame], torch.Generator().manual_seed(0))
    image = torch.from_numpy(frame).permute(2, 0, 1)
    corners = []
    for crop in out.values():
        x, y = int(crop[0, 0, 0]) + 256 * int(crop[2, 0, 0]), int(crop[1, 0, 0])
        assert torch.equal(crop, image[:, y : y + 64, x : x + 64])
        corners.append((x, y))
    assert corners[0] != corners[1]


def test_flip_is_shared_by_both_frames() -> None:
    # A horizontal ramp rising left to right over the whole width (no uint8 wrap-around, which would
    # read as a flip wherever a crop crosses it): a crop's slope says whether it was flipped.
    ramp = (np.arange(456) * 255 // 455).astype(np.uint8)
    frame = np.tile(ramp[None, :, None], (256, 1, 3))
    augment = CropPairAugment(crop=64, max_rotation=0.0, scale=(1.0, 1.0))
    flipped = []
    for seed in range(8):
        out = augment([frame, frame], torch.Generator().manual_seed(seed))
        slopes = [int(x[0, 0, -1]) - int(x[0, 0, 0]) for x in out.values()]
        assert slopes[0] != 0 and (slopes[0] > 0) == (slopes[1] > 0)
        flipped.append(slopes[0] < 0)
    assert any(flipped) and not all(flipped)  # p = 0.5: both outcomes among 8 draws (4 and 4 here)


def test_joint_target_is_the_whole_frame_resized_and_reflect_padded() -> None:
    frame = _frames(256, 456)[1]
    out = PatchFramePairAugment(crop=64, frame=128)([frame, frame], torch.Generator().manual_seed(0))
    # 256x456 -> 72x128, padded by 28 rows above (reflection: row 28 + k mirrors row 28 - k)
    target = out["target"].int()
    assert torch.equal(target[:, 27], target[:, 29]) and torch.equal(target[:, 100], target[:, 98])
    assert resize_and_pad(to_float(frame), 128).shape == (3, 128, 128)


def test_reflect_padding_beyond_the_image_size() -> None:
    image = torch.rand(3, 10, 40)
    padded = pad_reflect(image, 45, 46, 0, 0)  # more than 4x the height
    assert padded.shape == (3, 101, 40)
    assert torch.equal(padded[:, 45:55], image) and torch.equal(padded[:, 44], image[:, 1])
    assert resize_and_pad(torch.rand(3, 20, 400), 64).shape == (3, 64, 64)  # 1:20 aspect


def _uvc_rotation(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """UVC's way, done with SciPy: reflect-pad by the image size, rotate bilinearly about the centre,
    crop the centre back. (3, H, W) -> (3, H, W)."""
    _, h, w = image.shape
    padded = np.pad(image.double().numpy(), ((0, 0), (h, h), (w, w)), mode="reflect")
    turned = ndimage.rotate(padded, degrees, axes=(2, 1), reshape=False, order=1)
    return torch.from_numpy(turned[:, h:2 * h, w:2 * w]).to(image.dtype)


def test_rotation_keeps_the_centre_and_fills_by_reflection() -> None:
    image = torch.rand(3, 33, 49, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rotate_reflect(image, 0.0), image)
    rotated = rotate_reflect(image, 10.0)
    assert rotated.shape == image.shape and torch.allclose(rotated[:, 16, 24], image[:, 16, 24], atol=1e-5)
    assert torch.allclose(rotate_reflect(image, 90.0)[:, 16, 24], image[:, 16, 24], atol=1e-5)
    # The whole picture, corners (filled by reflection) included, is UVC's pad-rotate-crop. The angle
    # is drawn symmetrically (±max_rotation), so either sense of rotation is the augmentation.
    uncovered = torch.zeros(33, 49, dtype=torch.bool)
    uncovered[:4, :4] = uncovered[-4:, -4:] = True  # corners that a 10 degree turn brings in from outside
    for degrees in (10.0, -7.5):
        got = rotate_reflect(image, degrees)
        errors = [(got - _uvc_rotation(image, sense * degrees)).abs().max() for sense in (1, -1)]
        assert min(errors) < 1e-5, (degrees, errors)
        assert (got - image)[:, uncovered].abs().max() > 0.1  # really turned, not passed through
    square = torch.rand(3, 21, 21, generator=torch.Generator().manual_seed(1))
    quarter = rotate_reflect(square, 90.0)  # a quarter turn of a square moves whole pixels
    assert min((quarter - torch.rot90(square, k, dims=(1, 2))).abs().max() for k in (1, -1)) < 1e-5


def test_read_only_frames_convert_without_a_warning() -> None:
    """Frame folders give read-only arrays; torch.from_numpy warned about each in the training log."""
    frame = _frames(8, 10)[0]
    frame.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = to_float(frame)
    assert torch.allclose(image, torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255)


def test_image_augment_and_unknown_kind() -> None:
    out = ImageAugment(crop=300)(_frames(256, 456), torch.Generator().manual_seed(0))
    assert out["image"].shape == (3, 300, 300)  # smaller frames are reflect-padded to the crop
    with pytest.raises(ValueError, match="unknown batch kind"):
        build_augment("clip", crop=64, frame=64)


def test_the_data_package_stands_below_the_methods():
    """Layering: samples are built without importing any method (CycleTime's patch geometry lives
    in `vidcorr.patches`, which both use)."""
    code = ("import sys, vidcorr.data, vidcorr.data.augment, vidcorr.data.pairs, vidcorr.data.videos; "
            "bad = [m for m in sys.modules if m.startswith('vidcorr.methods')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
