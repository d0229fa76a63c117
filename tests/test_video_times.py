"""Frame timing of variable-frame-rate video: read from the packets (PyAV), kept by the mp4 writer
and by `propagate`'s overlay; the OpenCV backend keeps working at a constant rate."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from cli_helpers import FAST
from PIL import Image
from video_helpers import VFR_TIMES, write_vfr_video

from vidcorr.cli import main
from vidcorr.io import frame_times, video
from vidcorr.io.frame_times import TIME_BASE, display_times, shown_packets
from vidcorr.io.video import count_frames, open_frames, write_video


def _decoded_times(path) -> list[float]:
    """Each decoded frame's time, seconds from the first (PyAV, the reference)."""
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(container.streams.video[0])]
    return [t - times[0] for t in times]


def _ramp(n: int, size=(32, 48)) -> np.ndarray:
    """(n, H, W, 3) frames, frame t a flat grey of 20 t: which frame is which survives encoding."""
    return np.stack([np.full((*size, 3), 20 * t, np.uint8) for t in range(n)])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_frame_times_are_a_variable_rate_videos_own(tmp_path, suffix):
    """A Matroska VFR file's rate is the nominal one it was opened with (30), an MP4's a mean: neither
    says when its frames are shown."""
    path = tmp_path / f"vfr{suffix}"
    write_vfr_video(path, _ramp(len(VFR_TIMES)))
    source = open_frames(path, backend="pyav")
    np.testing.assert_allclose(source.frame_times(), VFR_TIMES, atol=1e-3)
    np.testing.assert_allclose(source.frame_times(), _decoded_times(path), atol=1e-9)
    assert len(source.read_all()) == len(VFR_TIMES)
    assert open_frames(path, backend="opencv").frame_times() is None  # decoding-only timing: not read
    assert open_frames(path, backend="opencv").read_all().shape == (len(VFR_TIMES), 32, 48, 3)


def test_frame_times_of_a_constant_rate_video_and_a_folder(real_video, tmp_path):
    times = open_frames(real_video).frame_times()
    assert times == pytest.approx(_decoded_times(real_video), abs=1e-9)
    assert times == pytest.approx([t / 24 for t in range(len(times))], abs=1e-3)
    assert len(times) == count_frames(real_video)
    Image.fromarray(_ramp(1)[0]).save(tmp_path / "00000.png")
    assert open_frames(tmp_path).frame_times() is None


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_write_video_puts_each_frame_at_its_time(tmp_path, codec, monkeypatch):
    if codec == "mpeg4":  # an FFmpeg without x264: the fallback, whose time base is at most 1/65535
        real_codec = av.codec.Codec

        def no_x264(name, mode="r"):
            if name == "libx264":
                raise ValueError("no libx264 here")
            return real_codec(name, mode)

        monkeypatch.setattr(av.codec, "Codec", no_x264)
    frames = _ramp(len(VFR_TIMES))
    out = write_video(tmp_path / "vfr.mp4", iter(frames), fps=17, times=VFR_TIMES)
    with av.open(str(out)) as written:
        assert written.streams.video[0].codec_context.name == {"libx264": "h264"}.get(codec, codec)
    np.testing.assert_allclose(_decoded_times(out), VFR_TIMES, atol=float(TIME_BASE))
    levels = [int(np.median(f)) for f in open_frames(out).read_all()]
    assert np.abs(np.array(levels) - 20 * np.arange(len(frames))).max() <= 3  # in order, none dropped
    # two frames past the times given follow at fps; a repeated time is moved one tick on
    out = write_video(tmp_path / "more.mp4", iter(frames[:5]), fps=20, times=[0.0, 0.5, 0.5])
    np.testing.assert_allclose(_decoded_times(out), [0, 0.5, 0.5 + float(TIME_BASE), 0.55, 0.6], atol=1e-6)
    # without times: 1 / fps apart, as before
    np.testing.assert_allclose(_decoded_times(write_video(tmp_path / "cfr.mp4", iter(frames), fps=20)),
                               np.arange(len(frames)) / 20, atol=1e-6)


