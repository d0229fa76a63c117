"""Training data: the video index, frame-pair / clip samplers as Datasets, UVC and CycleTime augmentations."""

from vidcorr.data.augment import (
    BATCH_KINDS,
    CropPairAugment,
    CycleClipAugment,
    ImageAugment,
    PatchFramePairAugment,
    build_augment,
)
from vidcorr.data.pairs import (
    ClipSampling,
    CycleClipSampling,
    GapRange,
    PairSampling,
    ShardedSampler,
    VideoFrameDataset,
    build_dataset,
    clip_indices,
    cycle_clip_indices,
    frames_needed,
    pair_indices,
)
from vidcorr.data.video_probe import VideoInfo
from vidcorr.data.videos import VideoIndex, build_index, default_cache_dir

__all__ = [
    "BATCH_KINDS",
    "ClipSampling",
    "CropPairAugment",
    "CycleClipAugment",
    "CycleClipSampling",
    "GapRange",
    "ImageAugment",
    "PairSampling",
    "PatchFramePairAugment",
    "ShardedSampler",
    "VideoFrameDataset",
    "VideoIndex",
    "VideoInfo",
    "build_augment",
    "build_dataset",
    "build_index",
    "clip_indices",
    "cycle_clip_indices",
    "default_cache_dir",
    "frames_needed",
    "pair_indices",
]
