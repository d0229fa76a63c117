"""Training samples drawn from the video index: frame pairs (UVC), clips, single frames.

Every sample is a pure function of ``(seed, epoch, index)``: the sampler yields ``(epoch,
index)`` keys and the dataset derives all randomness (frame choice, augmentation, the
replacement for a broken video) from them. So a run resumed mid-epoch sees exactly the batches
it would have seen, whatever the number of DataLoader workers.

Decoders are opened per sample inside `__getitem__` (i.e. inside the DataLoader worker), never
in ``__init__``: the dataset holds only the plain index and pickles cheaply. A video that fails
to decode is skipped with a warning and another is drawn; each sample carries the number of its
draws that hit an unreadable video (``"skipped"``), which the trainer sums and logs as "unreadable
draws": one broken video drawn 19 times counts 19, not 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vidcorr.data.augment import Augment, build_augment
from vidcorr.data.video_probe import VideoInfo, problem_with
from vidcorr.data.videos import PAIR, FrameNeed, VideoIndex
from vidcorr.errors import TooFewFrames, VidcorrError
from vidcorr.io.video import read_frames_at
from vidcorr.strict_dict import refuse_non_finite

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (epoch, sample index)
Seed = int | tuple[int, ...]  # e.g. (run seed, stage index): each stage draws its own samples


def _seed_words(seed: Seed) -> list[int]:
    return [seed] if isinstance(seed, int) else list(seed)


@dataclass(frozen=True)
class GapRange:
    """Allowed frame distance between the two frames of a pair (inclusive bounds).

    unit "frames": UVC's 1..50 raw frames (METHODS.md §1.3), right for single-fps data like
    Kinetics. unit "seconds": converted per video with its fps, for mixed-fps data (our clips
    run at 6-100 fps, so 50 frames is 0.5 s in one and 8 s in another).
    """

    low: float = 1
    high: float = 50
    unit: Literal["frames", "seconds"] = "frames"

    def __post_init__(self) -> None:
        if self.unit not in ("frames", "seconds"):
            raise ValueError(f"gap unit must be 'frames' or 'seconds', got {self.unit!r}")
        refuse_non_finite(self)  # high = inf passed the range check, then failed in round() at the first sample
        if not 0 < self.low <= self.high:
            raise ValueError(f"gap range must satisfy 0 < low <= high, got {self.low}..{self.high}")

    def in_frames(self, fps: float) -> tuple[int, int]:
        """(low, high) in whole frames, each at least 1."""
        if self.unit == "frames":
            return max(1, round(self.low)), max(1, round(self.high))
        low = max(1, round(self.low * fps))
        return low, max(low, round(self.high * fps))


def pair_indices(num_frames: int, gap: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """UVC's pair rule (``framepair_loader``, METHODS.md §1.3).

    If the video has more than ``gap_max`` frames: t1 ~ U{0..T-1-gap_max}, t2 = t1 + U{gap},
    so t2 <= T-1. Otherwise two independent uniform frames (possibly equal), as UVC does.
    """
    low, high = gap
    if num_frames > high:
        t1 = int(rng.integers(0, num_frames - high))
        return [t1, t1 + int(rng.integers(low, high + 1))]
    return [int(rng.integers(0, num_frames)), int(rng.integers(0, num_frames))]


def clip_indices(num_frames: int, length: int, step: int, rng: np.random.Generator) -> list[int]:
    """``length`` frames ``step`` apart from a uniform start; a short video repeats its last frame."""
    span = (length - 1) * step
    start = int(rng.integers(0, max(1, num_frames - span)))
    return [min(start + i * step, num_frames - 1) for i in range(length)]


@dataclass(frozen=True)
class PairSampling:
    """Two frames, gap from ``gap``; ``folder_fps`` stands in for frame folders' unknown fps."""

    gap: GapRange = GapRange()
    folder_fps: float = 30.0

    def __post_init__(self) -> None:
        refuse_non_finite(self)  # a NaN or infinite folder_fps (a gap in seconds, a frame folder) failed in a worker

    def __call__(self, video: VideoInfo, rng: np.random.Generator) -> list[int]:
        return pair_indices(video.num_frames, self.gap.in_frames(video.fps or self.folder_fps), rng)


