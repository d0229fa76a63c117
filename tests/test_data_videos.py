"""Video index over the real shared data: folder trees, list files, Kinetics layout, cache."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from video_helpers import VFR_TIMES, write_vfr_video

from vidcorr.data import frames_needed
from vidcorr.data.pairs import GapRange, build_dataset
from vidcorr.data.video_probe import CACHE_NAME, FILE_RATE_VERSION
from vidcorr.data.videos import build_index, list_file, list_folder
from vidcorr.errors import InputError
from vidcorr.io.images import FRAME_LISTING_VERSION
from vidcorr.io.video import count_frames, open_frames
from vidcorr.train import feed, recipe_from_dict
from vidcorr.train.distributed import DistContext
from vidcorr.train.loop import TrainJob

DAVIS_TRAIN = ("videos", "davis2016-train")  # 30 mp4s, 2,079 frames, 24 fps
CLIPS = ("videos", "clips")  # 75 mp4s in per-source folders, 10,348 frames, 6-100 fps


def test_folder_trees_count_every_video_and_frame(data_dir: Path, tmp_path: Path) -> None:
    index = build_index([data_dir.joinpath(*DAVIS_TRAIN), data_dir.joinpath(*CLIPS)], tmp_path)
    summary = index.describe()
    assert (summary["videos"], summary["frames"], summary["skipped_at_index"]) == (105, 12427, 0)
    davis = [v for v in index.videos if "davis2016-train" in v.path]
    assert len(davis) == 30 and {v.fps for v in davis} == {24.0}
    assert min(v.height for v in index.videos) == 256  # short side 256 throughout
    fps = [v.fps for v in index.videos if v.fps is not None]
    assert min(fps) < 7 and max(fps) > 99  # the mixed frame rates gap-in-seconds exists for


def test_frame_folders_are_videos(data_dir: Path, tmp_path: Path) -> None:
    index = build_index([data_dir / "davis2016" / "JPEGImages"], tmp_path)
    assert len(index) == 10 and sum(v.num_frames for v in index.videos) == 725
    assert all(v.fps is None and (v.height, v.width) == (480, 854) for v in index.videos)


def test_kinetics_layout_from_symlinks_and_its_list_file(data_dir: Path, tmp_path: Path) -> None:
    videos = sorted(data_dir.joinpath(*DAVIS_TRAIN).glob("*.mp4"))[:6]
    root = tmp_path / "kinetics" / "train_256"
    for i, video in enumerate(videos):
        target = root / ("abseiling" if i % 2 else "zumba") / f"{video.stem}_000010_000020.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(video, target)
    by_tree = build_index([root], tmp_path / "cache")
    assert len(by_tree) == 6
    assert all("/train_256/" in v.path for v in by_tree.videos)  # symlink names kept, not resolved
    # UVC's list: paths relative to the list file's folder, one per line
    listing = tmp_path / "kinetics" / "train.txt"
    listing.write_text("".join(f"{Path(v.path).relative_to(root.parent)}\n" for v in by_tree.videos))
    by_list = build_index([listing], tmp_path / "cache")
    assert [v.path for v in by_list.videos] == [v.path for v in by_tree.videos]
    assert [v.num_frames for v in by_list.videos] == [v.num_frames for v in by_tree.videos]


def test_folder_nframes_list_and_comments(data_dir: Path, tmp_path: Path) -> None:
    frames = data_dir / "davis2016" / "JPEGImages" / "480p"
    listing = tmp_path / "list.txt"
    listing.write_text(f"# CRW / TimeCycle style\n{frames / 'blackswan'} 50\n\n{frames / 'cows'} 104\n")
    assert list_file(listing) == [(frames / "blackswan", 50), (frames / "cows", 104)]
    index = build_index([listing], tmp_path)
    assert [v.num_frames for v in index.videos] == [50, 104]


def test_a_list_file_saved_with_a_byte_order_mark(data_dir: Path, tmp_path: Path) -> None:
    """A Windows editor's BOM became part of the first path, a relative one then not found."""
    listing = tmp_path / "list.txt"
    (tmp_path / "blackswan").symlink_to(data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan")
    listing.write_bytes("blackswan 50\r\n".encode("utf-8-sig"))
    assert list_file(listing) == [(tmp_path / "blackswan", 50)]
    assert [v.num_frames for v in build_index([listing], tmp_path / "cache").videos] == [50]
    listing.write_bytes(b"blackswan \xe9\n")  # Latin-1: what to do is said
    with pytest.raises(InputError, match="unreadable list file: not UTF-8 or UTF-16 text .*save it as UTF-8"):
        list_file(listing)
    # given to --data, it was probed as a video: "cannot be opened as a video (Invalid data ...)"
    with pytest.raises(InputError, match="list.txt: unreadable list file: not UTF-8 .*save it as UTF-8"):
        build_index([listing], tmp_path / "cache")


def test_a_list_files_count_is_decimal_digits(tmp_path: Path) -> None:
    """"²" is isdigit, yet no number int() reads: a line ending in it raised a raw ValueError. It is
    part of the path, as any trailing word that is not a count."""
    listing = tmp_path / "list.txt"
    listing.write_text("clips/a b.mp4 \u00b2\nclips/c.mp4 12\n", encoding="utf-8")
    assert list_file(listing) == [(tmp_path / "clips" / "a b.mp4 \u00b2", None), (tmp_path / "clips" / "c.mp4", 12)]


def test_cache_is_reused_and_revalidated(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir.joinpath(*DAVIS_TRAIN)
    first = build_index([source], tmp_path)
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    assert len(cache["videos"]) == 30
    # A forged cache entry with a matching stamp is trusted (no probing) ...
    key = first.videos[0].path
    cache["videos"][key]["num_frames"] = 12345
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    assert build_index([source], tmp_path).videos[0].num_frames == 12345
    # ... and a stale stamp (file changed) is probed again.
    cache["videos"][key]["stamp"][0] -= 1
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    assert build_index([source], tmp_path).videos[0].num_frames == first.videos[0].num_frames


def test_corrupt_video_is_skipped_and_counted(data_dir: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    good = sorted(data_dir.joinpath(*DAVIS_TRAIN).glob("*.mp4"))[0]
    os.symlink(good, tree / good.name)
    (tree / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    index = build_index([tree], tmp_path / "cache")
    assert len(index) == 1 and len(index.skipped) == 1
    assert index.skipped[0][0].endswith("broken.mp4")
    assert index.describe()["skipped_at_index"] == 1


def test_a_video_cut_short_is_left_out_at_indexing(data_dir: Path, tmp_path: Path) -> None:
    """Half of an MP4 whose index (moov) comes first, as a copy or download that stopped: its header
    gave all its frames, so it was indexed, then failed at every draw in training ("unreadable
    draws"); its top-level box now runs past the end of the file, which the index sees."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(data_dir.joinpath(*DAVIS_TRAIN, "boat.mp4"))) as reader, \
            av.open(str(whole), "w", options={"movflags": "faststart"}) as writer:
        stream = writer.add_stream_from_template(reader.streams.video[0])
        for packet in reader.demux(reader.streams.video[0]):
            if packet.size:
                packet.stream = stream
                writer.mux(packet)
    (tmp_path / "tree").mkdir()
    cut = tmp_path / "tree" / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    os.symlink(whole, tmp_path / "tree" / "whole.mp4")
    index = build_index([tmp_path / "tree"], tmp_path / "cache")
    assert [Path(v.path).name for v in index.videos] == ["whole.mp4"]
    assert index.skipped == [(str(cut), "is cut short: its MP4 boxes run past the end of the file (a copy "
                                         "or download that did not finish?)")]


def test_a_cache_that_cannot_be_written_is_warned_about_not_fatal(data_dir: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The default cache, ~/.cache/vidcorr, in a read-only home (a container, a shared account) ended
    the index, after every video was probed, in a NotADirectoryError or PermissionError traceback:
    the cache only spares probing again."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    video = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    with caplog.at_level(logging.WARNING):
        index = build_index([video], blocker / "vidcorr")
    assert len(index) == 1 and index.videos[0].num_frames == count_frames(video)
    assert any(f"cannot write the video metadata cache {blocker / 'vidcorr' / CACHE_NAME}" in r.getMessage()
               and "probed again next time" in r.getMessage() for r in caplog.records), caplog.text
    assert len(caplog.records) == 1, caplog.text  # not also "ignoring unreadable video metadata cache"


def test_missing_empty_and_unusable_sources_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such data folder"):
        build_index([tmp_path / "nowhere"], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos found") as error:
        build_index([tmp_path / "empty"], tmp_path)
    assert error.value.path == tmp_path / "empty"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="none of its 1 video"):
        build_index([tmp_path / "bad"], tmp_path)


def test_a_single_video_file_is_a_source(data_dir: Path, tmp_path: Path) -> None:
    """``--data my_video.mp4`` trains on that video (it was read as a list file and failed with a
    UTF-8 decoding error)."""
    video = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    index = build_index([video], tmp_path)
    assert [v.path for v in index.videos] == [str(video)] and index.videos[0].num_frames == count_frames(video)


def test_a_single_file_that_is_not_text_is_a_video_whatever_its_suffix(data_dir: Path, tmp_path: Path) -> None:
    """``--data clip.mpg`` (or .ts, .3gp: suffixes folders are not searched for) was read as a list
    file: "unreadable list file ('utf-8' codec can't decode ...)". Decoding goes by content, as a list
    file naming it shows; a file that is neither text nor a video is named as no usable video."""
    mp4 = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    clip = tmp_path / "clip.mpg"
    clip.write_bytes(mp4.read_bytes())
    [info] = build_index([clip], tmp_path / "cache").videos
    assert info.path == str(clip) and info.num_frames == count_frames(mp4)
    archive = tmp_path / "videos.zip"
    archive.write_bytes(b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256)))
    with pytest.raises(InputError, match=r"videos.zip: none of its 1 video\(s\) is usable \(videos.zip: cannot be "):
        build_index([archive], tmp_path / "cache")



@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be",
                                      "utf-8-sig"])
def test_a_list_file_in_utf16_is_read_by_its_byte_order_mark(data_dir: Path, tmp_path: Path, encoding: str) -> None:
    """A list file from Windows PowerShell 5's `dir -Name > list.txt` is UTF-16 with a byte-order
    mark: recognised as a list file, it was then "unreadable list file ('utf-8' codec can't ...)"."""
    listing = tmp_path / "list.txt"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-32-le": b"\xff\xfe\0\0",
           "utf-32-be": b"\0\0\xfe\xff"}.get(encoding, b"")
    listing.write_bytes(bom + "bear.mp4 82\r\n# comment\nboat.mp4\n".encode(encoding))
    for name in ("bear.mp4", "boat.mp4"):
        (tmp_path / name).symlink_to(data_dir.joinpath(*DAVIS_TRAIN, name))
    assert list_file(listing) == [(tmp_path / "bear.mp4", 82), (tmp_path / "boat.mp4", None)]
    index = build_index([listing], tmp_path / "cache")
    assert [Path(v.path).name for v in index.videos] == ["bear.mp4", "boat.mp4"]


def test_mixed_tree_lists_videos_and_frame_folders(data_dir: Path, tmp_path: Path) -> None:
    video = sorted(data_dir.joinpath(*DAVIS_TRAIN).glob("*.mp4"))[0]
    frames = sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:12]
    (tmp_path / "a" / "seq").mkdir(parents=True)
    for frame in frames:
        os.symlink(frame, tmp_path / "a" / "seq" / frame.name)
    os.symlink(video, tmp_path / "a" / "clip.MP4")  # suffixes are case-insensitive
    (tmp_path / "a" / "notes.txt").write_text("not a video")
    assert list_folder(tmp_path / "a") == [(tmp_path / "a" / "clip.MP4", None), (tmp_path / "a" / "seq", None)]
    index = build_index([tmp_path / "a"], tmp_path / "cache")
    assert sorted(v.num_frames for v in index.videos) == sorted([12, count_frames(video)])


def test_a_frame_folders_count_is_its_listing_not_the_list_files(data_dir: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A list's ``blackswan 99`` for a 50-frame folder indexed 99 frames, and training then dropped
    the folder at its first draw past frame 49. The listing wins, with one warning per indexing."""
    frames = data_dir / "davis2016" / "JPEGImages" / "480p"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{frames / 'blackswan'} 99\n{frames / 'cows'} 104\n")
    for _ in range(2):  # probed, then from the cache: the warning comes each time
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vidcorr.data.videos"):
            index = build_index([listing], tmp_path / "cache")
        assert [v.num_frames for v in index.videos] == [50, 104]
        assert not any(v.frames_from_list for v in index.videos)
        [warning] = [r.getMessage() for r in caplog.records]
        assert str(listing) in warning and f"{frames / 'blackswan'} lists 99, has 50" in warning
        assert "cows" not in warning


def test_a_cache_of_the_format_that_trusted_folder_counts_is_not_used(data_dir: Path, tmp_path: Path) -> None:
    """Format /3 stored the list's count for a frame folder; such an entry is probed again."""
    folder = data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder} 99\n")
    build_index([listing], tmp_path)
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    cache["format"] = "vidcorr-video-metadata/3"
    cache["videos"][str(folder)]["num_frames"] = 99  # what /3 wrote, stamp and hint matching
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    assert build_index([listing], tmp_path).videos[0].num_frames == 50


def test_a_video_files_listed_count_is_trusted_and_marked(data_dir: Path, tmp_path: Path) -> None:
    """The count spares counting a video's frames (huge lists), so it is taken as given."""
    video = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{video} 999\n")
    [info] = build_index([listing], tmp_path).videos
    assert info.num_frames == 999 and info.frames_from_list
    [info] = build_index([video], tmp_path).videos
    assert info.num_frames == count_frames(video) and not info.frames_from_list


def test_a_mixed_size_frame_folder_is_skipped_naming_the_odd_frame(data_dir: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    frames = sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:3]
    for frame in frames:
        (tmp_path / "tree" / "seq").mkdir(parents=True, exist_ok=True)
        os.symlink(frame, tmp_path / "tree" / "seq" / frame.name)
    Image.new("RGB", (320, 240)).save(tmp_path / "tree" / "seq" / "00003.png")
    os.symlink(data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4"), tmp_path / "tree" / "bear.mp4")
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.videos"):
        index = build_index([tmp_path / "tree"], tmp_path / "cache")
    assert [Path(v.path).name for v in index.videos] == ["bear.mp4"]
    [(path, problem)] = index.skipped
    assert path == str(tmp_path / "tree" / "seq")
    assert problem == "00003.png: frame is 320x240 but 00000.jpg is 854x480; all frames must share one size"
    assert f"skipping {path}: {problem}" in [r.getMessage() for r in caplog.records]


def test_a_frame_folders_cached_failure_is_probed_again(data_dir: Path, tmp_path: Path) -> None:
    """An odd-sized frame overwritten in place with a good one leaves the folder's mtime as it was;
    the cached failure was trusted and the fixed folder stayed "none of its 1 video(s) is usable"."""
    frames = sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:5]
    seq = tmp_path / "tree" / "seq"
    seq.mkdir(parents=True)
    for frame in frames[:4]:
        os.symlink(frame, seq / frame.name)
    Image.new("RGB", (300, 200)).save(seq / frames[4].name)
    with pytest.raises(InputError, match="frame is 300x200"):
        build_index([tmp_path / "tree"], tmp_path / "cache")
    folder_stamp = os.stat(seq)
    Image.open(frames[4]).save(seq / frames[4].name)  # in place: the folder's listing is unchanged
    os.utime(seq, ns=(folder_stamp.st_atime_ns, folder_stamp.st_mtime_ns))  # whatever the filesystem does
    index = build_index([tmp_path / "tree"], tmp_path / "cache")
    assert [(v.path, v.num_frames) for v in index.videos] == [(str(seq), 5)] and not index.skipped


def test_a_cached_success_is_not_probed_again(data_dir: Path, tmp_path: Path) -> None:
    """Only failures are re-checked: a usable frame folder costs one ``stat`` per indexing."""
    folder = data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan"
    build_index([folder], tmp_path)
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    cache["videos"][str(folder)]["num_frames"] = 77  # forged, stamp matching: trusted
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    assert build_index([folder], tmp_path).videos[0].num_frames == 77


def test_a_cached_index_stats_each_entry_once(data_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-indexing is a ``stat`` an entry: checking whether an entry was a folder took two more."""
    tree = tmp_path / "tree"
    (tree / "seq").mkdir(parents=True)
    for frame in sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:3]:
        os.symlink(frame, tree / "seq" / frame.name)
    for name in ("bear.mp4", "boat.mp4"):
        os.symlink(data_dir.joinpath(*DAVIS_TRAIN, name), tree / name)
    build_index([tree], tmp_path / "cache")
    stats: list[str] = []
    real_stat = os.stat

    def counted_stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        stats.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted_stat)
    assert len(build_index([tree], tmp_path / "cache")) == 3
    entries = [str(tree / name) for name in ("bear.mp4", "boat.mp4", "seq")]
    assert [stats.count(entry) for entry in entries] == [1, 1, 1]


@pytest.mark.parametrize("listed_by", [None, FRAME_LISTING_VERSION - 1])
def test_a_frame_folder_cached_under_older_listing_rules_is_listed_again(data_dir: Path, tmp_path: Path,
                                                                        listed_by: int | None) -> None:
    """A folder with cover.jpg beside its frames, cached before such a stray was refused (no
    ``listing`` recorded) or under an older rule, kept its count (cover included) until its mtime
    changed; it is listed again, refused, and the record is trusted once it holds today's rules."""
    frames = sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:4]
    seq = tmp_path / "tree" / "seq"
    seq.mkdir(parents=True)
    for frame in frames:
        os.symlink(frame, seq / frame.name)
    os.symlink(frames[0], seq / "cover.jpg")
    os.symlink(data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4"), tmp_path / "tree" / "bear.mp4")
    build_index([tmp_path / "tree"], tmp_path / "cache")
    cache_path = tmp_path / "cache" / CACHE_NAME

    def cached_count(count: int, listing: int | None) -> None:  # what an index under those rules wrote
        cache = json.loads(cache_path.read_text())
        record = cache["videos"][str(seq)]
        record.pop("error", None)
        record.update(path=str(seq), num_frames=count, fps=None, height=480, width=854, frames_from_list=False)
        if listing is None:
            record.pop("listing", None)
        else:
            record["listing"] = listing
        cache_path.write_text(json.dumps(cache))

    cached_count(5, listed_by)
    index = build_index([tmp_path / "tree"], tmp_path / "cache")
    assert [Path(v.path).name for v in index.videos] == ["bear.mp4"]
    [(path, problem)] = index.skipped
    assert path == str(seq) and "cover.jpg" in problem and "not named like its 4 frames" in problem
    assert json.loads(cache_path.read_text())["videos"][str(seq)]["listing"] == FRAME_LISTING_VERSION
    cached_count(5, FRAME_LISTING_VERSION)  # forged under today's rules: trusted, as any cached success
    index = build_index([tmp_path / "tree"], tmp_path / "cache")
    assert [(Path(v.path).name, v.num_frames) for v in index.videos][1] == ("seq", 5) and not index.skipped


def _remuxed(video: Path, target: Path) -> Path:
    """``video``'s packets in the container ``target``'s suffix names (``ffmpeg -i video -c copy target``)."""
    with av.open(str(video)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream_from_template(stream)
        for packet in reader.demux(stream):
            if packet.size:
                packet.stream = out
                writer.mux(packet)
    return target


def test_phone_videos_in_quicktime_containers_are_training_videos(data_dir: Path, tmp_path: Path) -> None:
    """.mov (what an iPhone records) and .m4v: `propagate` read them, but a folder of them had "no
    videos found" and `--data clip.mov` failed as an unreadable list file ('utf-8' codec ...)."""
    mp4 = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    (tmp_path / "phone").mkdir()
    videos = [_remuxed(mp4, tmp_path / "phone" / name) for name in ("IMG_0001.MOV", "clip.m4v")]
    assert sorted(list_folder(tmp_path / "phone")) == sorted((video, None) for video in videos)
    expected = build_index([mp4], tmp_path / "cache").videos[0]
    for source in (tmp_path / "phone", videos[0]):
        index = build_index([source], tmp_path / "cache")
        assert [(v.num_frames, v.fps) for v in index.videos] == [(expected.num_frames, expected.fps)] * len(index)
        assert len(index) == (2 if source.is_dir() else 1) and not index.skipped
    pairs = build_dataset("crop_pair", index, crop=32, frame=64, gap=GapRange(0.04, 0.5, unit="seconds"))
    sample = pairs[(0, 0)]  # decoded: two frames of the .mov
    assert sample["skipped"] == 0 and sample["ref"].shape == sample["target"].shape == (3, 32, 32)


@pytest.mark.parametrize("clip", [(*DAVIS_TRAIN, "bear.mp4"), (*CLIPS, "imageio-binaries", "realshort.mp4")])
def test_a_constant_rate_matroska_file_keeps_its_rate(data_dir: Path, tmp_path: Path, clip: tuple[str, ...]) -> None:
    """A real clip in Matroska (no frame count in its header: its packets are read to count them) is
    indexed at its header's rate, exactly: its timestamps, whole milliseconds, follow that rate."""
    mp4 = data_dir.joinpath(*clip)
    mkv = _remuxed(mp4, tmp_path / "clip.mkv")
    [info] = build_index([mkv], tmp_path / "cache").videos
    assert info.num_frames == count_frames(mp4) and info.fps == open_frames(mkv).fps
    assert info.fps == pytest.approx(build_index([mp4], tmp_path / "cache").videos[0].fps, rel=1e-6)


@pytest.mark.parametrize("suffix, codec", [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_a_variable_rate_matroska_files_rate_is_its_frames_mean(data_dir: Path, tmp_path: Path, suffix: str,
                                                                codec: str) -> None:
    """Real frames shown at 10, 40, 5 and 20 fps in a Matroska / WebM file, whose header says 30 fps:
    a gap in seconds was converted with that 30 (0.1-0.2 s as 3-6 frames, where the frames run at
    13.8 fps on average); the index takes the mean rate of the packets it reads to count the frames,
    and a cached record that holds the header's rate (no ``rate`` version) is probed again."""
    frames = open_frames(data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")).read_at(range(len(VFR_TIMES)))
    video = tmp_path / f"vfr{suffix}"
    write_vfr_video(video, np.stack(frames)[:, :64, :96], codec=codec, nominal_fps=30)
    assert open_frames(video).fps == 30  # the header's nominal rate
    mean = (len(VFR_TIMES) - 1) / (VFR_TIMES[-1] - VFR_TIMES[0])
    [info] = build_index([video], tmp_path).videos
    assert info.num_frames == len(VFR_TIMES) and info.fps == pytest.approx(mean, rel=1e-3)
    assert GapRange(0.1, 0.2, "seconds").in_frames(info.fps) == (1, 3)
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    assert cache["videos"][str(video)].pop("rate") == FILE_RATE_VERSION
    cache["videos"][str(video)]["fps"] = 30.0  # what was written before the mean rate, stamp matching
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    assert build_index([video], tmp_path).videos[0].fps == pytest.approx(mean, rel=1e-3)


def test_only_records_whose_rate_changed_are_probed_again(data_dir: Path, tmp_path: Path) -> None:
    """The mean rate of Matroska / WebM files was brought in with a new cache format, and every
    record (MP4s, AVIs, frame folders) was probed again, a full re-probe of a 10^5-video index on
    ``--resume``. Records of the earlier format without a ``rate`` version are trusted (forged
    counts kept), but for a Matroska / WebM file's counted one; a record with today's is trusted."""
    tree = tmp_path / "tree"
    (tree / "seq").mkdir(parents=True)
    for frame in sorted((data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:3]:
        os.symlink(frame, tree / "seq" / frame.name)
    mp4 = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    os.symlink(mp4, tree / "bear.mp4")
    frames = np.stack(open_frames(mp4).read_at(range(len(VFR_TIMES))))[:, :64, :96]
    clips = [tree / "vfr.mkv", tree / "vfr.webm"]
    for clip, codec in zip(clips, ("libx264", "libvpx-vp9")):
        write_vfr_video(clip, frames, codec=codec)
    cache_path = tmp_path / "cache" / CACHE_NAME

    def forged(counts: dict[Path, int], drop_rate: bool) -> dict[str, int]:  # as cached -> as indexed
        cache = json.loads(cache_path.read_text())
        assert cache["format"] == "vidcorr-video-metadata/4"
        for path, count in counts.items():
            cache["videos"][str(path)]["num_frames"] = count
            if drop_rate:
                cache["videos"][str(path)].pop("rate", None)
        cache_path.write_text(json.dumps(cache))
        return {Path(v.path).name: v.num_frames for v in build_index([tree], tmp_path / "cache").videos}

    real = {Path(v.path).name: v.num_frames for v in build_index([tree], tmp_path / "cache").videos}
    assert real == {"bear.mp4": 82, "vfr.mkv": 10, "vfr.webm": 10, "seq": 3}
    counts = forged({tree / "bear.mp4": 70, tree / "seq": 2, **{clip: 9 for clip in clips}}, drop_rate=True)
    assert counts == {"bear.mp4": 70, "vfr.mkv": 10, "vfr.webm": 10, "seq": 2}
    assert all(json.loads(cache_path.read_text())["videos"][str(c)]["rate"] == FILE_RATE_VERSION for c in clips)
    counts = forged({clip: 9 for clip in clips}, drop_rate=False)
    assert counts == {"bear.mp4": 70, "vfr.mkv": 9, "vfr.webm": 9, "seq": 2}


def test_overlapping_sources_index_each_video_once(data_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--data vids --data vids/bear.mp4 --data ./vids`` gave 3 copies of each video (bear three):
    one warning names the repeats, and each video is indexed once under its first path."""
    vids = tmp_path / "vids"
    vids.mkdir()
    for name in ("bear.mp4", "boat.mp4"):
        os.symlink(data_dir.joinpath(*DAVIS_TRAIN, name), vids / name)
    os.symlink(vids, tmp_path / "same")  # another name for the folder: the same resolved paths
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.videos"):
        index = build_index(["vids", "vids/bear.mp4", "./vids"], tmp_path / "cache")
    assert [v.path for v in index.videos] == [str(vids / "bear.mp4"), str(vids / "boat.mp4")]
    assert index.sources == ["vids", "vids/bear.mp4", "./vids"]
    [warning] = [r.getMessage() for r in caplog.records]
    bear, boat = vids / "bear.mp4", vids / "boat.mp4"
    assert warning == ("the data sources overlap; each video is indexed once: source 2 (vids/bear.mp4) repeats 1 "
                       f"video(s) of source 1 (vids): {bear}; source 3 (./vids) repeats 2 video(s) of source 1 "
                       f"(vids): {bear}, {boat}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.videos"):
        index = build_index([bear, tmp_path / "same"], tmp_path / "cache")
    assert [v.path for v in index.videos] == [str(bear), str(tmp_path / "same" / "boat.mp4")]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.endswith(f"source 2 ({tmp_path / 'same'}) repeats 1 video(s) of source 1 ({bear}): "
                            f"{tmp_path / 'same' / 'bear.mp4'} (= {bear})")


def test_a_video_of_one_frame_is_data_for_methods_of_one_frame_a_sample(data_dir: Path, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """`train moco` and `train autoencoder` take one frame a sample: a video of one frame (or a still
    image given as one) was skipped with "a pair needs 2". The need follows the method's batch kinds
    at every stage of the recipe, and the skip names the sample that needs more."""
    still = tmp_path / "tree" / "still"
    still.mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 30)).save(still / "00000.jpg")
    video = data_dir.joinpath(*DAVIS_TRAIN, "bear.mp4")
    (tmp_path / "tree" / "bear.mp4").symlink_to(video)
    one_frame = [frames_needed(["image"]), frames_needed(["two_views"])]
    for need in one_frame:
        index = build_index([tmp_path / "tree"], tmp_path / "cache", need=need)
        assert sorted(Path(v.path).name for v in index.videos) == ["bear.mp4", "still"] and not index.skipped
    for kinds, sample in ((["crop_pair", "patch_frame"], "a pair"), (["cycle_clip"], "a clip"),
                          (["two_views", "resized_crop_pair"], "a pair")):
        with caplog.at_level(logging.WARNING):
            index = build_index([tmp_path / "tree"], tmp_path / "cache", need=frames_needed(kinds))
        assert [Path(v.path).name for v in index.videos] == ["bear.mp4"]
        assert index.skipped == [(str(still), f"has 1 frame(s); {sample} needs 2")]
    assert build_index([tmp_path / "tree"], tmp_path / "cache").skipped[0][1].endswith("a pair needs 2")
    # a source none of whose videos is usable names its own videos' problems, not the first of any source
    lone = tmp_path / "lone"
    lone.mkdir()
    Image.new("RGB", (64, 48), (30, 60, 90)).save(lone / "00000.jpg")
    with pytest.raises(InputError, match=r"lone: none of its 1 video\(s\) is usable \(lone: has 1 frame\(s\); "
                                         r"a pair needs 2\)$"):
        build_index([tmp_path / "tree", lone], tmp_path / "cache")

    class OneFrame(torch.nn.Module):  # the trainer asks the method what each stage samples
        def batch_kind(self, stage: str) -> str:
            return "two_views"

    recipe = recipe_from_dict({"method": "moco", "stages": {"contrast": {"steps": 1}}}, "moco-tiny")
    job = TrainJob(recipe, OneFrame, [tmp_path / "tree"], tmp_path / "run", cache_dir=tmp_path / "cache")
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    assert len(feed.index(job, ctx, OneFrame())) == 2
