"""Video decoding and probing rules checked by hand-made inputs: display times from fake packets,
timestamp ticks, frame ends, container sniffing, cuts near the end, AVI chunk counting, the training
index's listing and cache. Expected values are worked out by hand from the docstrings' rules."""

from __future__ import annotations

import itertools
import logging
import wave
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from vidcorr.data.video_probe import FILE_RATE_VERSION, _stamp, mean_rate, probe, probe_entry, problem_with
from vidcorr.data.videos import build_index, default_cache_dir, list_file, list_folder
from vidcorr.errors import InputError
from vidcorr.io.container_size import container_cut_short, container_format, frame_end, mp4_video_seconds
from vidcorr.io.frame_times import display_times, frame_ticks, shown_times
from vidcorr.io.frames import as_rgb_frame
from vidcorr.io.images import EXIF_ORIENTATION, image_size, read_image, sixteen_to_eight_bits
from vidcorr.io.video import count_frames, open_frames

from video_helpers import write_test_video

s = Fraction


# ---------------------------------------------------------------------------------------------
# vidcorr.io.frame_times


def test_a_packet_without_dts_stays_in_the_part_it_follows():
    # (pts, dts) in file order; the third packet has no dts (Matroska's first few): it joins the part
    # before, which sorts as one: 0 1 2 3
    assert display_times([(s(0), s(0)), (s(2), s(1)), (s(1), None), (s(3), s(3))]) == [0, 1, 2, 3]
    # a restart (dts 0 after 1) right after a packet without dts is still a restart: the packet without
    # dts does not forget the dts before it. Part 1 [0 1 2], part 2 [0 1] one step (1) later: 3 4
    stamps = [(s(0), s(0)), (s(1), s(1)), (s(2), None), (s(0), s(0)), (s(1), s(1))]
    assert display_times(stamps) == [0, 1, 2, 3, 4]


def test_an_equal_dts_does_not_start_a_new_part():
    # only a dts *below* the one before starts the timestamps again; two B-frames of one dts sort as one part
    assert display_times([(s(0), s(0)), (s(2), s(1)), (s(1), s(1)), (s(3), s(2))]) == [0, 1, 2, 3]


def test_a_later_part_follows_at_the_median_step_not_the_smallest():
    # part 1 pts 0 2 4 5 (steps 2 2 1), part 2 pts 0 2 (step 2): steps 2 2 1 2, median 2, so part 2
    # starts at 5 + 2 = 7
    stamps = [(s(0), s(0)), (s(2), s(1)), (s(4), s(2)), (s(5), s(3)), (s(0), s(0)), (s(2), s(1))]
    assert display_times(stamps) == [0, 2, 4, 5, 7, 9]


class _Container:
    """A demuxer over hand-made packets ((pts, dts, size, discard), ticks of 1/10 s); counts the packets read."""

    def __init__(self, packets: list[tuple[int | None, int | None, int, bool]]):
        self.stream = object()
        self.streams = SimpleNamespace(video=[self.stream])
        self.packets, self.read = packets, 0

    def demux(self, stream):
        assert stream is self.stream
        for pts, dts, size, discard in self.packets:
            self.read += 1
            yield SimpleNamespace(pts=pts, dts=dts, size=size, is_discard=discard, time_base=s(1, 10))


def test_shown_times_skip_hidden_and_empty_packets_and_give_up_without_pts():
    packets = [(0, 0, 9, True), (1, 1, 9, False), (2, 2, 0, False), (3, 3, 9, False), (5, 4, 9, False)]
    # the discarded (edit list) and the empty (held frame) packet show nothing: frames at 0.1 0.3 0.5 s
    assert shown_times(_Container(packets)) == pytest.approx([0.0, 0.2, 0.4])
    # a shown packet without pts: no timing at all, not the others' times
    assert shown_times(_Container(packets + [(None, 5, 9, False), (7, 6, 9, False)])) is None


def test_the_first_frames_times_read_only_the_packets_they_need():
    ten = [(t, t, 9, False) for t in range(10)]
    container = _Container(ten)
    # one frame: its time, 0, read as soon as a second time differs (two packets), not None
    assert shown_times(container, first=1) == [0.0] and container.read == 2
    # a B-frame pair of one dts (pts 2 then 1, dts 1 1): the first two frames (pts 0 and 1) are fixed
    # once the third packet's dts (1) reaches the 2nd smallest pts (1); not a restart, so no full read
    b_frames = [(0, 0, 9, False), (2, 1, 9, False), (1, 1, 9, False)] + [(t, t - 1, 9, False) for t in range(3, 10)]
    container = _Container(b_frames)
    assert shown_times(container, first=2) == pytest.approx([0.0, 0.1]) and container.read == 3


