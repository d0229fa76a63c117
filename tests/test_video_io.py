"""Video / frame-folder reading (PyAV and the OpenCV fallback) and the mp4 writer."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
from PIL import Image

from vidcorr.data.videos import probe
from vidcorr.errors import InputError, VidcorrError
from vidcorr.io import video, video_opencv
from vidcorr.io.container_size import container_cut_short
from vidcorr.io.images import natural_key
from vidcorr.io.video import count_frames, open_frames, read_frames_at, write_video


@pytest.fixture(scope="module")
def real_video(data_dir):
    return data_dir / "videos/davis2016-train/bear.mp4"


@pytest.fixture(scope="module")
def opencv_frames(real_video) -> np.ndarray:
    """Reference decode by OpenCV, converted BGR -> RGB: (T, H, W, 3)."""
    capture = cv2.VideoCapture(str(real_video))
    frames = []
    while (result := capture.read())[0]:
        frames.append(cv2.cvtColor(result[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


@pytest.fixture()
def no_pyav(monkeypatch):
    """Simulate a machine with OpenCV but without PyAV."""
    monkeypatch.setattr(video, "_import_av", lambda: None)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_real_video_matches_opencv_decode(real_video, opencv_frames, backend):
    source = open_frames(real_video, backend=backend)
    frames = source.read_all()
    assert source.backend == backend
    assert len(source) == count_frames(real_video, backend=backend) == len(frames) == len(opencv_frames)
    assert source.size == frames.shape[1:3] == opencv_frames.shape[1:3]
    assert source.fps == pytest.approx(24.0)
    assert frames.dtype == np.uint8 and frames.shape[3] == 3
    # Same decoder underneath (FFmpeg): frames agree; a BGR mix-up would differ by far more.
    diff_rgb = np.abs(frames.astype(int) - opencv_frames).mean()
    diff_bgr = np.abs(frames.astype(int) - opencv_frames[..., ::-1]).mean()
    assert diff_rgb < 1.0 and diff_bgr > 10 * max(diff_rgb, 1.0)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_read_frames_at_equals_full_decode(real_video, opencv_frames, backend):
    last = len(opencv_frames) - 1
    indices = [10, 0, last, 10]
    frames = read_frames_at(real_video, indices, backend=backend)
    for index, frame in zip(indices, frames, strict=True):
        np.testing.assert_array_equal(frame, open_frames(real_video, backend=backend).read_at([index])[0])
        assert np.abs(frame.astype(int) - opencv_frames[index]).mean() < 1.0
    assert frames[0] is not frames[3]  # a repeated index gets its own array
    assert read_frames_at(real_video, []) == []
    with pytest.raises(InputError, match=f"frame {last + 5} requested"):
        read_frames_at(real_video, [last + 5], backend=backend)
    with pytest.raises(ValueError):
        read_frames_at(real_video, [-1])


def test_streaming_can_stop_early_and_iterate_again(real_video):
    source = open_frames(real_video)
    first = next(iter(source))
    assert np.array_equal(next(iter(source)), first)


def test_early_stops_in_threads_do_not_hang(data_dir):
    """Opening a source decodes one frame and stops; the video index does that from 4 threads.
    With FFmpeg's frame threading (PyAV ``thread_type="AUTO"``) and torchvision imported, that
    deadlocked on the first round under torch 2.4.1 / torchvision 0.19.1 (PyAV issue 1849);
    `bash scripts/test_torch.sh 2.4.1 0.19.1` runs this suite there. A fresh interpreter, so the
    import order is the reported one, and a timeout, so a deadlock fails instead of stalling."""
    code = (
        "import torchvision, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from vidcorr.io.video import open_frames\n"
        "videos = sorted(Path(sys.argv[1]).glob('*.mp4'))[:12]\n"
        "for _ in range(3):\n"
        "    with ThreadPoolExecutor(4) as pool:\n"
        "        assert all(s[0] > 0 for s in pool.map(lambda v: open_frames(v).size, videos))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(data_dir / "videos/davis2016-train")],
                   check=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_decoding_in_a_forked_child_after_the_parent_decoded(real_video):
    """A DataLoader worker is forked after the video index has converted a frame in the parent.
    With swscale's own thread pool (PyAV's default) the child's first conversion waited forever
    under Python 3.12 and PyAV 18.1 (`PYTHON=python3.12 bash scripts/test_torch.sh 2.11.0 0.26.0`
    runs this suite there); the child gives up after 60 s so that a hang fails instead of lingering."""
    code = (
        "import faulthandler, os, sys\n"
        "from vidcorr.io.video import open_frames\n"
        "open_frames(sys.argv[1], backend='pyav')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    faulthandler.dump_traceback_later(60, exit=True)\n"
        "    frames = open_frames(sys.argv[1], backend='pyav').read_at([0, 5])\n"
        "    os._exit(0 if len(frames) == 2 else 1)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(real_video)], check=True, timeout=120)


def test_opencv_fallback_when_pyav_missing(real_video, opencv_frames, no_pyav, tmp_path):
    source = open_frames(real_video)
    assert source.backend == "opencv"
    assert np.array_equal(source.read_all(), opencv_frames)
    assert count_frames(real_video) == len(opencv_frames)
    with pytest.raises(VidcorrError, match="PyAV is not installed"):
        open_frames(real_video, backend="pyav")
    out = write_video(tmp_path / "fallback.mp4", iter(opencv_frames[:5]), fps=10)
    assert len(open_frames(out)) == 5


def test_davis_frame_folder(davis2016_root):
    folder = davis2016_root / "JPEGImages/480p/blackswan"
    source = open_frames(folder, fps=24)
    jpgs = sorted(folder.glob("*.jpg"))
    assert (source.backend, source.size, source.fps) == ("folder", (480, 854), 24)
    assert len(source) == count_frames(folder) == len(jpgs)
    assert open_frames(folder).fps is None
    first = next(iter(source))
    np.testing.assert_array_equal(first, np.asarray(Image.open(jpgs[0]).convert("RGB")))
    third = np.asarray(Image.open(jpgs[3]).convert("RGB"))
    np.testing.assert_array_equal(read_frames_at(folder, [3])[0], third)


def _write_png(path, value, size=(6, 8)):
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def test_folder_natural_sort_and_filtering(tmp_path):
    for index in (10, 2, 1, 33):
        _write_png(tmp_path / f"frame{index}.png", index)
    Image.fromarray(np.full((6, 8, 3), 5, np.uint8)).save(tmp_path / "frame5.JPG", quality=100)
    (tmp_path / "notes.txt").write_text("not a frame")
    _write_png(tmp_path / ".frame0.png", 0)  # hidden files (e.g. macOS ._ files) are skipped
    values = [int(np.median(frame)) for frame in open_frames(tmp_path)]
    assert values == [1, 2, 5, 10, 33]
    assert natural_key("a2.jpg") < natural_key("a10.jpg")


def test_folder_of_16_bit_grayscale_pngs_is_scaled_not_clipped(tmp_path):
    """Pillow's convert("RGB") clips 16-bit values at 255: a mid-gray frame would read as white."""
    for index, level in enumerate((0, 128, 255)):
        Image.fromarray(np.full((6, 8), level * 257, np.uint16)).save(tmp_path / f"{index}.png")
    Image.fromarray(np.full((6, 8, 3), 64, np.uint8)).convert("L").save(tmp_path / "3.png")  # 8-bit
    frames = open_frames(tmp_path).read_all()
    assert frames.dtype == np.uint8 and frames.shape == (4, 6, 8, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 128, 255, 64]
    assert (frames == frames[..., :1]).all()  # gray: R = G = B


