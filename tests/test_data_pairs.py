"""Pair / clip sampling rules, determinism, broken-video skipping, the sharded sampler."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch._utils import ExceptionWrapper
from torch.utils.data import DataLoader

from vidcorr.data import (
    GapRange,
    PairSampling,
    ShardedSampler,
    VideoInfo,
    build_dataset,
    build_index,
    clip_indices,
    pair_indices,
)
from vidcorr.data.augment import build_augment
from vidcorr.data.pairs import NoReadableVideo, VideoFrameDataset
from vidcorr.data.videos import VideoIndex
from vidcorr.errors import VidcorrError
from vidcorr.io.video import count_frames
from vidcorr.train.checkpoint import Progress
from vidcorr.train.distributed import DistContext
from vidcorr.train.runlog import RunLog


def _video(num_frames: int, fps: float | None) -> VideoInfo:
    return VideoInfo("/nowhere.mp4", num_frames, fps, 256, 456)


@pytest.mark.parametrize("gap", [(1, 50), (5, 10), (50, 50)])
def test_long_video_pairs_respect_the_gap_in_frames(gap: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    pairs = np.array([pair_indices(200, gap, rng) for _ in range(2000)])
    gaps = pairs[:, 1] - pairs[:, 0]
    assert gaps.min() == gap[0] and gaps.max() == gap[1]  # inclusive bounds, both reached
    assert pairs.min() == 0 and pairs[:, 0].max() == 199 - gap[1]  # t1 ~ U[0, T-1-gap_max]
    assert pairs[:, 1].max() <= 199


def test_short_video_draws_two_independent_frames() -> None:
    rng = np.random.default_rng(0)
    pairs = np.array([pair_indices(30, (1, 50), rng) for _ in range(2000)])
    assert pairs.min() == 0 and pairs.max() == 29
    assert (pairs[:, 1] < pairs[:, 0]).any() and (pairs[:, 1] == pairs[:, 0]).any()


def test_gap_in_seconds_follows_each_videos_fps() -> None:
    gap = GapRange(0.1, 0.5, "seconds")
    assert gap.in_frames(100.0) == (10, 50) and gap.in_frames(10.0) == (1, 5)
    assert GapRange(1, 50).in_frames(6.0) == (1, 50)  # frames ignore fps
    sampling, rng = PairSampling(gap, folder_fps=20.0), np.random.default_rng(1)
    for fps, bounds in ((100.0, (10, 50)), (10.0, (1, 5)), (None, (2, 10))):
        gaps = {int(np.diff(sampling(_video(500, fps), rng))[0]) for _ in range(500)}
        assert min(gaps) == bounds[0] and max(gaps) == bounds[1]


def test_clip_indices() -> None:
    rng = np.random.default_rng(0)
    clip = clip_indices(100, 4, 3, rng)
    assert np.all(np.diff(clip) == 3) and clip[-1] <= 99
    assert clip_indices(5, 4, 3, rng)[-1] == 4  # short video: repeats its last frame


@pytest.fixture(scope="module")
def small_index(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    videos = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))
    short = [v for v in videos if v.stem in ("dog-agility", "rollerblade", "motorbike")]
    listing = tmp_path_factory.mktemp("list") / "short.txt"
    listing.write_text("".join(f"{v}\n" for v in short))
    return build_index([listing], tmp_path_factory.mktemp("cache"))


def test_samples_are_deterministic_per_key(small_index) -> None:
    dataset = build_dataset("crop_pair", small_index, crop=64, frame=128, gap=GapRange(1, 10), seed=3)
    again = build_dataset("crop_pair", small_index, crop=64, frame=128, gap=GapRange(1, 10), seed=3)
    a, b = dataset[(0, 1)], again[(0, 1)]
    assert a["ref"].shape == (3, 64, 64) and a["ref"].dtype == torch.uint8 and a["skipped"] == 0
    assert torch.equal(a["ref"], b["ref"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(a["ref"], dataset[(1, 1)]["ref"])  # another epoch, another sample
    other_seed = build_dataset("crop_pair", small_index, crop=64, frame=128, gap=GapRange(1, 10), seed=4)
    assert not torch.equal(a["ref"], other_seed[(0, 1)]["ref"])


def test_broken_video_is_skipped_counted_and_never_fatal(data_dir: Path, tmp_path: Path, caplog) -> None:
    videos = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[:2]
    for video in videos:
        (tmp_path / video.name).write_bytes(video.read_bytes())
    index = build_index([tmp_path], tmp_path / "cache")
    (tmp_path / videos[0].name).write_bytes(bytes(4096))  # corrupted after indexing
    dataset = build_dataset("image", index, crop=32, frame=32, gap=GapRange(), samples_per_video=4)
    loader = DataLoader(dataset, batch_size=4, sampler=ShardedSampler(len(dataset), seed=0))
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.pairs"):
        skipped = sum(int(batch["skipped"].sum()) for batch in loader)
    assert skipped >= 4  # each of its 4 samples had to be replaced at least once
    assert any(videos[0].name in record.message for record in caplog.records)


def test_no_readable_video_left_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """When every video fails to decode the run must stop: with one line naming a video and the
    problem (`VidcorrError`: exit 2), not a RuntimeError traceback that named no file, also when
    the error comes back from a DataLoader worker (re-raised as ``type(error)(traceback text)``)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(4096))  # corrupted after indexing (not random bytes: 1 in ~300 probed as audio)
    index = VideoIndex([VideoInfo(str(broken), 10, 25.0, 64, 64)], [str(tmp_path)])
    dataset = build_dataset("image", index, crop=32, frame=32, gap=GapRange())
    with pytest.raises(NoReadableVideo) as error:
        dataset[(0, 0)]
    message = str(error.value)
    assert isinstance(error.value, VidcorrError) and "\n" not in message
    assert f"{broken}: cannot be opened as a video" in message and message.count(str(broken)) == 1
    try:  # what a DataLoader worker sends back, and the trainer raises
        dataset[(0, 0)]
    except NoReadableVideo:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(NoReadableVideo) as error:
        wrapped.reraise()
    assert str(error.value) == message