def test_frame_ticks_round_to_the_nearest_tick_and_start_at_zero():
    # TIME_BASE is 1/60000 s: 0.009 s is 540 ticks (0.009 * 60000 = 539.99999... in floats), 0.011 s 660;
    # then on at 30 fps (2000 ticks)
    assert list(itertools.islice(frame_ticks([0.0, 0.009, 0.011], 30), 5)) == [0, 540, 660, 2660, 4660]
    # no times: every frame 1 / fps apart from 0
    assert list(itertools.islice(frame_ticks(None, 25), 3)) == [0, 2400, 4800]


# ---------------------------------------------------------------------------------------------
# vidcorr.io.container_size


def test_a_frame_without_duration_ends_one_mean_frame_later():
    stream = SimpleNamespace(average_rate=s(25))
    frame = SimpleNamespace(time=2.0, duration=None, time_base=s(1, 1000))
    assert frame_end(frame, stream) == pytest.approx(2.04)
    held = SimpleNamespace(time=2.0, duration=3000, time_base=s(1, 1000))  # shown 3 s
    assert frame_end(held, stream) == pytest.approx(5.0)
    assert frame_end(SimpleNamespace(time=None, duration=None, time_base=None), stream) is None


def test_a_wav_file_is_riff_but_not_avi(tmp_path: Path):
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1), sound.setsampwidth(2), sound.setframerate(8000)
        sound.writeframes(bytes(16000))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:5000])  # its RIFF size runs past the end
    assert container_format(path) is None and container_cut_short(cut) is None


def _cut_after_packets(whole: Path, keep: int, out: Path) -> Path:
    """A copy of a fast-start (index first) MP4 or of a Matroska file cut where packet ``keep`` starts."""
    with av.open(str(whole)) as container:
        offsets = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
    out.write_bytes(whole.read_bytes()[: offsets[keep]])
    return out


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_file_cut_less_than_a_second_short_is_decoded_not_refused(tmp_path: Path, backend: str):
    """The slack is max(1 s, 5 % of the duration): a 4 s MP4 starting at 5 s (header end 9 s) that
    lost its last 12 frames (0.5 s) decodes what is left; OpenCV measures from the stream's start."""
    whole = tmp_path / "late.mp4"
    write_test_video(whole, 96, first_pts=120, options={"movflags": "faststart"})
    cut = _cut_after_packets(whole, 84, tmp_path / "cut.mp4")
    assert container_cut_short(cut) == "mp4"
    assert 80 <= sum(1 for _ in open_frames(cut, backend=backend)) <= 84


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_an_audio_track_outlasting_the_picture_is_no_cut(tmp_path: Path, backend: str):
    # 48 frames (2 s) with 5 s of audio: the container's duration is the audio's, not the picture's
    path = tmp_path / "long-audio.mkv"
    write_test_video(path, 48, audio_seconds=5.0)
    assert sum(1 for _ in open_frames(path, backend=backend)) == 48
    assert count_frames(path, backend=backend) == 48


def test_the_cut_message_names_the_file(tmp_path: Path):
    whole = tmp_path / "a.mkv"
    write_test_video(whole, 48)
    cut = _cut_after_packets(whole, 10, tmp_path / "cut.mkv")
    with pytest.raises(InputError, match="the file is truncated") as info:
        list(open_frames(cut, backend="pyav"))
    assert info.value.path == cut


