"""The PyAV backend of `vidcorr.io.video`, preferred for video files: opening, decoding (frames
upright, converted to RGB on the calling thread), metadata, the exact count of the frames shown,
each frame's display time, and the mp4 writer.

PyAV is imported lazily, inside the functions: `vidcorr.io.video` chooses this backend only
where it is installed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vidcorr.errors import InputError
from vidcorr.io.container_size import (avi_video_frames, check_av_not_truncated, cut_short_problem, frame_end,
                                      mp4_rotation)
from vidcorr.io.frame_times import TIME_BASE, frame_ticks, shown_packets, shown_times

if TYPE_CHECKING:
    from vidcorr.io.video import FrameCount, LazyFrame


def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise InputError(path, _failure(path, "cannot be opened as a video", error)) from None
    if not container.streams.video:
        container.close()
        raise InputError(path, "has no video stream")
    return container


def pyav_decode(path: Path) -> Iterator[LazyFrame]:
    """``path``'s frames in display order, each converted (and turned upright) when called; `InputError`
    where FFmpeg fails or the file is cut short (`check_av_not_truncated`)."""
    import av

    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        # Slice threads only: frame threads deadlock when decoding stops before the end (opening a
        # source reads one frame) in some torchvision builds (PyAV issue 1849), and decoded no faster.
        stream.thread_type = "SLICE"
        end = None  # where the latest decoded frame's display ends, seconds (decode order is not display order)
        rotation = _rotation_reader(path)
        for frame in container.decode(stream):
            if (shown_until := frame_end(frame, stream)) is not None:
                end = shown_until if end is None else max(end, shown_until)
            yield lambda frame=frame, turn=rotation(frame): _upright(_rgb(frame), turn)
        check_av_not_truncated(path, container, end)
    except av.error.FFmpegError as error:
        raise InputError(path, _failure(path, "video decoding failed", error)) from None
    finally:
        container.close()


def _failure(path: Path, what: str, error: OSError) -> str:
    """What failed and FFmpeg's reason, and that the file is cut short where its container's sizes say
    so: FFmpeg's "Invalid data found when processing input" did not tell a download that stopped (an MP4
    without its index at the end, or cut inside its frames) from a damaged file."""
    cut = cut_short_problem(path)
    return f"{what} ({_ffmpeg_problem(error)})" + ("" if cut is None else f"; it {cut}")


def _ffmpeg_problem(error: OSError) -> str:
    """What FFmpeg says went wrong, without the "[Errno 1094995529]" and the file name PyAV appends
    (the InputError names the file already: the training log showed every path twice)."""
    return error.strerror or str(error)


_SCALER_THREADS: dict[str, int] = {"threads": 1}  # emptied once if this PyAV has no such argument


def _rgb(frame) -> np.ndarray:
    """An ``av.VideoFrame`` as RGB uint8 (H, W, 3), converted by swscale on the calling thread.

    PyAV's default (``threads=0``, since it scales with ``sws_scale_frame``) gives swscale its own
    thread pool; under Python 3.12 with PyAV 18.1, a DataLoader worker forked after the parent had
    converted a frame (the video index does, to read each video's size) waited on that pool forever,
    so training hung at its first batch. One thread is also faster here: 0.3-1.2 against
    6.7-15.8 ms a frame with the pool on the 456 x 256 training videos (a busy 2-core machine).
    Older PyAV (12.x) has no ``threads`` argument and scales on one thread anyway.
    """
    scaler = dict(_SCALER_THREADS)  # as this call tries it (the index probes from several threads)
    try:
        return frame.to_ndarray(format="rgb24", **scaler)
    except TypeError:
        if not scaler:
            raise
        _SCALER_THREADS.clear()
        return frame.to_ndarray(format="rgb24")


def _frame_rotation(frame) -> float | None:
    """``frame.rotation``: its display matrix's angle, degrees counter-clockwise (0 without one);
    None where this PyAV has no ``VideoFrame.rotation``."""
    return getattr(frame, "rotation", None)


def _rotation_reader(path: Path) -> Callable[[object], float]:
    """frame -> how far a player turns it, degrees counter-clockwise: the frame's display matrix
    (`_frame_rotation`), else, on a PyAV without it, the MP4 / MOV track header's (`mp4_rotation`,
    read once), so that frames come upright as OpenCV's do whatever the PyAV version."""
    header: list[int] = []

    def rotation(frame) -> float:
        turn = _frame_rotation(frame)
        if turn is not None:
            return turn
        if not header:
            header.append(mp4_rotation(path))
        return header[0]

    return rotation