@dataclass(frozen=True)
class ClipSampling:
    """``length`` frames ``step`` apart (CycleTime / CRW clips); ``length=1``: one frame."""

    length: int = 1
    step: GapRange = GapRange(1, 1)
    folder_fps: float = 30.0

    def __post_init__(self) -> None:
        refuse_non_finite(self)  # a NaN or infinite folder_fps (a gap in seconds, a frame folder) failed in a worker

    def __call__(self, video: VideoInfo, rng: np.random.Generator) -> list[int]:
        step = self.step.in_frames(video.fps or self.folder_fps)[0]
        return clip_indices(video.num_frames, self.length, step, rng)


def cycle_clip_indices(num_frames: int, length: int, step: int, pred_distance: int,
                       rng: np.random.Generator) -> list[int]:
    """CycleTime's frames (``vlog_train.py``): ``length`` frames ``step`` apart from a uniform start
    s, the target at s + (length + pred_distance) * step - 1 and the frame ``step`` after it (for the
    motion that places the patch). A video shorter than that span is sampled at the same relative
    positions squeezed into its frames, as the official loader shrinks its gap."""
    offsets = [i * step for i in range(length)]
    target = (length + pred_distance) * step - 1
    offsets += [target, target + step]
    span = offsets[-1]
    if num_frames > span:
        start = int(rng.integers(0, num_frames - span))
        return [start + o for o in offsets]
    return [round(o * (num_frames - 1) / span) for o in offsets]


@dataclass(frozen=True)
class CycleClipSampling:
    """CycleTime clips (`cycle_clip_indices`); ``step`` gives the frame gap (its lower bound)."""

    length: int = 4
    step: GapRange = GapRange(2, 2)
    pred_distance: int = 4
    folder_fps: float = 30.0

    def __post_init__(self) -> None:
        refuse_non_finite(self)  # a NaN or infinite folder_fps (a gap in seconds, a frame folder) failed in a worker

    def __call__(self, video: VideoInfo, rng: np.random.Generator) -> list[int]:
        step = self.step.in_frames(video.fps or self.folder_fps)[0]
        return cycle_clip_indices(video.num_frames, self.length, step, self.pred_distance, rng)


Sampling = Callable[[VideoInfo, np.random.Generator], list[int]]


class NoReadableVideo(VidcorrError):
    """A sample found no decodable video in ``max_attempts`` tries: training cannot go on.

    A DataLoader worker's exception reaches the trainer as ``type(error)(text)``, where ``text`` is
    the worker's whole traceback ending in ``module.Class: message``; keeping that last line lets
    the command line still print one line naming the video (it printed a traceback and a
    RuntimeError that named no file).
    """

    def __init__(self, message: str):
        last = message.rstrip().splitlines()[-1]
        super().__init__(last.removeprefix(f"{__name__}.{type(self).__qualname__}: "))


class VideoFrameDataset(Dataset):
    """Samples of frames from indexed videos; ``dataset[(epoch, i)]`` -> dict of tensors.

    Sample i (of ``len(index) * samples_per_video``) comes from video ``i % len(index)``.
    The augmentation turns the list of RGB uint8 frames (H, W, 3) into named uint8 tensors
    (see `vidcorr.data.augment`); ``"skipped"`` (int: draws that hit an unreadable video) is added.
    """

    def __init__(
        self,
        index: VideoIndex,
        sampling: Sampling,
        augment: Augment,
        seed: Seed = 0,
        samples_per_video: int = 1,
        max_attempts: int = 20,
    ):
        if len(index) == 0:
            raise ValueError("the video index is empty")
        self.index, self.sampling, self.augment = index, sampling, augment
        self.seed, self.samples_per_video = _seed_words(seed), samples_per_video
        self.max_attempts = max_attempts
        self._broken: dict[str, str] = {}  # per worker: never decode a known-broken video twice

    def __len__(self) -> int:
        return len(self.index) * self.samples_per_video

    def __getitem__(self, key: Key) -> dict[str, Any]:
        epoch, i = key
        tried: set[str] = set()  # for the fatal message: one broken video drawn 20 times is not 20 videos
        for attempt in range(self.max_attempts):
            rng = np.random.default_rng([*self.seed, epoch, i, attempt])
            # The replacement for a broken video is drawn from the key, not from which videos
            # this worker happens to know are broken: results stay independent of workers.
            video_id = i % len(self.index) if attempt == 0 else int(rng.integers(len(self.index)))
            video = self.index[video_id]
            tried.add(video.path)
            frames = self._read(video, rng)
            if frames is not None:
                generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
                return {**self.augment(frames, generator), "skipped": attempt}
        raise NoReadableVideo(f"{self.max_attempts} draws in a row for sample {key} hit unreadable videos "
                              f"({len(tried)} different), the last {video.path}: {self._broken[video.path]} "
                              "(see the warnings above)")

    def _read(self, video: VideoInfo, rng: np.random.Generator) -> list[np.ndarray] | None:
        indices = self.sampling(video, rng)
        if video.path in self._broken:
            return None
        try:
            return read_frames_at(video.path, indices)
        except Exception as error:  # a corrupt file must never end a week-long run
            problem = problem_with(video.path, error)  # the path once, a frame file's name kept
            if video.frames_from_list and isinstance(error, TooFewFrames):  # not for a decoding error
                problem += f"; its frame count, {video.num_frames}, is the list file's, not counted"
            self._broken[video.path] = problem
            log.warning("skipping unreadable video %s: %s", video.path, self._broken[video.path])
            return None


