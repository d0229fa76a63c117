"""The OpenCV backend of `vidcorr.io.video`, for machines without PyAV: opening, decoding and
metadata of a video file, with a truncation check of its own (OpenCV swallows read errors).

OpenCV is imported lazily, as PyAV is.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from vidcorr.errors import InputError, VidcorrError
from vidcorr.io.container_size import (avi_video_frames, container_cut_short, container_format,
                                      cut_short_problem, mp4_video_seconds, refuse_if_cut_short)

if TYPE_CHECKING:
    from vidcorr.io.video import LazyFrame


def import_cv2() -> ModuleType:
    """The cv2 module; `VidcorrError` naming both video packages when OpenCV is not installed either."""
    try:
        import cv2
    except ImportError:
        raise VidcorrError("reading or writing video files needs PyAV (pip install av) "
                           "or OpenCV (pip install opencv-python-headless)") from None
    return cv2


def _open_cv_capture(path: Path):
    """An opened ``cv2.VideoCapture`` of ``path``, frames turned upright; `InputError` where it cannot open."""
    cv2 = import_cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        cut = cut_short_problem(path)  # an MP4 cut before its index (at the end) has none: say why
        raise InputError(path, "cannot be opened as a video (OpenCV)" + ("" if cut is None else f"; it {cut}"))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # upright like the PyAV backend (OpenCV's default since 4.5)
    return capture


def opencv_decode(path: Path) -> Iterator[LazyFrame]:
    """``path``'s frames in display order, each a call giving the frame RGB uint8 (H, W, 3), upright
    (grabbed as the iteration reaches it, converted only when called); `InputError` where OpenCV cannot
    open or decode the file, or, once every frame is grabbed, where it ended early (`_check_opencv_not_truncated`)."""
    cv2 = import_cv2()
    capture = _open_cv_capture(path)

    def retrieve() -> np.ndarray:
        ok, bgr = capture.retrieve()
        if not ok:
            raise InputError(path, "video decoding failed (OpenCV)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    try:
        frames, start, last = 0, 0.0, 0.0  # frames grabbed; the stream's start and latest frame, seconds
        while capture.grab():
            position = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000  # from the stream's first frame
            if not frames:
                start = _opencv_stream_start(capture, position)
            frames, last = frames + 1, max(last, position)  # max: a B-frame stream's timestamps may dip
            yield retrieve
        _check_opencv_not_truncated(path, capture, frames, start, last)
    finally:
        capture.release()


def _opencv_stream_start(capture, position: float) -> float:
    """Where the video stream starts, seconds (OpenCV's positions count from there), from the first
    frame's timestamp in frame units (CAP_PROP_PTS, OpenCV >= 4.11) less its position; 0 where this
    OpenCV does not give it."""
    cv2 = import_cv2()
    pts, fps = getattr(cv2, "CAP_PROP_PTS", None), capture.get(cv2.CAP_PROP_FPS)
    return capture.get(pts) / fps - position if pts is not None and fps > 0 else 0.0


def _check_opencv_not_truncated(path: Path, capture, frames: int, start: float, last: float) -> None:
    """The PyAV check (`check_av_not_truncated`) for the OpenCV backend, after every frame was grabbed:
    frames grabbed, the stream's start and the latest frame's position (seconds from the start).

    OpenCV swallows the read error at a cut, so a fast-start MP4, a Matroska / WebM or an AVI file cut
    short gave its first frames and no error. Nor does it give the container's duration: its frame
    count over its rate is that duration for Matroska, audio tracks and a late start included, but
    for MP4 the count is the track's samples, the frames an edit list hides among them (``ffmpeg -ss
    30 -c copy`` keeps up to a key-frame interval of them: 96 samples, 48 frames shown), and OpenCV
    does not say which other streams a file holds. So only a file shorter than its container's own
    sizes say (`container_cut_short`) is measured against count / rate: intact files are never
    refused, whatever their edit lists, audio tracks, start or frame rates. The end is the last
    frame's position plus one frame, or the frames grabbed over the rate where the stream has no
    timestamps (0 s when no frame decoded: `count_frames` gets there).
    """
    container = container_cut_short(path)
    if container is None:
        return
    cv2 = import_cv2()
    fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    if fps <= 0 or count <= 0:  # no rate or no count (negative where the header has no duration)
        return
    duration = count / fps
    expected = duration if container == "matroska" else start + duration  # as in check_av_not_truncated
    shown = max(last + 1 / fps, frames / fps) if frames else 0.0
    refuse_if_cut_short(path, start + shown, expected, duration)


def opencv_metadata(path: Path) -> tuple[float | None, Callable[[], int | None]]:
    """Frame rate from the header (None when unknown) and the frame count, deferred: a call that gives
    None where it may not be the number of frames decoding yields (`_trusted_count`). Deferred as
    PyAV's (`vidcorr.io.video.FrameSource.num_frames`): an AVI's count walks the whole file, and
    reading frames at given indices never needs it."""
    cv2 = import_cv2()
    capture = _open_cv_capture(path)
    try:
        fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return (fps if fps > 0 else None), lambda: _trusted_count(path, count, fps)


def _trusted_count(path: Path, count: int, fps: float) -> int | None:
    """The number of frames decoding yields where the file says it, else None (then `count_frames`
    grabs every frame): an AVI's video chunks (`avi_video_frames`; its header's length counts frames
    skipped before a late start), or OpenCV's frame count of an MP4 / MOV.

    Only MP4 / MOV and AVI files count their frames: for Matroska / WebM, GIF, MPEG-TS ... FFmpeg gives
    the container's duration times the rate, which an audio track outlasting the picture, a late start
    or a variable rate put off by seconds (48 frames reported as 97 or 168). An MP4's count is its
    track's samples, also those its edit list hides (``ffmpeg -ss 30 -c copy`` keeps up to a key-frame
    interval of them before the cut: 96 samples, 48 frames shown), and OpenCV does not say which: it
    is trusted only where the track's shown duration (`mp4_video_seconds`) holds that many frames.
    """
    kind = container_format(path)
    if kind == "avi":
        return avi_video_frames(path)
    if kind == "mp4" and count > 0 and fps > 0:
        shown = mp4_video_seconds(path)
        return count if shown is not None and count < shown * fps + 0.5 else None
    return None


def opencv_count(path: Path) -> int:
    """Frames of a video file: the header's count where it can be trusted (`_trusted_count`) and the
    file is as long as its container says, else every frame grabbed (`InputError` if truncated)."""
    count = opencv_metadata(path)[1]()
    if count is None or container_cut_short(path):  # a cut file's header counts what it lost
        with contextlib.closing(opencv_decode(path)) as frames:  # refused there, or counted
            count = sum(1 for _ in frames)
    return count


def write_opencv(tmp: Path, first: np.ndarray, frames: Iterator[np.ndarray], fps: float) -> None:
    """Encode ``first``, then ``frames`` (RGB uint8 (H, W, 3), all its size) to the mp4 ``tmp`` with
    OpenCV's "mp4v" (MPEG-4 part 2) at the constant rate ``fps``; `VidcorrError` where it cannot write."""
    cv2 = import_cv2()
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise VidcorrError(f"{tmp}: OpenCV cannot write mp4v video here")
    try:
        for frame in itertools.chain((first,), frames):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