def _top_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, size) of each top-level MP4 box, read by hand (32-bit sizes only)."""
    boxes, position = [], 0
    while position < len(data):
        size = int.from_bytes(data[position:position + 4], "big")
        boxes.append((data[position + 4:position + 8], position, size))
        position += size
    return boxes


@pytest.mark.parametrize("name, codec", [("a.mkv", "libx264"), ("a.mp4", "libx264"), ("a.avi", "mpeg4")])
def test_a_file_one_byte_short_is_cut(tmp_path: Path, name: str, codec: str):
    # the container's top-level sizes count every byte, so losing the last one shows
    path = tmp_path / name
    write_test_video(path, 24, codec=codec)
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(path.read_bytes()[:-1])
    assert container_cut_short(path) is None
    assert container_cut_short(cut) == container_format(path) == {".mkv": "matroska"}.get(path.suffix, path.suffix[1:])


def test_an_mp4_box_of_size_zero_runs_to_the_end_of_the_file(tmp_path: Path):
    path = tmp_path / "a.mp4"
    write_test_video(path, 24, options={"movflags": "faststart"})  # ftyp, moov, ..., mdat last
    data = bytearray(path.read_bytes())
    kind, start, _ = _top_boxes(bytes(data))[-1]
    assert kind == b"mdat"
    data[start:start + 4] = bytes(4)  # size 0: "to the end of the file", as a recorder may leave it
    open_ended = tmp_path / "open.mp4"
    open_ended.write_bytes(bytes(data))
    assert container_cut_short(open_ended) is None


def test_a_quicktime_file_without_ftyp_is_an_mp4(tmp_path: Path):
    # QuickTime files may start with free / wide / mdat / moov: a file without its ftyp box is still
    # sniffed as an MP4, and a cut one is still told from a whole one
    path = tmp_path / "a.mp4"
    write_test_video(path, 24)  # ftyp, free, mdat, moov
    data = path.read_bytes()
    kind, start, size = _top_boxes(data)[0]
    assert kind == b"ftyp" and _top_boxes(data)[1][0] == b"free"
    old = tmp_path / "old.mov"
    old.write_bytes(data[start + size:])
    cut = tmp_path / "cut.mov"
    cut.write_bytes(old.read_bytes()[:-100])
    assert container_format(old) == "mp4" and container_cut_short(old) is None and container_cut_short(cut) == "mp4"


def test_a_fragmented_mp4_says_no_track_duration(tmp_path: Path):
    path = tmp_path / "frag.mp4"  # as a live recorder writes it: the moov holds no samples, duration 0
    write_test_video(path, 24, options={"movflags": "frag_keyframe+empty_moov"})
    assert mp4_video_seconds(path) is None
    whole = tmp_path / "whole.mp4"
    write_test_video(whole, 24)
    assert mp4_video_seconds(whole) == pytest.approx(1.0, abs=0.05)  # 24 frames at 24 fps


# ---------------------------------------------------------------------------------------------
# vidcorr.data.videos, vidcorr.data.video_probe


def test_listing_a_tree_orders_naturally_and_leaves_hidden_files_out(tmp_path: Path):
    for name in ("10/b.mp4", "10/a10.mp4", "10/a2.mp4", "2/x.MP4", "2/._x.mp4", "hidden/.cover.jpg",
                 "frames/00000.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\0")
    found = [(str(path.relative_to(tmp_path)), hint) for path, hint in list_folder(tmp_path)]
    # folders and files in natural order (2 before 10, a2 before a10); ._x.mp4 (a macOS resource fork)
    # is no video, and a folder whose only image is hidden is no frame folder
    assert found == [("2/x.MP4", None), ("10/a2.mp4", None), ("10/a10.mp4", None), ("10/b.mp4", None),
                     ("frames", None)]


def test_a_list_files_paths_may_hold_spaces(tmp_path: Path):
    listing = tmp_path / "list.txt"
    listing.write_text("my clip.mp4 40\nother clip.mp4\n")
    assert list_file(listing) == [(tmp_path / "my clip.mp4", 40), (tmp_path / "other clip.mp4", None)]


def test_the_default_cache_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "vidcorr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vidcorr"


def test_a_source_of_repeats_only_still_counts_and_three_repeats_are_all_named(
        data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    vids = tmp_path / "vids"
    vids.mkdir()
    names = ("bear.mp4", "boat.mp4", "bus.mp4")
    for name in names:
        (vids / name).symlink_to(data_dir / "videos" / "davis2016-train" / name)
    link = tmp_path / "my-bear.mp4"  # another name for vids/bear.mp4: a repeat, and its source's only video
    link.symlink_to(vids / "bear.mp4")
    with caplog.at_level(logging.WARNING, logger="vidcorr.data.videos"):
        index = build_index([vids, link, vids], tmp_path / "cache")
    assert [Path(v.path).name for v in index.videos] == list(names)
    [warning] = [r.getMessage() for r in caplog.records]
    paths = ", ".join(str(vids / name) for name in names)
    assert warning.endswith(f"source 3 ({vids}) repeats 3 video(s) of source 1 ({vids}): {paths}")


def test_a_listed_count_for_an_unreadable_video_skips_it(data_dir: Path, tmp_path: Path):
    (tmp_path / "broken.mp4").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "bear.mp4").symlink_to(data_dir / "videos" / "davis2016-train" / "bear.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text("broken.mp4 10\nbear.mp4 50\n")
    index = build_index([listing], tmp_path / "cache")
    assert [(Path(v.path).name, v.num_frames) for v in index.videos] == [("bear.mp4", 50)]
    assert [Path(path).name for path, _ in index.skipped] == ["broken.mp4"]


def test_a_listed_count_of_zero_is_no_count(data_dir: Path):
    bear = data_dir / "videos" / "davis2016-train" / "bear.mp4"
    info = probe(bear, 0)
    assert info.num_frames == count_frames(bear) and not info.frames_from_list


def test_the_mean_rate_keeps_the_nominal_one_only_within_timestamp_rounding():
    # 2 steps at 30 fps span 0.0667 s: 0.067 is within the 1 ms rounding, 0.072 is not (2 / 0.072 fps)
    assert mean_rate([0.0, 0.033, 0.067], 30.0) == 30.0
    assert mean_rate([0.0, 0.034, 0.072], 30.0) == pytest.approx(2 / 0.072)
    assert mean_rate([0.0, 0.5, 1.0, 1.5], None) == pytest.approx(2.0)


def _stamped(video: Path, hint: int | None, **record) -> dict:
    """A cache record for ``video`` as it is now (its stamp), holding ``record``."""
    return {**record, "stamp": _stamp(video)[0], "hint": hint}


def test_which_cached_file_records_are_probed_again(tmp_path: Path):
    mkv = tmp_path / "a.mkv"
    write_test_video(mkv, 12, fps=24)
    fields = dict(path=str(mkv), num_frames=5, fps=7.0, height=32, width=32)  # wrong on purpose: a re-probe shows
    # a record of other rate rules than today's is probed again
    again = probe_entry(mkv, None, _stamped(mkv, None, **fields, frames_from_list=False, rate=FILE_RATE_VERSION + 1))
    assert (again["num_frames"], again["fps"], again["rate"]) == (12, 24.0, FILE_RATE_VERSION)
    # a Matroska record from before rates were versioned holds a list's count, not a counted one: kept
    kept = _stamped(mkv, 5, **fields, frames_from_list=True)
    assert probe_entry(mkv, 5, kept) is kept
    # ... while one whose frames were counted (its rate the header's then) is probed again
    assert probe_entry(mkv, None, _stamped(mkv, None, **fields, frames_from_list=False))["fps"] == 24.0


def test_a_failure_that_is_no_input_error_names_its_type(tmp_path: Path):
    assert problem_with(tmp_path / "a.mp4", ValueError("bad data")) == "ValueError: bad data"
    assert problem_with(tmp_path / "a.mp4", InputError(tmp_path / "a.mp4", "is cut short")) == "is cut short"


# ---------------------------------------------------------------------------------------------
# vidcorr.io.images, vidcorr.io.frames


def test_sixteen_bit_values_round_to_the_nearest_eight_bit_one():
    # v -> round(v * 255 / 65535) = round(v / 257): 128 is 0.498 -> 0, 129 is 0.502 -> 1, 25829 is 100.502 -> 101
    values = np.array([0, 128, 129, 25829, 65535], np.uint16)
    assert sixteen_to_eight_bits(values).tolist() == [0, 0, 1, 101, 255]


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_exif_orientations_that_transpose_swap_height_and_width(tmp_path: Path, orientation: int):
    path = tmp_path / "phone.jpg"  # stored 40 wide, 20 high; orientations 5-8 turn it a quarter
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif)
    assert image_size(path) == (40, 20) == read_image(path).shape[:2]


def test_rgba_frames_drop_alpha_and_negative_integers_are_refused():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255
    assert as_rgb_frame(rgba)[0, 0].tolist() == [10, 20, 30]
    with pytest.raises(InputError, match=r"frame 3 is int16 with values -1\.\.200"):
        as_rgb_frame(np.array([[[-1, 0, 200]]], np.int16), 3)