# What a video must hold for each batch kind's samples (`build_dataset`'s sampling). A CycleTime
# clip squeezes into a short video (`cycle_clip_indices`, as the official loader shrinks its gap),
# but one frame repeated has no motion to track: 2, like a pair. One frame serves "image" and
# "two_views" (two augmentations of it), so a still image is data for MoCo and the auto-encoder.
FRAME_NEEDS: dict[str, FrameNeed] = {
    "crop_pair": PAIR, "patch_frame": PAIR, "resized_crop_pair": PAIR,
    "cycle_clip": FrameNeed(2, "a clip"),
    "image": FrameNeed(1, "an image"), "two_views": FrameNeed(1, "an image"),
}


def frames_needed(kinds: Iterable[str]) -> FrameNeed:
    """The most frames any of ``kinds`` (a method's batch kinds, one a stage) needs a video to hold."""
    needs = [FRAME_NEEDS[kind] for kind in kinds]
    if not needs:
        raise ValueError("no batch kinds given")
    return max(needs, key=lambda need: need.count)


def build_dataset(
    kind: str,
    index: VideoIndex,
    *,
    crop: int,
    frame: int,
    gap: GapRange,
    folder_fps: float = 30.0,
    seed: Seed = 0,
    samples_per_video: int = 1,
    clip_length: int = 4,
) -> VideoFrameDataset:
    """The dataset a method's batch kind needs (`vidcorr.data.augment.build_augment`).

    Pair kinds ("crop_pair", "patch_frame", "resized_crop_pair") sample pairs ``gap`` apart;
    "image" and "two_views" sample one frame;
    "cycle_clip" samples CycleTime clips of ``clip_length`` frames ``gap.low`` apart.
    """
    if kind in ("image", "two_views"):
        sampling: Sampling = ClipSampling(length=1, folder_fps=folder_fps)
    elif kind == "cycle_clip":
        sampling = CycleClipSampling(clip_length, GapRange(gap.low, gap.low, gap.unit), folder_fps=folder_fps)
    else:
        sampling = PairSampling(gap, folder_fps)
    augment = build_augment(kind, crop=crop, frame=frame)
    return VideoFrameDataset(index, sampling, augment, seed, samples_per_video)


class ShardedSampler(Sampler[Key]):
    """`DistributedSampler` that yields ``(epoch, index)`` keys and can resume mid-epoch.

    Each epoch is a permutation drawn from ``(seed, epoch)``, padded by wrapping around to a
    multiple of ``num_replicas`` (every rank gets the same count, as DDP needs), and dealt out
    ``rank::num_replicas``. ``set_epoch(epoch, start)`` skips this rank's first ``start``
    samples, i.e. those already trained on before a checkpoint.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: Seed = 0,
                 shuffle: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.size, self.num_replicas, self.rank = size, num_replicas, rank
        self.seed, self.shuffle = _seed_words(seed), shuffle
        self.epoch, self.start = 0, 0
        self.per_rank = -(-size // num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[Key]:
        order = np.arange(self.size)
        if self.shuffle:
            order = np.random.default_rng([*self.seed, self.epoch]).permutation(self.size)
        order = np.resize(order, self.per_rank * self.num_replicas)  # wrap-around padding
        for i in order[self.rank :: self.num_replicas][self.start :]:
            yield self.epoch, int(i)

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)