def test_the_fatal_message_counts_draws_and_the_different_videos(tmp_path: Path) -> None:
    """With 2 broken videos it said "20 videos in a row failed to decode": 20 was the draws."""
    broken = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for path in broken:
        path.write_bytes(bytes(4096))
    index = VideoIndex([VideoInfo(str(path), 10, 25.0, 64, 64) for path in broken], [str(tmp_path)])
    dataset = build_dataset("image", index, crop=32, frame=32, gap=GapRange())
    with pytest.raises(NoReadableVideo, match=r"^20 draws in a row for sample \(0, 0\) hit unreadable "
                                              r"videos \(2 different\), the last "):
        dataset[(0, 0)]


def test_a_listed_count_past_the_end_drops_the_video_saying_whence(data_dir: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A list file's frame count for a video file is trusted (docs/training.md); when it is too
    large, the warning says the count came from the list, not only "there are only 82 frames"."""
    bear, other = (data_dir / "videos" / "davis2016-train" / name for name in ("bear.mp4", "boat.mp4"))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bear} 999\n{other}\n")
    index = build_index([listing], tmp_path / "cache")
    def last_frame(video: VideoInfo, rng: np.random.Generator) -> list[int]:
        return [video.num_frames - 1]

    dataset = VideoFrameDataset(index, last_frame, build_augment("image", crop=32, frame=32))
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.pairs"):
        sample = dataset[(0, 0)]
    assert sample["skipped"] >= 1
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == (f"skipping unreadable video {bear}: frame 998 requested but there are only "
                       f"{count_frames(bear)} frames (indices 0..{count_frames(bear) - 1}); its frame count, 999, "
                       "is the list file's, not counted")



def test_a_listed_video_that_fails_to_decode_does_not_blame_its_count(data_dir: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The list file's count is named only where it can be the cause (too few frames): a video that
    cannot be decoded any more was also said to have "its frame count, 80, ... the list file's"."""
    bear = tmp_path / "bear.mp4"
    bear.write_bytes((data_dir / "videos" / "davis2016-train" / "bear.mp4").read_bytes())
    other = data_dir / "videos" / "davis2016-train" / "boat.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bear} 80\n{other}\n")
    index = build_index([listing], tmp_path / "cache")
    assert index[0].frames_from_list
    bear.write_bytes(b"not a video any more")  # after indexing
    dataset = VideoFrameDataset(index, lambda video, rng: [0, 1], build_augment("image", crop=32, frame=32))
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.pairs"):
        assert dataset[(0, 0)]["skipped"] >= 1
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"skipping unreadable video {bear}: cannot be opened as a video")
    assert "list file" not in warning


def test_a_frame_folder_broken_after_indexing_is_skipped_naming_the_frame(data_dir: Path, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The warning gave "frame is 320x240 but 00000.jpg is 854x480" after the folder's path: which frame?"""
    frames = sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:4]
    folder = tmp_path / "seq"
    folder.mkdir()
    for frame in frames:
        (folder / frame.name).write_bytes(frame.read_bytes())
    index = build_index([folder, data_dir / "videos" / "davis2016-train" / "bear.mp4"], tmp_path / "cache")
    Image.new("RGB", (320, 240)).save(folder / frames[2].name)  # replaced after indexing
    dataset = build_dataset("image", index, crop=32, frame=32, gap=GapRange())
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.pairs"):
        assert dataset[(0, 0)]["skipped"] >= 1
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping unreadable video {folder}: 00002.jpg: frame is 320x240 but 00000.jpg is 854x480; "
        "all frames must share one size"]


def test_the_log_and_tensorboard_say_unreadable_draws(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The count is of draws that hit an unreadable video, not of videos: one broken video of two
    logged "skipped videos 19" after 12 steps. It is named for what it counts."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(), every=1, progress_bar=False)
    with caplog.at_level(logging.INFO, logger="vidcorr.train.runlog"):
        run.step(Progress(step=1, skipped_videos=19), {"loss": 1.0, "skipped_videos": 19.0}, 0.1, "s", 4)
    run.close()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith("| unreadable draws 19") and "skipped" not in line
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("data/unreadable_draws")] == [19.0]
    assert "data/skipped_videos" not in events.Tags()["scalars"]


def test_sampler_shards_disjointly_and_covers_the_epoch() -> None:
    for size in (10, 11):
        shards = [list(ShardedSampler(size, 2, rank, seed=7)) for rank in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == -(-size // 2)
        indices = [i for shard in shards for _, i in shard]
        assert set(indices) == set(range(size))
        assert len(indices) - len(set(indices)) == size % 2  # padding repeats at most one
    assert all(epoch == 0 for epoch, _ in shards[0])


def test_sampler_reshuffles_per_epoch_and_resumes_mid_epoch() -> None:
    sampler = ShardedSampler(50, 2, 1, seed=(0, 1))
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for _, i in first] != [i for _, i in second] and second[0][0] == 1
    sampler.set_epoch(1, start=7)
    assert list(sampler) == second[7:] and len(sampler) == 25 - 7
