"""Training data: the video index, frame-pair / clip samplers as Datasets, UVC augmentations."""

from vidcorr.data.augment import (
    BATCH_KINDS,
    CropPairAugment,
    ImageAugment,
    PatchFramePairAugment,
    build_augment,
)
from vidcorr.data.pairs import (
    ClipSampling,
    GapRange,
    PairSampling,
    ShardedSampler,
    VideoFrameDataset,
    build_dataset,
    clip_indices,
    pair_indices,
)
from vidcorr.data.videos import VideoIndex, VideoInfo, build_index, default_cache_dir

__all__ = [
    "BATCH_KINDS",
    "ClipSampling",
    "CropPairAugment",
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
    "default_cache_dir",
    "pair_indices",
]