def _upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame turned as a player shows it. rotation: the display matrix's angle in degrees,
    counter-clockwise (`_rotation_reader`). A phone's portrait video is stored landscape with -90:
    turned clockwise here."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def pyav_metadata(path: Path) -> tuple[float | None, FrameCount]:
    """Frame rate (None when unknown) and the frame count, deferred (`FrameSource.num_frames`)."""
    container = _open_container(path)
    with contextlib.closing(container):
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if container.format.name == "avi":
            # An AVI header's length also counts frames skipped before a late start, so its chunks are
            # counted (`avi_video_frames`): a walk through the whole file, done only when asked for.
            return fps, lambda: avi_video_frames(path)
        count = _pyav_header_count(stream, rate)  # read now: the stream is closed with the container
        return fps, lambda: count


def _pyav_header_count(stream, rate: Fraction | None) -> int | None:
    """The stream's frame count from its header where decoding yields that many frames, else None.

    An MP4's count is its samples, also those its edit list hides (``ffmpeg -ss 30 -c copy`` keeps up
    to a key-frame interval of them before the cut: 96 samples, 48 frames decoded); the stream's
    duration is the edit list's, so the count is trusted only where that duration holds as many
    frames at the average rate. Most other containers give no count.
    """
    if not stream.frames or not stream.duration or not rate:
        return None
    shown = float(stream.duration * stream.time_base * rate)
    return stream.frames if abs(stream.frames - shown) < 0.5 else None


def pyav_times(path: Path, first: int | None = None) -> list[float] | None:
    """`FrameSource.frame_times` of a video file: from its packets (`shown_times`); of its first
    ``first`` frames only where given (None: all)."""
    with contextlib.closing(_open_container(path)) as container:
        return shown_times(container, first)


def pyav_count(path: Path) -> int:
    """`count_frames` of a video file: the video packets that are shown (demuxing only), not those
    an MP4's edit list hides (`_pyav_header_count`)."""
    with contextlib.closing(_open_container(path)) as container:
        return sum(1 for _ in shown_packets(container, container.streams.video[0]))


# crf 18: overlays have thin mask contours that must survive compression. mbtree 0: with x264's
# macroblock tree on, the same frames encoded twice in one process gave different bytes (decoded up
# to 59 levels apart) on CPUs with AVX-512, where ceil(width / 16) is not a multiple of 8 (widths
# 214, 854): mbtree_propagate_list_avx512 takes 8 macroblocks a step with no mask for a row's last
# ones, adding costs read past the row, from memory x264 never wrote (it needs B-frames), into the
# rate control. Without the tree that code never runs: the same bytes 24 times out of 24 at 480 x 854
# and 120 x 214 with heap churn between (asm=AVX2 fixed it as well, but is an illegal instruction on
# a CPU without AVX2); at 480p the file is 6 % smaller, PSNR 0.35 dB lower, the encoding no slower.
_X264_OPTIONS: dict[str, str] = {"crf": "18", "mbtree": "0"}


def write_pyav(tmp: Path, first: np.ndarray, frames: Iterator[np.ndarray], fps: float,
               times: Sequence[float] | None) -> None:
    """Encode ``first``, then ``frames`` (RGB uint8 (H, W, 3), even sizes) to the mp4 ``tmp``: H.264
    where this FFmpeg has libx264, else MPEG-4 part 2. times: see `vidcorr.io.video.write_video`."""
    import av

    try:
        codec = av.codec.Codec("libx264", "w").name
    except ValueError:  # UnknownCodecError
        codec = "mpeg4"  # FFmpeg builds without GPL x264
    with av.open(str(tmp), mode="w") as container:
        options = dict(_X264_OPTIONS) if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = int(first.shape[0] * first.shape[1] * fps * 0.5)  # ~0.5 bit/pixel
        ticks = None
        if times is not None:  # each frame at its own time; fps stays the nominal rate
            stream.codec_context.time_base, ticks = TIME_BASE, frame_ticks(times, fps)
        for frame in itertools.chain((first,), frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if ticks is not None:
                picture.pts, picture.time_base = next(ticks), TIME_BASE
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
