"""Sampling and augmentation rules that a mutation audit of `vidcorr.data.pairs` / `.augment`
found untested: each test here failed on a hand-made mutant that the other data tests let pass
(edge frame counts, the unreadable-draw count, which frame each augmentation reads, rounding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from vidcorr.data import GapRange, VideoInfo, augment, build_dataset, clip_indices, pair_indices
from vidcorr.data.augment import (
    CropPairAugment,
    CycleClipAugment,
    ImageAugment,
    PatchFramePairAugment,
    ResizedCropPairAugment,
    colour_jitter,
    random_crop,
    random_resized_box,
    resize,
    to_float,
    to_uint8,
)
from vidcorr.data.pairs import ClipSampling, CycleClipSampling
from vidcorr.data.videos import VideoIndex


def test_a_video_of_exactly_gap_max_frames_draws_two_independent_frames() -> None:
    """METHODS.md §1.3: the gap rule needs *more* than gap_max frames; at exactly gap_max there is no
    room for t1 (``integers(0, 0)`` raised in a loader worker), so both frames are uniform."""
    rng = np.random.default_rng(0)
    pairs = np.array([pair_indices(50, (1, 50), rng) for _ in range(500)])
    assert pairs.min() == 0 and pairs.max() == 49
    assert (pairs[:, 1] <= pairs[:, 0]).any()  # not t1 + gap: the second frame may come first


def test_a_gap_in_seconds_shorter_than_a_frame_is_one_frame() -> None:
    """A gap bound below half a frame rounds to 0 frames; the upper bound must stay >= the lower
    (at least 1), or drawing the gap (``integers(1, 1)``) fails on low-fps videos."""
    gap = GapRange(0.01, 0.02, "seconds")
    assert gap.in_frames(10.0) == (1, 1)
    assert pair_indices(100, gap.in_frames(10.0), np.random.default_rng(0))[1] > 0


def test_cycle_clips_are_gap_low_apart_and_images_one_frame(data_dir: Path) -> None:
    """`build_dataset`'s docstring: "cycle_clip" frames ``gap.low`` apart (CycleTime's fixed
    frame_gap, METHODS.md §2.3), whatever ``gap.high`` allows pairs."""
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    index = VideoIndex([VideoInfo(str(video), 50, 25.0, 64, 64)], [str(video.parent)])
    cycle = build_dataset("cycle_clip", index, crop=48, frame=48, gap=GapRange(2, 9), clip_length=4)
    assert cycle.sampling == CycleClipSampling(4, GapRange(2, 2), folder_fps=30.0)
    indices = cycle.sampling(index[0], np.random.default_rng(0))
    assert np.diff(indices[:4]).tolist() == [2, 2, 2]
    image = build_dataset("image", index, crop=48, frame=48, gap=GapRange(2, 9))
    assert image.sampling == ClipSampling(length=1, folder_fps=30.0)


def test_each_sample_counts_every_draw_that_hit_an_unreadable_video(data_dir: Path, tmp_path: Path) -> None:
    """The module's promise: ``"skipped"`` is the number of a sample's draws that hit an unreadable
    video (one broken video drawn twice for one sample counts 2), not whether it hit one."""
    good = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    broken = [tmp_path / f"broken{i}.mp4" for i in range(3)]
    for path in broken:
        path.write_bytes(bytes(4096))
    index = VideoIndex([VideoInfo(str(p), 10, 25.0, 64, 64) for p in broken]
                       + [VideoInfo(str(good), 10, 25.0, 64, 64)], [str(tmp_path), str(good.parent)])
    dataset = build_dataset("image", index, crop=16, frame=16, gap=GapRange(), samples_per_video=3)
    draws: list[str] = []
    sampling = dataset.sampling
    dataset.sampling = lambda video, rng: draws.append(video.path) or sampling(video, rng)  # one call per draw
    counts = []
    for i in range(len(dataset)):
        draws.clear()
        skipped = dataset[(0, i)]["skipped"]
        assert draws[-1] == str(good) and skipped == sum(path != str(good) for path in draws)
        counts.append(skipped)
    assert max(counts) >= 2  # some sample needed several replacements: the count is not a flag


def test_random_crops_reach_every_offset() -> None:
    """"Uniform size x size crop": an image one pixel larger than the crop gives both offsets on
    each axis (the last one was unreachable with ``randint(0, h - size)``)."""
    image = torch.arange(33 * 34, dtype=torch.float32).reshape(1, 33, 34).expand(3, 33, 34)
    corners = set()
    for seed in range(40):
        crop = random_crop(image, 32, torch.Generator().manual_seed(seed))
        corners.add(divmod(int(crop[0, 0, 0]), 34))
    assert corners == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}


def test_uint8_conversion_rounds_to_the_nearest_level() -> None:
    """Every sample crosses to_uint8 after interpolation: truncating instead of rounding darkens all
    training images by half a level on average."""
    values = torch.tensor([0.0, 0.4, 0.6, 127.5, 254.6, 255.0, 300.0]) / 255
    assert to_uint8(values.view(1, 1, -1).expand(3, 1, -1))[0, 0].tolist() == [0, 0, 1, 128, 255, 255, 255]
    frame = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert torch.equal(to_uint8(to_float(frame)), torch.from_numpy(frame).permute(2, 0, 1))


def test_the_joint_pair_crops_the_first_frame_and_shows_the_second_whole() -> None:
    """UVC VidListv2 (METHODS.md §1.3): the patch comes from frame 1, the whole target from frame 2
    (with the same frame for both the joint stage learns nothing about motion)."""
    first, second = np.full((48, 64, 3), 40, np.uint8), np.full((48, 64, 3), 200, np.uint8)
    out = PatchFramePairAugment(crop=16, frame=32, max_rotation=0.0)([first, second], torch.Generator().manual_seed(0))
    assert out["ref"].unique().tolist() == [40] and out["target"].unique().tolist() == [200]


def test_stt_boxes_are_random_shares_of_the_frame_not_the_fallback() -> None:
    """torchvision's rule: w = sqrt(area * ratio), h = sqrt(area / ratio) for ratio = w / h. With
    the two swapped, no box of aspect 1.5-2 fits a 256 x 455 frame, and every draw fell back to the
    whole frame, which `random_resized_box`'s own bounds check still accepted."""
    generator = torch.Generator().manual_seed(0)
    boxes = [random_resized_box(256, 455, (0.6, 1.0), (1.5, 2.0), generator) for _ in range(50)]
    areas = [h * w / (256 * 455) for _, _, h, w in boxes]
    assert min(areas) < 0.7 and len(set(boxes)) > 40
    assert all(1.45 <= w / h <= 2.05 for _, _, h, w in boxes)


