"""Corrupt, cut and edited video files: refused naming the file, while whole ones are never taken for cut."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.io.container_size import container_cut_short, mp4_video_seconds
from vidcorr.io.video import count_frames, open_frames, write_video

from video_helpers import write_held_avi, write_test_video


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 40])
def test_corrupt_or_empty_video_names_the_file(tmp_path, backend, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot be opened as a video") as info:
        open_frames(path, backend=backend)
    assert info.value.path == path
    with pytest.raises(InputError):
        count_frames(path, backend=backend)


def _cut(path, fraction: float):
    """A copy of ``path`` cut short after ``fraction`` of its bytes, as ``head -c`` makes."""
    data = path.read_bytes()
    cut = path.with_name(f"cut{round(100 * fraction)}-{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


BACKENDS = ["pyav", "opencv"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_video_is_refused_not_cut_short(tmp_path, backend):
    """A Matroska file cut in half decoded its first frames without any error (FFmpeg only logs
    "File ended prematurely"): a 48-frame video was propagated as a few frames, exit 0. OpenCV
    swallowed the cut the same way, and `count_frames` gave the header's 48."""
    whole = tmp_path / "whole.mkv"
    write_test_video(whole, 48)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 48
    cut = _cut(whole, 0.5)
    source = open_frames(cut, backend=backend)
    with pytest.raises(InputError,
                       match=r"decoding ended at .* of the 2\.00 s its header gives: the file is truncated") as info:
        list(source)
    assert info.value.path == cut
    assert len(source.read_at([0, 1])) == 2  # a reader that stops early is not refused
    if backend == "opencv":  # PyAV's count_frames counts the packets there are
        with pytest.raises(InputError, match="the file is truncated") as info:
            count_frames(cut, backend=backend)
        assert info.value.path == cut


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_mp4_starting_late_is_refused(tmp_path, backend):
    """An MP4 counts its duration from its first timestamp (Matroska from 0): a fast-start MP4 whose
    stream starts at 5 s, cut at a packet boundary, decodes without an error and was passed."""
    whole = tmp_path / "late.mp4"
    write_test_video(whole, 96, first_pts=120, options={"movflags": "faststart"})  # the index up front
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 96
    with av.open(str(whole)) as container:
        offsets = [p.pos for p in container.demux(container.streams.video[0]) if p.pos]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: offsets[int(0.6 * len(offsets))]])
    # OpenCV before 4.11 cannot say where a stream starts (CAP_PROP_PTS): its clock starts at 0 then
    header = "9.00" if backend == "pyav" or hasattr(cv2, "CAP_PROP_PTS") else "4.00"
    with pytest.raises(InputError, match=rf"of the {header} s its header gives: the file is truncated"):
        list(open_frames(cut, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix, codec, options", [(".mkv", "libx264", {}), (".webm", "libvpx-vp9", {}),
                                                    (".mp4", "libx264", {"movflags": "faststart"})],
                         ids=["mkv", "webm", "faststart-mp4"])