def _phone_style_mp4(path, frame: np.ndarray, count: int = 3) -> None:
    """An mp4 stored landscape whose track matrix says "turn 90 degrees clockwise to show", as a
    phone writes portrait video (ffprobe: "displaymatrix: rotation of -90.00 degrees")."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = frame.shape[:2]
        stream.pix_fmt = "yuv420p"
        for _ in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    tkhd = data.index(b"tkhd") + 4  # a version-0 track header: its 3x3 matrix starts 40 bytes in
    assert data[tkhd] == 0
    data[tkhd + 40:tkhd + 76] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_phone_rotation_is_applied_like_a_player(tmp_path, backend):
    """Both backends turn frames upright, so a mask drawn on what the user sees fits them."""
    import av

    if backend == "pyav" and not hasattr(av.VideoFrame, "rotation"):
        pytest.skip("this PyAV has no VideoFrame.rotation")
    stored = np.full((48, 64, 3), 30, np.uint8)
    stored[:8, :16] = 230  # a marker in the stored top-left corner
    _phone_style_mp4(tmp_path / "portrait.mp4", stored)
    source = open_frames(tmp_path / "portrait.mp4", backend=backend)
    frames = source.read_all()
    assert source.size == (64, 48) and frames.shape == (3, 64, 48, 3)
    upright = np.rot90(stored, -1)  # turned clockwise: the marker is now top right
    assert np.abs(frames[0].astype(int) - upright).mean() < 3.0


def test_exif_orientation_of_jpeg_frames_is_applied(tmp_path):
    stored = np.full((48, 64, 3), 30, np.uint8)
    stored[:8, :16] = 230
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    for index in range(2):
        Image.fromarray(stored).save(tmp_path / f"{index}.jpg", quality=95, exif=exif)
    source = open_frames(tmp_path)
    frames = source.read_all()
    assert source.size == (64, 48) and frames.shape == (2, 64, 48, 3)
    assert np.abs(frames[0].astype(int) - np.rot90(stored, -1)).mean() < 3.0


def test_folder_with_mixed_sizes_names_the_odd_frame(tmp_path):
    _write_png(tmp_path / "00000.png", 1)
    _write_png(tmp_path / "00001.png", 1)
    _write_png(tmp_path / "00002.png", 1, size=(8, 8))
    with pytest.raises(InputError, match=r"8x8 but 00000\.png is 8x6") as info:
        open_frames(tmp_path)
    assert info.value.path.name == "00002.png"


def test_missing_paths_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such video file or frame folder") as info:
        open_frames(tmp_path / "missing.mp4")
    assert info.value.path.name == "missing.mp4"
    with pytest.raises(InputError, match="folder has no frames"):
        open_frames(tmp_path)
    with pytest.raises(InputError):
        count_frames(tmp_path / "missing")


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


def _write_video(path, n: int, fps: int | Fraction = 24, first_pts: int = 0, codec: str = "libx264",
                 options: dict[str, str] | None = None, audio_seconds: float = 0.0) -> None:
    """n 32x32 frames (noise over a grey ramp, so that a cut at x% of the bytes loses about x% of
    the frames) in the container the suffix names, written as it streams (an MP4's index at the
    end unless options ask for "faststart"); timestamps from first_pts (in frames: a negative start
    makes the MP4 muxer hide those frames behind an edit list, as ``ffmpeg -ss 30 -c copy`` does);
    audio_seconds of silence in a second stream."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        audio = container.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000) if audio_seconds else None
        for t in range(n):
            pixels = (4 * t + rng.integers(0, 32, (32, 32, 3))) % 256
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = first_pts + t, Fraction(1) / Fraction(fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            step = audio.codec_context.frame_size or 1024
            for start in range(0, int(48000 * audio_seconds), step):
                silence = av.AudioFrame.from_ndarray(np.zeros((1, step), np.float32), format="fltp", layout="mono")
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


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_write_video_round_trip(tmp_path, opencv_frames, backend):
    frames = opencv_frames[:12, :101, :151]  # odd size: padded by one row and column
    out = write_video(tmp_path / "sub" / "overlay.mp4", (f for f in frames), fps=12.5, backend=backend)
    assert out == tmp_path / "sub" / "overlay.mp4"
    assert [p.name for p in out.parent.iterdir()] == ["overlay.mp4"]  # no temp file left
    source = open_frames(out)
    decoded = source.read_all()
    assert len(decoded) == count_frames(out) == 12
    assert source.size == (102, 152) and source.fps == pytest.approx(12.5)
    assert np.abs(decoded[:, :101, :151].astype(int) - frames).mean() < 8


def test_write_video_failure_leaves_nothing(tmp_path, opencv_frames):
    def frames():
        yield opencv_frames[0]
        yield opencv_frames[1]
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(tmp_path / "out.mp4", frames(), fps=24)
    with pytest.raises(ValueError, match="frame 1 is"):
        write_video(tmp_path / "out.mp4", [opencv_frames[0], opencv_frames[1, :10]], fps=24)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], fps=24)
    assert list(tmp_path.iterdir()) == []


def test_unknown_length_raises_type_error(real_video):
    source = open_frames(real_video)
    source.num_frames = None
    with pytest.raises(TypeError, match="count_frames"):
        len(source)
