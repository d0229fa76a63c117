"""Corrupt, cut and edited video files: refused naming the file, while whole ones are never taken for cut."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from PIL import Image

from vidcorr.data.videos import probe
from vidcorr.errors import InputError
from vidcorr.io import video, video_opencv
from vidcorr.io.container_size import container_cut_short
from vidcorr.io.video import count_frames, open_frames, read_frames_at, write_video


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


_AUDIO_CODECS = {".webm": "libopus", ".avi": "pcm_s16le"}  # else AAC


def _write_video(path, n: int, fps: int | Fraction = 24, first_pts: int = 0, codec: str = "libx264",
                 options: dict[str, str] | None = None, audio_seconds: float = 0.0,
                 size: tuple[int, int] = (32, 32), pix_fmt: str = "yuv420p") -> None:
    """n frames of size (width, height) (noise over a grey ramp, so that a cut at x% of the bytes
    loses about x% of the frames) in the container the suffix names, written as it streams (an MP4's
    index at the end unless options ask for "faststart"); timestamps from first_pts (in frames: a
    negative start makes the MP4 muxer hide those frames behind an edit list, as ``ffmpeg -ss 30 -c
    copy`` does); audio_seconds of silence in a second stream (PCM in an AVI, as cameras write)."""
    import av

    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        audio = container.add_stream(_AUDIO_CODECS.get(path.suffix, "aac"), rate=48000) if audio_seconds else None
        for t in range(n):
            pixels = (4 * t + rng.integers(0, 32, (height, width, 3))) % 256
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = first_pts + t, Fraction(1) / Fraction(fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            step = audio.codec_context.frame_size or 1024
            sample_format = audio.codec_context.format.name  # "fltp", or PCM's "s16"
            samples = np.zeros((1, step), np.int16 if sample_format == "s16" else np.float32)
            for start in range(0, int(48000 * audio_seconds), step):
                silence = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
                silence.sample_rate, silence.pts, silence.time_base = 48000, start, Fraction(1, 48000)
                container.mux(audio.encode(silence))
            container.mux(audio.encode())


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
    _write_video(whole, 48)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 48
    cut = _cut(whole, 0.5)
    source = open_frames(cut, backend=backend)
    with pytest.raises(InputError, match=r"decoding ended at .* of the 2\.00 s its header gives: the file is truncated") as info:
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
    import av

    whole = tmp_path / "late.mp4"
    _write_video(whole, 96, first_pts=120, options={"movflags": "faststart"})  # the index up front
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
    _write_video(whole, 240, codec=codec, options=options)
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
    import av

    whole = tmp_path / "whole.avi"
    _write_video(whole, 240, codec="mpeg4", audio_seconds=audio_seconds)
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
        _write_video(path, 48, **{"codec": "mpeg4", **options})
        assert sum(1 for _ in open_frames(path, backend=backend)) == 48, name


@pytest.mark.parametrize("audio", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_whole_avi_whose_last_frame_is_held_is_not_taken_for_cut(tmp_path, backend, audio):
    """FFmpeg writes a last packet shown 3 s (`ffmpeg -c copy` of a slideshow or a static screen
    recording's end) as empty chunks: the header's length counts them, decoding gives no frame for
    them. Such a whole file was refused as "decoding ended at 2.00 s of the 4.96 s"."""
    import av

    codec = av.CodecContext.create("mpeg4", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = 32, 32, "yuv420p", Fraction(1, 24)
    rng = np.random.default_rng(0)
    packets = []
    for t in range(48):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = t, Fraction(1, 24)
        packets += codec.encode(frame)
    packets += codec.encode(None)
    path = tmp_path / "held.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width = stream.height = 32
        sound = container.add_stream("pcm_s16le", rate=48000) if audio else None  # before any muxing
        for i, packet in enumerate(packets):
            packet.stream, packet.time_base = stream, Fraction(1, 24)
            packet.duration = 72 if i == len(packets) - 1 else 1
            container.mux(packet)
        if sound is not None:
            for start in range(0, 48000 * 5, 1024):
                silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
                silence.sample_rate, silence.pts, silence.time_base = 48000, start, Fraction(1, 48000)
                container.mux(sound.encode(silence))
            container.mux(sound.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > 100  # the held frame's empty chunks counted
    assert sum(1 for _ in open_frames(path, backend=backend)) == 48


@pytest.mark.parametrize("backend", BACKENDS)
def test_cut_mp4_with_its_index_at_the_end_cannot_be_opened(tmp_path, backend):
    """An MP4 written as it streams has its index (moov) after the frames: cut short, it has none,
    and both backends refuse to open it, naming the file."""
    whole = tmp_path / "whole.mp4"
    _write_video(whole, 48)
    assert sum(1 for _ in open_frames(whole, backend=backend)) == 48
    cut = _cut(whole, 0.5)
    with pytest.raises(InputError, match="cannot be opened as a video") as info:
        open_frames(cut, backend=backend)
    assert info.value.path == cut
    with pytest.raises(InputError, match="cannot be opened as a video"):
        count_frames(cut, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fps, first_pts", [(Fraction(1, 2), 0), (24, 120)], ids=["half-fps", "starts-at-5s"])
def test_complete_videos_are_not_taken_for_truncated(tmp_path, fps, first_pts, backend):
    """The truncation check refused whole files: at 0.5 fps the last frame starts 2 s before the end
    the header gives (it is shown until then), and Matroska counts a stream starting at 5 s from 0."""
    path = tmp_path / "whole.mkv"
    _write_video(path, 10, fps=fps, first_pts=first_pts)
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
    for name, options in {"edited.mp4": dict(n=96, first_pts=-48), "late.webm": dict(n=48, first_pts=120, codec="libvpx-vp9"),
                          "long-audio.mkv": dict(n=48, audio_seconds=5.0)}.items():
        path = tmp_path / name
        _write_video(path, **options)
        capture = cv2.VideoCapture(str(path))
        header = capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        assert header >= 4.0  # seconds OpenCV's header numbers give, for 2 s of frames
        assert sum(1 for _ in open_frames(path, backend="opencv")) == 48, name
        assert count_frames(path, backend="opencv") == 48, name  # the header's count is not trusted


def _copy_from(source, target, first: int) -> None:
    """``source`` remuxed from frame ``first`` on as ``ffmpeg -ss T -i source -c copy target`` does:
    from the key frame before it (here frame 0), timestamps moved back by ``first`` frames, so that
    the MP4 muxer writes an edit list hiding the frames before ``first`` (kept to decode the rest)."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream_from_template(stream)
        shift = round(first / stream.average_rate / stream.time_base)
        for packet in reader.demux(stream):
            if packet.size:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
                writer.mux(packet)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_an_edit_list_hides_are_not_counted(tmp_path, backend, monkeypatch):
    """A video cut with ``ffmpeg -ss 30 -c copy`` keeps the frames since the key frame before the cut,
    hidden by its edit list: 96 samples, 48 frames decoded. Both backends' `count_frames` and header
    counts said 96, so the training index sampled frames past the 48th and dropped the video as
    unreadable on the first such draw. An intact MP4's header count is still trusted (no decoding)."""
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    _write_video(whole, 96)
    _copy_from(whole, cut, 48)
    frames = sum(1 for _ in open_frames(cut, backend=backend))
    assert frames == 48
    assert count_frames(cut, backend=backend) == frames
    assert open_frames(cut, backend=backend).num_frames in (None, frames)
    assert len(read_frames_at(cut, [47], backend=backend)) == 1
    if backend == "opencv":
        monkeypatch.setattr(video, "_import_av", lambda: None)  # the index probes with OpenCV
    assert probe(cut).num_frames == frames
    monkeypatch.setattr(video_opencv, "opencv_decode",  # an intact MP4 is counted from its header
                        lambda path: pytest.fail(f"{path.name} decoded to count it"))
    assert count_frames(whole, backend=backend) == open_frames(whole, backend=backend).num_frames == 96


def test_container_sizes_tell_a_cut_file(tmp_path):
    """The OpenCV check measures only files shorter than their container's top-level sizes say: an MP4
    box, an AVI RIFF chunk or a Matroska Segment running past the end of the file. A live WebM leaves
    its size open and a GIF has none: never measured. An AVI cut in half was passed by both backends."""
    for name, codec, options, kind in [("a.mp4", "libx264", {"movflags": "faststart"}, "mp4"),
                                       ("a.mov", "libx264", {"movflags": "faststart"}, "mp4"),
                                       ("a.mkv", "libx264", {}, "matroska"), ("a.webm", "libvpx", {}, "matroska"),
                                       ("a.avi", "mpeg4", {}, "avi"), ("live.webm", "libvpx", {"live": "1"}, None)]:
        path = tmp_path / name
        _write_video(path, 96, codec=codec, options=options)
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