def test_videos_cut_anywhere_are_refused(tmp_path, backend, suffix, codec, options):
    """A 10 s video cut (``head -c``) at 30, 50 and 80% of its bytes loses seconds, more than the slack:
    refused naming the file, also by OpenCV's `count_frames`. PyAV reports the MP4's cut as a
    decoding error."""
    whole = tmp_path / f"whole{suffix}"
    write_test_video(whole, 240, codec=codec, options=options)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == count_frames(whole, backend=backend) == 240
    for fraction in (0.3, 0.5, 0.8):
        cut = _cut(whole, fraction)
        with pytest.raises(InputError, match="the file is truncated|video decoding failed") as info:
            list(open_frames(cut, backend=backend))
        assert info.value.path == cut
        if backend == "opencv":
            with pytest.raises(InputError, match="the file is truncated") as info:
                count_frames(cut, backend=backend)
            assert info.value.path == cut


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("audio_seconds", [0.0, 10.0], ids=["video-only", "with-audio"])
def test_cut_avi_is_refused_by_its_stream_header_length(tmp_path, backend, audio_seconds):
    """PyAV measured an AVI against the container's duration, which FFmpeg scales by the share of a
    cut file's bytes left: a 4 s AVI cut at 80% of its bytes was propagated as its first 2.9 s, exit
    0, and one cut at 50% was refused as "0.92 s of the 2.00 s". With an audio stream it was not
    checked at all. The video stream header's length (frames) gives the whole 10 s, audio or not."""
    whole = tmp_path / "whole.avi"
    write_test_video(whole, 240, codec="mpeg4", audio_seconds=audio_seconds)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 240
    with av.open(str(whole)) as container:
        starts = [packet.pos for packet in container.demux(container.streams.video[0]) if packet.size]
    for kept in (120, 192):  # cut where a frame's chunk starts: exactly that many frames decode
        cut = tmp_path / f"cut{kept}.avi"
        cut.write_bytes(whole.read_bytes()[: starts[kept]])
        seconds = rf"decoding ended at {kept / 24:.2f} s of the 10\.00 s its header gives: the file is truncated"
        with pytest.raises(InputError, match=seconds) as info:
            list(open_frames(cut, backend=backend))
        assert info.value.path == cut
        if backend == "opencv":  # PyAV's count_frames counts the packets there are
            with pytest.raises(InputError, match=seconds):
                count_frames(cut, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_intact_avis_are_not_taken_for_cut(tmp_path, backend):
    """Whole AVIs decode to their stream header's length, whatever the codec, size, rate or other
    streams: audio outlasting the picture by 3 s, frames skipped before a start at 5 s (counted in
    the header's length), one frame every 2 s."""
    for name, options in {"mpeg4.avi": {}, "mjpeg.avi": dict(codec="mjpeg", pix_fmt="yuvj420p"),
                          "raw.avi": dict(codec="rawvideo", pix_fmt="bgr24"), "ffv1.avi": dict(codec="ffv1"),
                          "odd.avi": dict(size=(33, 17)), "ntsc.avi": dict(fps=Fraction(30000, 1001)),
                          "audio.avi": dict(audio_seconds=5.0), "late.avi": dict(first_pts=120),
                          "slow.avi": dict(fps=Fraction(1, 2))}.items():
        path = tmp_path / name
        write_test_video(path, 48, **{"codec": "mpeg4", **options})
        assert sum(1 for _ in open_frames(path, backend=backend)) == 48, name


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_whole_avi_whose_last_frame_is_held_is_not_taken_for_cut(tmp_path, backend, audio):
    """FFmpeg writes a last packet shown 3 s (`ffmpeg -c copy` of a slideshow or a static screen
    recording's end) as empty chunks: the header's length counts them, decoding gives no frame for
    them. Such a whole file was refused as "decoding ended at 2.00 s of the 4.96 s"."""
    path = tmp_path / "held.avi"
    write_held_avi(path, audio)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > 100  # the held frame's empty chunks counted
    assert sum(1 for _ in open_frames(path, backend=backend)) == 48


@pytest.mark.parametrize("backend", BACKENDS)
def test_cut_mp4_with_its_index_at_the_end_cannot_be_opened(tmp_path, backend):
    """An MP4 written as it streams has its index (moov) after the frames: cut short, it has none,
    and both backends refuse to open it, naming the file."""
    whole = tmp_path / "whole.mp4"
    write_test_video(whole, 48)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 48
    cut = _cut(whole, 0.5)
    with pytest.raises(InputError, match="cannot be opened as a video") as info:
        open_frames(cut, backend=backend)
    assert info.value.path == cut
    with pytest.raises(InputError, match="cannot be opened as a video"):
        count_frames(cut, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cut_mp4_that_ffmpeg_fails_on_is_named_cut_short(tmp_path, backend):
    """An MP4 cut in half was refused as "cannot be opened as a video (Invalid data found when processing
    input)" (its index at the end, lost) or, by PyAV, "video decoding failed (Invalid data found ...)"
    (its index first, the cut inside its frames): nothing said the file was cut short, as the training
    index says of it. FFmpeg's reason stays; the cut comes after it."""
    for name, options in (("end.mp4", {}), ("fast.mp4", {"movflags": "faststart"})):
        whole = tmp_path / name
        write_test_video(whole, 96, options=options)
        cut = _cut(whole, 0.5)
        with pytest.raises(InputError, match="cut short") as info:
            list(open_frames(cut, backend=backend))
        assert info.value.path == cut
    if backend == "pyav":  # OpenCV measures the time decoded there (tests above)
        assert str(info.value).endswith("video decoding failed (Invalid data found when processing input); it is cut "
                                        "short: its MP4 boxes run past the end of the file (a copy or download that "
                                        "did not finish?)")
    with pytest.raises(InputError, match=r"cannot be opened as a video \(.*\); it is cut short: its MP4 boxes"):
        count_frames(tmp_path / "cut50-end.mp4", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fps, first_pts", [(Fraction(1, 2), 0), (24, 120)], ids=["half-fps", "starts-at-5s"])
def test_complete_videos_are_not_taken_for_truncated(tmp_path, fps, first_pts, backend):
    """The truncation check refused whole files: at 0.5 fps the last frame starts 2 s before the end
    the header gives (it is shown until then), and Matroska counts a stream starting at 5 s from 0."""
    path = tmp_path / "whole.mkv"
    write_test_video(path, 10, fps=fps, first_pts=first_pts)
    assert sum(1 for _ in open_frames(path, backend=backend)) == 10
    slow = tmp_path / "slow.mp4"  # as vidcorr writes an overlay at a slow rate
    write_video(slow, (np.full((32, 32, 3), 20 * t, np.uint8) for t in range(5)), fps=0.5)
    assert sum(1 for _ in open_frames(slow, backend=backend)) == 5


def test_intact_videos_pass_the_opencv_check(tmp_path, real_video):
    """OpenCV has no container duration, and its frame count is the MP4 track's sample count or the
    Matroska duration x rate: whole files that disagree with it by seconds must not be refused. An
    MP4 whose edit list hides 48 of its 96 samples (as ``ffmpeg -ss 30 -c copy`` writes), a WebM
    starting at 5 s and a Matroska file whose audio outlasts the picture by 3 s all decode whole,
    and are counted as they decode."""
    assert sum(1 for _ in open_frames(real_video, backend="opencv")) == count_frames(real_video, backend="opencv")
    for name, options in {"edited.mp4": dict(n=96, first_pts=-48),
                          "late.webm": dict(n=48, first_pts=120, codec="libvpx-vp9"),
                          "long-audio.mkv": dict(n=48, audio_seconds=5.0)}.items():
        path = tmp_path / name
        write_test_video(path, **options)
        capture = cv2.VideoCapture(str(path))
        header = capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        assert header >= 4.0  # seconds OpenCV's header numbers give, for 2 s of frames
        assert sum(1 for _ in open_frames(path, backend="opencv")) == 48, name
        assert count_frames(path, backend="opencv") == 48, name  # the header's count is not trusted


def test_container_sizes_tell_a_cut_file(tmp_path):
    """The OpenCV check measures only files shorter than their container's top-level sizes say: an MP4
    box, an AVI RIFF chunk or a Matroska Segment running past the end of the file. A live WebM leaves
    its size open and a GIF has none: never measured. An AVI cut in half was passed by both backends."""
    for name, codec, options, kind in [("a.mp4", "libx264", {"movflags": "faststart"}, "mp4"),
                                       ("a.mov", "libx264", {"movflags": "faststart"}, "mp4"),
                                       ("a.mkv", "libx264", {}, "matroska"), ("a.webm", "libvpx", {}, "matroska"),
                                       ("a.avi", "mpeg4", {}, "avi"), ("live.webm", "libvpx", {"live": "1"}, None)]:
        path = tmp_path / name
        write_test_video(path, 96, codec=codec, options=options)
        assert container_cut_short(path) is None, name
        assert container_cut_short(_cut(path, 0.6)) == kind, name
    with pytest.raises(InputError, match="the file is truncated") as info:
        list(open_frames(tmp_path / "cut60-a.avi", backend="opencv"))
    assert info.value.path.name == "cut60-a.avi"
    whole = tmp_path / "a.mp4"  # bytes after the last box (a tool's trailer) are not a cut
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(whole.read_bytes() + b"\xff\xff\xff\xff\x00\x01\x02\x03" * 13)
    assert container_cut_short(junk) is None
    gif = tmp_path / "a.gif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(gif, save_all=True,
                                                        append_images=[Image.new("RGB", (8, 8), "white")] * 3)
    assert container_cut_short(gif) is None
    assert container_cut_short(_cut(gif, 0.5)) is None


def _box(kind: bytes, contents: bytes, large: bool = False) -> bytes:
    """One MP4 box: a 32-bit size and its type, or (large) size 1, the type and a 64-bit size."""
    if large:
        return (1).to_bytes(4, "big") + kind + (16 + len(contents)).to_bytes(8, "big") + contents
    return (8 + len(contents)).to_bytes(4, "big") + kind + contents


def test_mp4_boxes_with_64_bit_sizes_are_measured(tmp_path):
    """A camera's mdat over 4 GiB has a 64-bit size: the same box header for the top-level cut check and
    the index walk (`mp4_video_seconds`)."""
    path = tmp_path / "large.mp4"
    mvhd = _box(b"mvhd", bytes(12) + (1000).to_bytes(4, "big") + bytes(84))  # version 0, time scale 1000
    tkhd = _box(b"tkhd", bytes(20) + (2500).to_bytes(4, "big") + bytes(60))  # 2.5 s shown
    hdlr = _box(b"hdlr", bytes(8) + b"vide" + bytes(13))
    trak = _box(b"trak", tkhd + _box(b"mdia", hdlr), large=True)
    whole = _box(b"ftyp", b"isom" + bytes(4)) + _box(b"moov", mvhd + trak) + _box(b"mdat", bytes(4000), large=True)
    path.write_bytes(whole)
    assert container_cut_short(path) is None and mp4_video_seconds(path) == 2.5
    for cut in (len(whole) - 1000, len(whole) - 4004):  # in the contents, in the 64-bit size
        path.write_bytes(whole[:cut])
        assert container_cut_short(path) == "mp4", cut


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cut_video_read_whole_is_refused_before_its_first_frame(tmp_path, backend):
    """A fast-start MP4 (index first) cut at 60% was refused only when decoding reached the cut, after
    `propagate` had worked through every frame before it (minutes). A caller that reads every frame
    (every_frame=True) learns it at once from the container's box headers; whole files of each
    container open as before, and a reader of the frames before the cut is served."""
    for name, codec, options in [("fast.mp4", "libx264", {"movflags": "faststart"}), ("a.mkv", "libx264", {}),
                                 ("a.avi", "mjpeg", {})]:
        whole = tmp_path / name
        write_test_video(whole, 48, codec=codec, options=options, pix_fmt="yuvj420p" if codec == "mjpeg" else "yuv420p")
        assert len(open_frames(whole, backend=backend, every_frame=True).read_all()) == 48, name
        cut = _cut(whole, 0.6)
        with pytest.raises(InputError, match=r"is cut short: its (MP4 boxes|Matroska segment|AVI chunks) run") as info:
            open_frames(cut, backend=backend, every_frame=True)  # before any frame is decoded
        assert info.value.path == cut, name
        assert len(open_frames(cut, backend=backend).head(8).read_all()) == 8, name


def test_propagate_refuses_a_cut_video_at_once_unless_max_frames_asks_for_frames_before_the_cut(tmp_path, capsys):
    """`propagate` reads every frame unless --max-frames says otherwise: a cut file is refused before the
    model is loaded and nothing is written; --max-frames 8, all before the cut, propagates them."""
    whole = tmp_path / "whole.mp4"
    write_test_video(whole, 48, size=(64, 48), options={"movflags": "faststart"})
    cut = _cut(whole, 0.6)
    mask = tmp_path / "first.png"
    ids = np.zeros((48, 64), np.uint8)
    ids[12:36, 16:48] = 1
    Image.fromarray(ids).save(mask)
    command = ["propagate", str(cut), "--mask", str(mask), "--features", "lab-pixels", "--no-video"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"vidcorr: error: {cut}: is cut short: its MP4 boxes run past the end of the "
                                       "file (a copy or download that did not finish?)\n")
    assert not (tmp_path / "out").exists()
    assert main([*command, "--out", str(tmp_path / "head"), "--max-frames", "8"]) == 0
    assert len(list((tmp_path / "head" / "masks").glob("*.png"))) == 8