def test_stt_boxes_reach_every_offset() -> None:
    """A fixed 20 x 10 box (aspect 2, area 200 of 21 x 11) sits at any of the 2 x 2 offsets."""
    generator = torch.Generator().manual_seed(0)
    boxes = {random_resized_box(11, 21, (200 / 231, 200 / 231), (2.0, 2.0), generator) for _ in range(60)}
    assert boxes == {(top, left, 10, 20) for top in (0, 1) for left in (0, 1)}


def test_stt_pairs_flip_half_the_time_both_frames_alike() -> None:
    """METHODS.md §4.3: one horizontal flip with p 0.5, shared by both frames of the pair."""
    ramp = np.tile((np.arange(200) * 255 // 199).astype(np.uint8)[None, :, None], (100, 1, 3))
    augment = ResizedCropPairAugment(crop=32)
    flipped = []
    for seed in range(12):
        out = augment([ramp, ramp.copy()], torch.Generator().manual_seed(seed))
        slopes = [int(x[0, 0, -1]) - int(x[0, 0, 0]) for x in (out["ref"], out["target"])]
        assert slopes[0] != 0 and (slopes[0] < 0) == (slopes[1] < 0)
        flipped.append(slopes[0] < 0)
    assert 3 <= sum(flipped) <= 9


def test_moco_views_apply_jitter_grayscale_and_blur_at_their_rates(monkeypatch) -> None:
    """TwoViewAugment's docstring (MoCo v2): colour jitter with p 0.8, grayscale p 0.2, blur p 0.5,
    each view drawn on its own. Counted by wrapping the three operations."""
    calls = {"jitter": 0, "gray": 0, "blur": 0}

    def counting(name, function):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(augment, "colour_jitter", counting("jitter", augment.colour_jitter))
    monkeypatch.setattr(TF, "rgb_to_grayscale", counting("gray", TF.rgb_to_grayscale))
    monkeypatch.setattr(TF, "gaussian_blur", counting("blur", TF.gaussian_blur))
    frame = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    views = 2 * 100
    for seed in range(100):
        augment.TwoViewAugment(crop=16)([frame], torch.Generator().manual_seed(seed))
    # binomial, 200 draws: 4 standard deviations either side of 0.8, 0.2 and 0.5
    assert 0.69 < calls["jitter"] / views < 0.91
    assert 0.09 < calls["gray"] / views < 0.31
    assert 0.36 < calls["blur"] / views < 0.64


def test_colour_jitter_draws_each_factor_on_both_sides(monkeypatch) -> None:
    """torchvision ColorJitter(b, c, s, h): factors uniform in [1 - x, 1 + x], the hue shift uniform
    in [-h, h] (a hue drawn in [0, h] only ever turned colours one way)."""
    factors: dict[str, list[float]] = {"brightness": [], "contrast": [], "saturation": [], "hue": []}
    for name in factors:
        original = getattr(TF, f"adjust_{name}")
        monkeypatch.setattr(TF, f"adjust_{name}",
                            lambda x, f, _n=name, _o=original: factors[_n].append(f) or _o(x, f))
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    for seed in range(100):
        colour_jitter(image, (0.4, 0.4, 0.4, 0.1), torch.Generator().manual_seed(seed))
    for name, (low, high) in {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4),
                              "hue": (-0.1, 0.1)}.items():
        drawn = factors[name]
        assert len(drawn) == 100 and low <= min(drawn) and max(drawn) <= high
        spread = (high - low) / 4  # both ends of the range are reached
        assert min(drawn) < low + spread and max(drawn) > high - spread, name


def test_resize_antialiases_an_axis_it_shrinks_while_the_other_grows() -> None:
    """STT's boxes (aspect 1.5-2) go to a square: wider than tall, so the width shrinks while the
    height grows. Antialiasing only when both shrink let 1-pixel stripes alias into bars."""
    stripes = torch.zeros(3, 10, 100)
    stripes[:, :, ::2] = 1.0
    out = resize(stripes, 20, 20)
    assert out.shape == (3, 20, 20) and (out - 0.5).abs().max() < 0.1


def _cycle_frames() -> list[np.ndarray]:
    """A 240 x 240 clip of static dark noise: the first clip frame has a large bright block (it
    differs from the target there, but that is not the motion CycleTime scores), and a bright
    square moves 10 px right from the target frame to the frame after it, near the left edge."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (240, 240, 3), dtype=np.uint8)
    frames = [base.copy() for _ in range(6)]
    frames[0][130:230, 100:230] = 255
    frames[-2][40:70, 30:60] = 255
    frames[-1][40:70, 40:70] = 255
    return frames


def test_the_patch_follows_the_motion_from_the_target_to_the_frame_after_it() -> None:
    """METHODS.md §2.3: windows are scored by sum |I_f - I_(f+gap)| of the target and the frame after
    it, not by the difference from the clip's frames; the patch lands on the moving square."""
    augment = CycleClipAugment(crop=240, resize=240, top=1, jitter=0.0, max_rotation=0.0, flip=False)
    out = augment(_cycle_frames(), torch.Generator().manual_seed(0))
    assert out["patch"].float().mean() > out["target"].float().mean() + 20


def test_a_flipped_cycle_clip_is_the_clip_of_the_flipped_frames() -> None:
    """"Flipped together": every frame, the one after the target included (motion is scored on
    it), so a flipped sample equals the unflipped augmentation of mirrored frames. With crop ==
    resize, top 1, no jitter and no rotation, nothing else is drawn. (Left unflipped, the frame
    after the target put the patch where the motion is in the unflipped frames.)"""
    frames = _cycle_frames()
    frames[-2] = frames[1].copy()  # the motion is all in the frame after the target, left of centre
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    fixed = dict(crop=240, resize=240, top=1, jitter=0.0, max_rotation=0.0)
    plain = CycleClipAugment(**fixed, flip=False)
    expected = {False: plain(frames, torch.Generator()), True: plain(mirrored, torch.Generator())}
    seen = set()
    for seed in range(6):
        out = CycleClipAugment(**fixed, flip=True)(frames, torch.Generator().manual_seed(seed))
        flipped = torch.equal(out["target"], expected[True]["target"])
        seen.add(flipped)
        assert all(torch.equal(out[k], expected[flipped][k]) for k in out), (seed, flipped)
    assert seen == {False, True}


def test_the_joint_patch_is_cut_at_a_random_position() -> None:
    """VidListv2's frame 1: a random crop x crop patch of the resized, padded frame (not one window)."""
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    augment = PatchFramePairAugment(crop=16, frame=32, max_rotation=0.0)
    refs = {augment([frame, frame], torch.Generator().manual_seed(seed))["ref"].numpy().tobytes() for seed in range(8)}
    assert len(refs) >= 6


def test_the_autoencoders_images_flip_half_the_time() -> None:
    """ImageAugment: "random flip", p 0.5 as everywhere else."""
    ramp = np.tile((np.arange(64) * 255 // 63).astype(np.uint8)[None, :, None], (32, 1, 3))
    flips = [int(out[0, 0, -1]) < int(out[0, 0, 0]) for out in
             (ImageAugment(crop=32)([ramp], torch.Generator().manual_seed(seed))["image"] for seed in range(40))]
    assert 10 <= sum(flips) <= 30  # binomial(40, 0.5): 3 standard deviations


def test_clips_start_anywhere_they_fit() -> None:
    """``length`` frames ``step`` apart from a uniform start: in a 12-frame video a 4-frame clip with
    step 3 spans 9 frames, so it starts at 0, 1 or 2 (2 ends on the last frame)."""
    rng = np.random.default_rng(0)
    starts = {clip_indices(12, 4, 3, rng)[0] for _ in range(100)}
    assert starts == {0, 1, 2}


def test_the_warmup_pair_shares_one_scale() -> None:
    """METHODS.md §1.3 (UVC's "multi" transforms): one scale for both frames, only the crop positions
    independent. On a horizontal ramp a crop's slope tells its scale: equal slopes, one scale."""
    ramp = np.tile((np.arange(456) * 255 // 455).astype(np.uint8)[None, :, None], (256, 1, 3))
    augment = CropPairAugment(crop=64, max_rotation=0.0, scale=(0.7, 1.4), flip=False)
    slopes = set()
    for seed in range(6):
        out = augment([ramp, ramp], torch.Generator().manual_seed(seed))
        ref, target = (int(x[0, 0, -1]) - int(x[0, 0, 0]) for x in (out["ref"], out["target"]))
        assert abs(ref - target) <= 1, seed
        slopes.add(ref)
    assert max(slopes) - min(slopes) > 5  # the scale does vary from sample to sample