def _write_ts_part(path, levels, fps):
    """Frames of flat grey ``levels`` at ``fps`` as MPEG-TS, MPEG-4 part 2 with B-frames (any FFmpeg
    has it): packets in decode order, not display order, and timestamps starting from the muxer's own."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.max_b_frames = 2
        for t, level in enumerate(levels):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_frame_times_of_joined_mpeg_ts_files_restart_nowhere(tmp_path):
    """``cat a.ts b.ts``: b's timestamps start again. Sorted as one stream, b's frames were interleaved
    with a's times (two frames at each of 0.04, 0.125, ... s), each overlay frame at another's time."""
    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]
    _write_ts_part(parts[0], [20 + 10 * t for t in range(12)], fps=24)
    _write_ts_part(parts[1], [20 + 10 * t for t in range(8)], fps=12)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    with av.open(str(joined)) as container:
        decoded = [float(frame.time) for frame in container.decode(container.streams.video[0])]
    assert decoded[12] < decoded[11]  # the timestamps do start again
    times = open_frames(joined).frame_times()
    assert len(times) == len(decoded) == 20
    # each part keeps its own timing, and b follows a one frame step (the median one, 1/24 s) later
    np.testing.assert_allclose(times[:12], np.array(decoded[:12]) - decoded[0], atol=1e-9)
    np.testing.assert_allclose(times[12:], np.array(decoded[12:]) - decoded[12] + 12 / 24, atol=1e-9)


def test_display_times_sort_each_part_not_the_stream():
    """Packets in decode order: B-frames come after the frame they precede; dts drops where a part begins."""
    s = Fraction
    one_part = [(s(0), s(-1)), (s(3), s(0)), (s(1), s(1)), (s(2), s(2))]  # I P B B, seconds
    assert display_times(one_part) == [0, 1, 2, 3]
    restarted = one_part + [(s(1), s(0)), (s(3), s(1)), (s(2), s(2))]  # timestamps start again: dts 2 -> 0
    assert display_times(restarted) == [0, 1, 2, 3, 4, 5, 6]
    no_dts = [(pts, None) for pts, _ in restarted]  # no restart to see: one sort
    assert display_times(no_dts) == [0, 1, 1, 2, 2, 3, 3]
    assert display_times([(s(5), s(5))]) is None and display_times([(s(1), s(1)), (s(1), s(2))]) is None


def test_matroska_packets_lack_dts_only_before_the_b_frame_delay_is_known(tmp_path):
    """Matroska stores pts only; FFmpeg derives the packets' dts from them, all but the first few
    (B-frames' delay), which stay in the part they begin: the timing is the decoder's."""
    path = tmp_path / "vfr.mkv"
    write_vfr_video(path, _ramp(len(VFR_TIMES)))
    with av.open(str(path)) as container:
        dts = [packet.dts for packet in shown_packets(container, container.streams.video[0])]
    missing = [t for t, stamp in enumerate(dts) if stamp is None]
    assert 0 < len(missing) < len(dts) // 2 and missing == list(range(len(missing)))
    np.testing.assert_allclose(open_frames(path).frame_times(), _decoded_times(path), atol=1e-9)


def test_opencv_writer_has_a_constant_rate(tmp_path):
    out = write_video(tmp_path / "cv.mp4", iter(_ramp(len(VFR_TIMES))), fps=20, backend="opencv", times=VFR_TIMES)
    np.testing.assert_allclose(_decoded_times(out), np.arange(len(VFR_TIMES)) / 20, atol=1e-3)


@pytest.fixture()
def vfr_clip(short_clip, tmp_path):
    """car-shadow's 6 frames as a variable-frame-rate mp4, and its first mask."""
    seq = short_clip / "JPEGImages" / "480p" / "car-shadow"
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(seq.glob("*.jpg"))])
    write_vfr_video(tmp_path / "car.mp4", frames, VFR_TIMES[:6])
    return tmp_path / "car.mp4", short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"


def test_propagate_overlay_keeps_a_variable_rate_videos_timing(vfr_clip, tmp_path):
    """The overlay was written at one rate: frames 3-5 (40 fps) played at the mean rate, late."""
    clip, mask = vfr_clip
    out = tmp_path / "vfr"
    assert main(["propagate", str(clip), "--mask", str(mask), "--out", str(out), *FAST]) == 0
    np.testing.assert_allclose(_decoded_times(out / "overlay.mp4"), VFR_TIMES[:6], atol=1e-3)
    out = tmp_path / "fixed"  # --fps: a constant rate, as asked
    assert main(["propagate", str(clip), "--mask", str(mask), "--out", str(out), "--fps", "10", *FAST]) == 0
    np.testing.assert_allclose(_decoded_times(out / "overlay.mp4"), np.arange(6) / 10, atol=1e-3)


def test_propagate_without_pyav_writes_a_constant_rate(vfr_clip, tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_import_av", lambda: None)  # a machine with OpenCV only
    clip, mask = vfr_clip
    out = tmp_path / "cv"
    assert main(["propagate", str(clip), "--mask", str(mask), "--out", str(out), *FAST]) == 0
    fps = open_frames(clip, backend="opencv").fps
    assert len(list((out / "masks").glob("*.png"))) == 6
    monkeypatch.undo()
    np.testing.assert_allclose(_decoded_times(out / "overlay.mp4"), np.arange(6) / fps, atol=1e-3)


def test_head_times_are_the_whole_videos_cut_and_read_only_the_packets_they_need(real_video, tmp_path, monkeypatch):
    """`propagate --max-frames N` times its overlay by the first N frames: `FrameSource.head` read every
    packet's timestamp of the whole video for them. Now it reads up to where they are fixed (B-frames:
    a packet or two past them), with the same times; across a restart of the timestamps (joined
    MPEG-TS: the later part's offset is the whole stream's median step) and where the first packets
    have no dts (Matroska) it still reads what that needs."""
    real_packets, read = frame_times.shown_packets, []

    def counted(container, stream):
        for packet in real_packets(container, stream):
            read.append(packet)
            yield packet

    monkeypatch.setattr(frame_times, "shown_packets", counted)
    mkv, parts, joined = tmp_path / "vfr.mkv", [tmp_path / "a.ts", tmp_path / "b.ts"], tmp_path / "joined.ts"
    write_vfr_video(mkv, _ramp(len(VFR_TIMES)))
    _write_ts_part(parts[0], [20 + 10 * t for t in range(12)], fps=24)
    _write_ts_part(parts[1], [20 + 10 * t for t in range(8)], fps=12)
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    for path in (real_video, mkv, joined):
        source = open_frames(path)
        whole, total = source.frame_times(), len(read)
        for n in range(1, total + 3):
            read.clear()
            assert source.head(n).frame_times() == whole[:n], (path.name, n)
            assert source.head(n + 1).head(n).frame_times() == whole[:n]
        read.clear()
        source.head(5).frame_times()
        assert len(read) <= {"bear.mp4": 7, "joined.ts": 8}.get(path.name, total), path.name  # not 82, 20 packets
